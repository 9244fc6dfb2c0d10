"""The course's trained models, each defined once by a config and cached by `load_or_train`.

Every notebook that needs "the standard CNN" asks here, so 00 trains it and 01, 02 …
load the very same weights.
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn

from .checkpoints import load_or_train
from .models import build_model
from .setup import Profile
from .train import fit


def data_fingerprint(x: torch.Tensor, y: torch.Tensor) -> str:
    """A short hash of a training set (labels and a sparse grid of pixels), cheap even for full MNIST.

    It goes into every config, so a cached model trained on other data is never reused.
    """
    h = hashlib.sha256(y.detach().cpu().numpy().tobytes())
    h.update(x.detach()[..., ::5, ::5].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def standard_config(profile: Profile, data: str, seed: int = 0, model: str = "mnist_cnn") -> dict:
    """Everything that determines the standard model's weights; a change means retraining."""
    return {
        "model": model,
        "data": data,
        "training": "standard",
        "dataset": profile.dataset,
        "n_train": profile.n_train,
        "epochs": profile.epochs,
        "batch_size": profile.batch_size,
        "lr": profile.lr,
        "seed": seed,
    }


def standard_model(
    profile: Profile,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    device,
    seed: int = 0,
    model: str = "mnist_cnn",
    progress: bool = True,
) -> tuple[nn.Module, list]:
    """The architecture `model` trained without an adversary on (x_train, y_train), cached."""
    if len(y_train) != profile.n_train:
        raise ValueError(f"expected the profile's {profile.n_train} training images, got {len(y_train)}")

    def train(config: dict):
        torch.manual_seed(config["seed"])
        net = build_model(config["model"]).to(device)
        history = fit(
            net, x_train, y_train,
            epochs=config["epochs"], lr=config["lr"], batch_size=config["batch_size"],
            generator=torch.Generator().manual_seed(config["seed"]), progress=progress,
            desc=f"training {config['model']} ({config['training']})",
        )
        return net, history

    return load_or_train(f"{model}_standard_{profile.name}_s{seed}", train, standard_config(profile, data_fingerprint(x_train, y_train), seed, model), device)
