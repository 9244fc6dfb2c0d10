"""Datasets as device-resident tensors, and index-sliced mini-batches.

Images are float32 in [0, 1] with shape N×C×H×W; labels are int64. Everything is
loaded once onto the device and batched by indexing: for data this small that is
several times faster than a DataLoader with per-image transforms.
"""
from __future__ import annotations

import os
import socket
import urllib.parse
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .config import Profile, get_profile
from .paths import data_dir, repo_root

SAMPLE_FILE = "mnist_5k.npz"
SAMPLE_TEST_PER_CLASS = 100  # 5,000 digits → 4,000 train / 1,000 test, stratified


class DatasetUnavailableError(RuntimeError):
    """A dataset is neither on disk nor downloadable; the message says what to do."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of a traceback: the message is the whole story.
        return [f"DatasetUnavailableError: {self}"]


def _sample_path() -> Path:
    for folder in (data_dir(), repo_root() / "data"):
        if (folder / SAMPLE_FILE).is_file():
            return folder / SAMPLE_FILE
    raise DatasetUnavailableError(
        f"The embedded MNIST sample {SAMPLE_FILE} was not found in {data_dir()}. It ships with "
        "the course repository: run the notebooks from a clone of it (pip install -e .), or set "
        "COURSE_DATA_DIR to the folder that holds the file."
    )


def _stratified_split(labels: np.ndarray, test_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/test indices with exactly `test_per_class` test images of every class, in shuffled order.

    Shuffled, not sorted: the file is ordered by class, and any prefix (an evaluation
    subset, a first batch) must mix the classes.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test.append(idx[:test_per_class])
        train.append(idx[test_per_class:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _subsample(x: torch.Tensor, y: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n images of a fixed permutation, so smaller profiles see a stratum-free random subset."""
    if n >= len(y):
        return x, y
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx], y[idx]


def _to_tensors(images: np.ndarray, labels: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    if x.dim() == 3:
        x = x.unsqueeze(1)  # N×H×W → N×1×H×W
    elif x.dim() == 4 and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2).contiguous()  # N×H×W×C → N×C×H×W
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    return x.to(device), y.to(device)


def load_mnist_sample(device="cpu", split_seed: int = 0):
    """The embedded 5,000-digit sample, split 4,000/1,000 (stratified, deterministic)."""
    with np.load(_sample_path()) as f:
        images, labels = f["images"], f["labels"].astype(np.int64)
    tr, te = _stratified_split(labels, SAMPLE_TEST_PER_CLASS, split_seed)
    x_train, y_train = _to_tensors(images[tr], labels[tr], device)
    x_test, y_test = _to_tensors(images[te], labels[te], device)
    return x_train, y_train, x_test, y_test


def _online(url: str, timeout: float = 3.0) -> bool:
    """Whether the host of `url` answers a TCP connection within `timeout` seconds.

    COURSE_OFFLINE=1 answers no without trying (for machines that must never download).
    """
    if os.environ.get("COURSE_OFFLINE", "").strip() not in ("", "0"):
        return False
    parts = urllib.parse.urlparse(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _torchvision_dataset(cls_name: str, root: Path, train: bool, probe_urls: list[str]):
    """Load a torchvision dataset from `root`, downloading it only when that can work."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    try:
        return cls(root=str(root), train=train, download=False)
    except RuntimeError:
        pass  # not on disk yet
    if not any(_online(u) for u in probe_urls):
        raise DatasetUnavailableError(
            f"{cls_name} is not in {root} and its download server cannot be reached (offline?). "
            f"Either use the 'fast' profile (PROFILE = \"fast\"), which needs no download, or put "
            f"the torchvision {cls_name} files in {root} (or point COURSE_DATA_DIR at them)."
        )
    try:
        return cls(root=str(root), train=train, download=True)
    except Exception as err:  # a dropped connection, a checksum failure ...
        raise DatasetUnavailableError(
            f"Downloading {cls_name} into {root} failed ({type(err).__name__}: {err}). "
            "Use the 'fast' profile, or put the files there by hand."
        ) from err


def load_mnist(profile: Profile | str = "fast", device="cpu"):
    """MNIST as (x_train, y_train, x_test, y_test) on `device`, in [0, 1], N×1×28×28.

    `profile` is a Profile or its name. The "sample" dataset (fast profile) is the
    embedded 5,000-digit sample and never touches the network; "mnist" (full profile)
    is torchvision's MNIST under data/, downloaded once when online.
    """
    prof = get_profile(profile) if isinstance(profile, str) else profile
    if prof.dataset == "sample":
        x_train, y_train, x_test, y_test = load_mnist_sample(device)
    elif prof.dataset == "mnist":
        from torchvision.datasets import MNIST

        root = data_dir()
        probes = [m for m in getattr(MNIST, "mirrors", [])]
        train = _torchvision_dataset("MNIST", root, True, probes)
        test = _torchvision_dataset("MNIST", root, False, probes)
        x_train, y_train = _to_tensors(train.data.numpy(), train.targets.numpy(), device)
        x_test, y_test = _to_tensors(test.data.numpy(), test.targets.numpy(), device)
    else:
        raise ValueError(f"unknown dataset {prof.dataset!r} in profile {prof.name!r}")
    x_train, y_train = _subsample(x_train, y_train, prof.n_train, seed=1)
    x_test, y_test = _subsample(x_test, y_test, prof.n_test, seed=2)
    return x_train, y_train, x_test, y_test


def load_cifar10(profile: Profile | str = "full", device="cpu"):
    """CIFAR-10 as (x_train, y_train, x_test, y_test), N×3×32×32 in [0, 1]; full profile only.

    There is no embedded CIFAR-10 sample, so this always needs the files under data/
    (downloaded once when online).
    """
    prof = get_profile(profile) if isinstance(profile, str) else profile
    if prof.dataset == "sample":
        raise DatasetUnavailableError(
            "CIFAR-10 has no embedded sample: it is offered in the 'full' profile only "
            "(it downloads about 170 MB into data/ once)."
        )
    from torchvision.datasets import CIFAR10

    root = data_dir()
    train = _torchvision_dataset("CIFAR10", root, True, [CIFAR10.url])
    test = _torchvision_dataset("CIFAR10", root, False, [CIFAR10.url])
    x_train, y_train = _to_tensors(train.data, train.targets, device)
    x_test, y_test = _to_tensors(test.data, test.targets, device)
    x_train, y_train = _subsample(x_train, y_train, prof.n_train, seed=1)
    x_test, y_test = _subsample(x_test, y_test, prof.n_test, seed=2)
    return x_train, y_train, x_test, y_test


def batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches of (x, y) by index slicing; the last batch may be smaller."""
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = len(y)
    if shuffle:
        order = torch.randperm(n, generator=generator).to(x.device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]
    else:
        for start in range(0, n, batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]
