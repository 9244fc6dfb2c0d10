"""How the first-order effect of an ℓ∞ attack grows with the input dimension d (notebook 03).

The lecture's Taylor argument: FGSM moves x0 to x1 = x0 − ε·sign(g), with
g = ∇x log p(y*|x0), so to first order

    log p(y*|x1) − log p(y*|x0) ≈ ⟨g, x1 − x0⟩ = −ε·Σ_j |g_j|.

How large Σ_j |g_j| is, and how it grows with d, decides how small an ε suffices. The
pieces here measure it: per-example input-gradient ℓ1 norms, the first-order prediction
against the measured change, a least-squares slope on log–log axes, digits resampled to
other resolutions, two constructions of the same network that differ only in how their
first layer is scaled with d, and a synthetic task whose dimension we choose.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .attacks import eval_mode, input_gradient
from .models import Normalize


# ----------------------------------------------------------------------------- data
def resample(x: torch.Tensor, side: int) -> torch.Tensor:
    """Images N×C×H×W resized to side×side (bilinear, antialiased when shrinking), kept in [0, 1].

    The same digit at another resolution: d = C·side² input coordinates carrying the
    same picture.
    """
    if not isinstance(side, int) or side < 1:
        raise ValueError(f"side must be a positive int, got {side!r}")
    if x.dim() != 4:
        raise ValueError(f"x must be an image batch N×C×H×W, got shape {tuple(x.shape)}")
    out = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return out.clamp(0.0, 1.0)


def synthetic_task(d: int, n: int, mu0: float = 0.2, sigma: float = 0.1, generator: torch.Generator | None = None):
    """A two-class task in d dimensions whose difficulty does not depend on d.

    Label y ∈ {0, 1}, s = 2y − 1; every coordinate is independent evidence,
    x_j = 0.5 + s·μ0/√d + σ·noise_j (then clipped to [0, 1], which at these sizes
    almost never bites). The total evidence Σ_j (x_j − 0.5) has signal-to-noise μ0/σ at
    every d, so the best possible accuracy is Φ(μ0/σ) whatever d is (≈ 97.7 % for the
    defaults): only the number of coordinates the evidence is spread over changes.
    Returned as one-row images, N×1×1×d, so the course's models and attacks apply as is.
    """
    if not isinstance(d, int) or d < 1 or not isinstance(n, int) or n < 1:
        raise ValueError(f"d and n must be positive ints, got d={d!r}, n={n!r}")
    y = torch.randint(0, 2, (n,), generator=generator)
    s = (2 * y - 1).float().view(n, 1, 1, 1)
    noise = torch.randn(n, 1, 1, d, generator=generator)
    x = (0.5 + s * mu0 / math.sqrt(d) + sigma * noise).clamp(0.0, 1.0)
    return x, y


# ----------------------------------------------------------------------------- models
def mlp_at_init(d: int, first_layer_scale: float | None = None, hidden: int = 200, classes: int = 10, seed: int = 0) -> nn.Sequential:
    """A freshly initialised MLP on d inputs (Flatten → d→hidden → hidden→hidden → classes, ReLU).

    `first_layer_scale=None` keeps PyTorch's default, fan-in-scaled initialisation: first-layer
    weights uniform in ±1/√d, i.e. "c/√d per coordinate". A number `c` instead draws them
    uniform in ±c whatever d is ("c per coordinate"), the lecture's naive picture. With
    c = 1/√d_ref the two coincide at d = d_ref. All other layers are identical.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(d, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, classes),
        )
    if first_layer_scale is not None:
        with torch.no_grad():
            w, b = net[1].weight, net[1].bias
            w.copy_((2 * torch.rand(w.shape, generator=gen) - 1) * first_layer_scale)
            b.copy_((2 * torch.rand(b.shape, generator=gen) - 1) * first_layer_scale)
    return net.eval()


def logistic_regression(d: int, center: float = 0.5, scale: float = 0.1, seed: int = 0) -> nn.Sequential:
    """Two-class logistic regression on one-row images N×1×1×d, standardising inside the model."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(Normalize([center], [scale]), nn.Flatten(), nn.Linear(d, 2))


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run the block with one CPU thread for torch, then restore the previous count.

    For models as small as `logistic_regression`, splitting each tiny matrix product across
    threads costs more than it saves, and on a busy machine the waiting threads can make
    training tens of times slower. GPU work is unaffected.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ----------------------------------------------------------------------------- gradients
def log_prob(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example log p(y*|x), in eval mode, without a graph."""
    with eval_mode(model), torch.no_grad():
        return F.log_softmax(model(x), dim=1).gather(1, y[:, None]).squeeze(1)


def log_prob_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """g = ∇x log p(y*|x) for every example (shaped like x), in eval mode.

    The cross-entropy is −log p(y*|x), so g is minus the course's `attacks.input_gradient`.
    """
    with eval_mode(model):
        return -input_gradient(model, x, y)


def input_gradient_l1(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Σ_j |g_j| per example, g = ∇x log p(y*|x): the first-order effect of an ℓ∞ step of size 1."""
    return log_prob_gradient(model, x, y).flatten(1).abs().sum(dim=1)


def first_order_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_list: Sequence[float]) -> dict:
    """For each ε: the predicted change −ε·Σ|g_j| and the measured change of log p(y*|x).

    The step is the lecture's x1 = x0 − ε·sign(g), *not* clipped to [0, 1]: clipping would
    remove part of the step (the dark background of a digit cannot get darker) and the
    first-order prediction would then be ⟨g, x1 − x0⟩ instead. Returns
    {"eps": [...], "predicted": [tensor per ε], "measured": [tensor per ε], "l1": Σ|g_j|}.
    Run it on a float64 copy of the model: for confident predictions log p(y*|x) is
    within 1e-5 of 0 and float32 rounding would swamp the small-ε changes.
    """
    g = log_prob_gradient(model, x, y)
    l1 = g.flatten(1).abs().sum(dim=1)
    base = log_prob(model, x, y)
    predicted, measured = [], []
    for eps in eps_list:
        predicted.append(-float(eps) * l1)
        measured.append(log_prob(model, x - float(eps) * g.sign(), y) - base)
    return {"eps": [float(e) for e in eps_list], "predicted": predicted, "measured": measured, "l1": l1}


def first_layer_preactivation_rms(model: nn.Module, x: torch.Tensor) -> float:
    """Root-mean-square of the first nn.Linear's outputs on x (flattened): how big a unit's input is."""
    first = next((m for m in model.modules() if isinstance(m, nn.Linear)), None)
    if first is None:
        raise ValueError("model has no nn.Linear layer")
    with torch.no_grad():
        return first(x.flatten(1)).pow(2).mean().sqrt().item()


def gradient_l1_by_side(
    x: torch.Tensor,
    y: torch.Tensor,
    sides: Sequence[int],
    first_layer_scale: float | None = None,
    seeds: Sequence[int] = (0,),
    hidden: int = 200,
) -> dict:
    """Mean Σ|g_j| over the digits, per resolution, for `mlp_at_init` (averaged over seeds).

    Returns {"d": [...], "l1": [...], "preactivation_rms": [...]}, one entry per side.
    """
    out = {"d": [], "l1": [], "preactivation_rms": []}
    for side in sides:
        xs = resample(x, side)
        d = xs[0].numel()
        l1s, rms = [], []
        for seed in seeds:
            net = mlp_at_init(d, first_layer_scale, hidden=hidden, classes=int(y.max()) + 1, seed=seed)
            l1s.append(input_gradient_l1(net, xs, y).mean().item())
            rms.append(first_layer_preactivation_rms(net, xs))
        out["d"].append(d)
        out["l1"].append(float(np.mean(l1s)))
        out["preactivation_rms"].append(float(np.mean(rms)))
    return out


# ----------------------------------------------------------------------------- fitting
def loglog_fit(d: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """Least-squares line through (ln d, ln value): returns (slope, intercept).

    values ≈ C·d^a gives slope a and intercept ln C. Natural logarithms; the slope does
    not depend on the base, the intercept does.
    """
    d, v = (np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=float) for a in (d, values))
    if d.shape != v.shape or d.ndim != 1 or len(d) < 2:
        raise ValueError(f"need two 1-D sequences of equal length ≥ 2, got shapes {d.shape} and {v.shape}")
    if (d <= 0).any() or (v <= 0).any():
        raise ValueError("a log–log fit needs positive numbers")
    u, w = np.log(d), np.log(v)
    if np.ptp(u) == 0:
        raise ValueError("all d are equal: the slope is undefined")
    slope = float(((u - u.mean()) * (w - w.mean())).sum() / ((u - u.mean()) ** 2).sum())
    return slope, float(w.mean() - slope * u.mean())


def __getattr__(name: str):
    """03's plots, which lived here in 0.1 (`scaling.plot_loglog`): they are in `viz` now."""
    if name in ("plot_first_order_check", "plot_loglog", "plot_flip_curves"):
        from . import viz

        return getattr(viz, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
