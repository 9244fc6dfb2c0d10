"""The `full` profile's loading path, exercised offline on small files in torchvision's own format.

No network is needed: we write MNIST's idx files ourselves, so the code that the full profile
runs on a GPU machine (torchvision reading data/MNIST/raw, conversion to device tensors,
subsampling) is tested here too.
"""
import struct

import numpy as np
import torch
from torchvision.datasets import MNIST

from course_utils.data import load_mnist
from course_utils.config import get_profile


def _write_idx(path, array: np.ndarray) -> None:
    """The idx format: zero bytes, a type code (0x08 = uint8), the rank, big-endian sizes, the data."""
    with open(path, "wb") as fh:
        fh.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        fh.write(struct.pack(f">{array.ndim}I", *array.shape))
        fh.write(array.astype(np.uint8).tobytes())


def _fake_mnist(root, n_train=30, n_test=20):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) + 3) % 10,
    }
    names = {r[0].rsplit(".", 1)[0] for r in MNIST.resources}
    assert names == set(arrays), "torchvision changed MNIST's file names"
    for name, array in arrays.items():
        _write_idx(raw / name, array)
    return arrays


def test_full_profile_reads_torchvision_mnist_files(tmp_path, monkeypatch):
    arrays = _fake_mnist(tmp_path)
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("course_utils.data._online", lambda *a, **k: False)  # must not even try to download
    x_train, y_train, x_test, y_test = load_mnist("full")
    assert x_train.shape == (30, 1, 28, 28) and x_test.shape == (20, 1, 28, 28)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    # Fewer images than the profile asks for: all of them, unshuffled, scaled to [0, 1].
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"]).float().div(255).unsqueeze(1)
    assert torch.allclose(x_train, expected)
    assert y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_full_profile_subsamples_to_the_profiles_sizes(tmp_path, monkeypatch):
    _fake_mnist(tmp_path, n_train=50, n_test=40)
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    small = get_profile("full").replace(n_train=25, n_test=10)
    x_train, y_train, x_test, y_test = load_mnist(small)
    assert len(y_train) == 25 and len(y_test) == 10
    again = load_mnist(small)
    assert torch.equal(again[0], x_train), "the subset must be the same every time"
