"""Datasets: the embedded sample's split, batching, and clear errors when a dataset is missing."""
import time

import numpy as np
import pytest
import torch
from torchvision.datasets import MNIST

import course_utils.data as data
from course_utils.data import DatasetUnavailableError, batches, load_cifar10, load_mnist


def test_fast_mnist_shapes_types_and_range(mnist):
    x_train, y_train, x_test, y_test = mnist
    assert x_train.shape == (4000, 1, 28, 28) and y_train.shape == (4000,)
    assert x_test.shape == (1000, 1, 28, 28) and y_test.shape == (1000,)
    assert x_train.dtype == x_test.dtype == torch.float32
    assert y_train.dtype == y_test.dtype == torch.int64
    for x in (x_train, x_test):
        assert x.min() >= 0 and x.max() <= 1
        assert x.max() == 1 and x.min() == 0  # really scaled by 255, not left in 0..255 nor squashed
    assert set(y_train.tolist()) == set(range(10))


def test_fast_test_split_is_stratified(mnist):
    """Oracle: exactly 100 test images of each digit."""
    assert torch.bincount(mnist[3], minlength=10).tolist() == [100] * 10


def test_fast_mnist_is_deterministic(mnist):
    again = load_mnist("fast")
    assert all(torch.equal(a, b) for a, b in zip(mnist, again))


def test_train_and_test_are_disjoint(mnist):
    """No image of the test split appears (pixel for pixel) in the training split."""
    x_train, _, x_test, _ = mnist
    as_bytes = lambda x: {row.tobytes() for row in (x.flatten(1) * 255).round().to(torch.uint8).numpy()}
    train_rows, test_rows = as_bytes(x_train), as_bytes(x_test)
    assert len(test_rows) > 990  # rows really differ, so the intersection below means something
    assert not train_rows & test_rows


def test_sample_found_even_when_data_dir_is_elsewhere(tmp_path, monkeypatch):
    """COURSE_DATA_DIR for big datasets must not hide the embedded sample that ships with the repo."""
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    assert load_mnist("fast")[0].shape == (4000, 1, 28, 28)


def test_batches_cover_every_index_once_with_shuffle():
    """Oracle: with x = y = index, the shuffled batches are a permutation of all indices, pairs intact."""
    n = 10
    x = torch.arange(n, dtype=torch.float32)[:, None]
    y = torch.arange(n)
    out = list(batches(x, y, 4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [len(yb) for _, yb in out] == [4, 4, 2]
    seen = torch.cat([yb for _, yb in out])
    assert sorted(seen.tolist()) == list(range(n))
    assert seen.tolist() != list(range(n))  # shuffled
    assert all(torch.equal(xb[:, 0].long(), yb) for xb, yb in out)
    again = torch.cat([yb for _, yb in batches(x, y, 4, shuffle=True, generator=torch.Generator().manual_seed(0))])
    assert torch.equal(seen, again)


def test_batches_in_order_without_shuffle():
    x, y = torch.arange(7.0)[:, None], torch.arange(7)
    assert [yb.tolist() for _, yb in batches(x, y, 3)] == [[0, 1, 2], [3, 4, 5], [6]]


def test_batches_reject_bad_arguments():
    x, y = torch.zeros(5, 1), torch.zeros(5, dtype=torch.int64)
    with pytest.raises(ValueError, match="length"):
        list(batches(x, y[:4], 2))
    with pytest.raises(ValueError, match="batch_size"):
        list(batches(x, y, 0))


def test_full_mnist_offline_fails_fast_and_points_to_fast(tmp_path, monkeypatch):
    """Empty data folder + no network: a DatasetUnavailableError naming the 'fast' way out, not a hang."""
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(data, "_online", lambda *args, **kwargs: False)
    downloads = []
    monkeypatch.setattr(MNIST, "download", lambda self: downloads.append(self))
    start = time.perf_counter()
    with pytest.raises(DatasetUnavailableError, match="fast"):
        load_mnist("full")
    assert time.perf_counter() - start < 10
    assert downloads == []  # offline: no download is even attempted
    assert list(tmp_path.iterdir()) == [] or all(p.is_dir() for p in tmp_path.iterdir())


def test_cifar10_has_no_fast_version():
    with pytest.raises(DatasetUnavailableError, match="full"):
        load_cifar10("fast")


def test_stratified_split_helper_against_counts():
    """Oracle: per class, test gets exactly k and train the rest; the two index sets partition everything."""
    labels = np.array([0] * 7 + [1] * 5 + [2] * 9)
    train, test = data._stratified_split(labels, 3, seed=0)
    assert np.bincount(labels[test]).tolist() == [3, 3, 3]
    assert np.bincount(labels[train]).tolist() == [4, 2, 6]
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(labels)))
