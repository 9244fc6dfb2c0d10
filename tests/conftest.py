"""Fixtures shared by the unit tests: the embedded MNIST sample and one small trained CNN.

The CNN is deliberately smaller than `models.mnist_cnn` (one epoch takes about two
seconds on two CPU cores) but is a real trained network: about 85-90 % clean
accuracy, and PGD at ε = 0.1 breaks a good share of it, which is all the attack
tests need. Tests that change a model (its mode, its gradients) take a copy.
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.data import load_mnist
from course_utils import models
from course_utils.models import Normalize, linear
from course_utils.attacks import pgd
from course_utils.train import cyclic_lr, fit


def small_cnn() -> nn.Sequential:
    """Normalize → two strided convolutions → fc 64 → 10: logits for [0, 1] inputs."""
    return nn.Sequential(
        Normalize([0.1307], [0.3081]),
        nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


@pytest.fixture(scope="session")
def mnist():
    """(x_train, y_train, x_test, y_test) of the fast profile: the embedded 5,000-digit sample."""
    return load_mnist("fast")


@pytest.fixture(scope="session")
def _trained_cnn(mnist):
    x_train, y_train, _, _ = mnist
    torch.manual_seed(0)
    model = small_cnn()
    fit(model, x_train, y_train, epochs=1, batch_size=64, lr=1e-3,
        generator=torch.Generator().manual_seed(0), progress=False)
    return model.eval()


@pytest.fixture(scope="session")
def _robust_cnn(mnist):
    x_train, y_train, _, _ = mnist
    torch.manual_seed(0)
    model = models.small_cnn()
    fit(model, x_train, y_train, epochs=4, batch_size=64, lr=cyclic_lr(5e-3), progress=False,
        attack=lambda m, x, y: pgd(m, x, y, 0.1, 2.5 * 0.1 / 3, 3), generator=torch.Generator().manual_seed(0))
    return model.eval()


@pytest.fixture
def robust_cnn(_robust_cnn):
    """A copy of the course's small CNN trained with PGD-3 at ε = 0.1 for 4 epochs (cyclic learning rate):
    a model on which weak and strong attacks differ."""
    return copy.deepcopy(_robust_cnn).eval()


@pytest.fixture
def trained_cnn(_trained_cnn):
    """A private copy of the session's trained CNN, in eval mode, so a test may change it freely."""
    return copy.deepcopy(_trained_cnn).eval()


@pytest.fixture(scope="session")
def eval_batch(mnist):
    """The first 400 held-out images and labels: what the attack comparisons run on."""
    _, _, x_test, y_test = mnist
    return x_test[:400], y_test[:400]


@pytest.fixture(scope="session")
def linear_mnist_300(mnist):
    """Softmax regression fitted on 1,000 MNIST digits in a fraction of a second (≈ 85 % test accuracy), with 300 test digits."""
    x_train, y_train, x_test, y_test = mnist
    torch.manual_seed(0)
    model = linear()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(30):
        optimizer.zero_grad()
        F.cross_entropy(model(x_train[:1000]), y_train[:1000]).backward()
        optimizer.step()
    return model.eval(), x_test[:300], y_test[:300]
