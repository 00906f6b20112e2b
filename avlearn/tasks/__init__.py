"""Training objectives, one LightningModule each; architectures come from avlearn.models by name."""
