"""Inference from a file: run a trained model over a clip and report or write the results."""
