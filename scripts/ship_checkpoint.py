"""Copies a trained checkpoint into assets/checkpoints with float16 tensors (half the size; loading casts back).

    .venv/bin/python scripts/ship_checkpoint.py runs/separation/speakers_avsep/version_1/weights/best \
        assets/checkpoints/separate_speakers
"""

import argparse

import torch

from avlearn.models.weights import load_weights, save_weights


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source")
    p.add_argument("destination")
    args = p.parse_args()
    net, doc = load_weights(args.source)
    meta = dict(doc.get("meta", {}), shipped_from=str(args.source), stored_dtype="float16")
    path = save_weights(
        args.destination,
        net,
        model_name=doc["model"],
        model_args=doc["model_args"],
        task=doc["task"],
        preprocessing=doc["preprocessing"],
        meta=meta,
        dtype=torch.float16,
        components=doc.get("components"),
    )
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
