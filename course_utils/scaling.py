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
from typing import Iterator, Mapping, Sequence

import matplotlib.pyplot as plt
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


# ----------------------------------------------------------------------------- plots
def plot_first_order_check(check: Mapping, ax_pair=None):
    """Left: measured against predicted |Δ log p| per digit, one colour per ε, with the diagonal.
    Right: median ratio measured / predicted against ε, with the 10–90 % band."""
    if ax_pair is None:
        fig, ax_pair = plt.subplots(1, 2, figsize=(11.5, 4.4))
    else:
        fig = ax_pair[0].figure
    left, right = ax_pair
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(check["eps"])))
    lo, hi = np.inf, 0.0
    ratios = []
    for eps, pred, meas, c in zip(check["eps"], check["predicted"], check["measured"], colours):
        p, m = (-pred).double().cpu().numpy(), (-meas).double().cpu().numpy()
        keep = (p > 0) & (m > 0)
        left.scatter(p[keep], m[keep], s=6, alpha=0.5, color=c, label=f"ε = {eps:.2g}")
        lo, hi = min(lo, p[keep].min(), m[keep].min()), max(hi, p[keep].max(), m[keep].max())
        ratios.append(meas.double() / pred.double())
    left.plot([lo, hi], [lo, hi], color="grey", ls="--", lw=1, label="measured = predicted")
    left.set_xscale("log"), left.set_yscale("log")
    left.set_xlabel("predicted drop ε·Σ|g_j|")
    left.set_ylabel("measured drop log p(y*|x0) − log p(y*|x1)")
    left.set_title("Each dot is one digit")
    left.legend(fontsize=7, loc="upper left", markerscale=2)
    left.grid(alpha=0.3)
    med = [r.median().item() for r in ratios]
    q10 = [r.quantile(0.1).item() for r in ratios]
    q90 = [r.quantile(0.9).item() for r in ratios]
    right.fill_between(check["eps"], q10, q90, alpha=0.25, label="10–90 % of digits")
    right.plot(check["eps"], med, marker="o", label="median")
    right.axhline(1.0, color="grey", ls="--", lw=1, label="first order exact")
    right.set_xscale("log"), right.set_yscale("log")
    right.set_xlabel("ε")
    right.set_ylabel("measured / predicted")
    right.set_title("Where the linear picture stops holding")
    right.legend(fontsize=8)
    right.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def plot_loglog(d: Sequence[float], series: Mapping[str, Sequence[float]], xlabel: str, ylabel: str, title: str, ax=None):
    """Each series against d on log–log axes, with its least-squares line and slope in the legend."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4.4))
    else:
        fig = ax.figure
    d_arr = np.asarray(d, dtype=float)
    line = np.geomspace(d_arr.min(), d_arr.max(), 50)
    for k, (label, values) in enumerate(series.items()):
        slope, intercept = loglog_fit(d_arr, values)
        (pts,) = ax.plot(d_arr, values, "osD^v"[k % 5], ms=6, label=f"{label}: slope {slope:.2f}")
        ax.plot(line, np.exp(intercept) * line**slope, color=pts.get_color(), lw=1, alpha=0.7)
    ax.set_xscale("log"), ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def plot_flip_curves(eps_grid: Sequence[float], flip_eps: Mapping[str, torch.Tensor], ax=None):
    """Share of examples still predicted right against ε (log axis), one line per dimension.

    `flip_eps[label]` holds each example's smallest flipping ε (0: wrong already, inf: never
    flipped on the grid), as `evaluate.minimal_flipping_eps` returns it.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4.4))
    else:
        fig = ax.figure
    grid = [float(e) for e in eps_grid if e > 0]
    for label, t in flip_eps.items():
        t = t.detach().cpu()
        # Compare in t's own dtype: a flip found at grid value e is stored as e in that dtype.
        still_right = t[None, :] > torch.tensor(grid, dtype=t.dtype)[:, None]
        ax.plot(grid, (100 * still_right.double().mean(dim=1)).numpy(), label=label)
    ax.axhline(50, color="grey", ls="--", lw=1, label="half flipped")
    ax.set_xscale("log")
    ax.set_ylim(-2, 102)
    ax.set_xlabel("ε (ℓ∞), FGSM")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("FGSM accuracy against ε")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig
