import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # tests/media.py, the test-media factory

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "real"


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def real_dir() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"real media folder {REAL} not present")
    return REAL


@pytest.fixture(scope="session")
def mouth_checkpoint(tmp_path_factory):
    """A tiny random sync model that reads mouths (``crop="mouth"``): enough for the pipelines' structure, not
    for who speaks or when."""
    from avlearn.models import create_model
    from avlearn.models.weights import save_weights

    torch.manual_seed(0)
    net = create_model("avsync_mbt_tiny", crop="mouth")
    path = tmp_path_factory.mktemp("ckpt") / "sync_mouths"
    pre = {**net.preprocessing, "window": 0.32}
    save_weights(path, net, model_name="avsync_mbt_tiny", model_args={"crop": "mouth"}, task="sync", preprocessing=pre)
    return path
