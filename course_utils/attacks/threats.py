"""Threat models beyond the ℓp ball, for 07 (unforeseen attacks, Kang et al. 2019).

A defence trained against one threat model is usually measured against that same one.
Kang et al. ask what happens against perturbations it never saw: rotations and shifts
(Engstrom et al. 2019), smooth elastic warps, fog. Each threat here is a small set of
parameters (an angle and a shift, a coarse displacement field, a coarse fog pattern)
and a pure function that renders an image from them; the attack searches the
parameters, by grid or random search when there are three of them, by PGD with sign
steps when there are dozens.

Every attack follows the rules of `attacks.core`: images are N×C×H×W in [0, 1] and the
output is a detached batch in [0, 1]; gradients come from `torch.autograd.grad` with
respect to the threat's parameters only; the model runs in eval mode and gets its mode
back; losses are summed per example. Geometric warps use bilinear `grid_sample` with
zero padding, so what enters the frame is black, MNIST's background.

`attacks.registry.make_attack(name, size)` puts every threat, the three ℓp balls included, behind
one call shape `attack(model, x, y)`.
"""
from __future__ import annotations

import itertools
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..images import affine, check_images, normal, uniform
from .core import as_plain, attack_inputs, check_count, check_number, check_steps, cross_entropy, eval_mode, worst_case


# Engstrom et al.'s MNIST setting pairs ±30° with ±3 pixels: the shift follows the angle (`registry`).
DEGREES_PER_PIXEL = 10.0


def _check_alpha(alpha, default: float) -> float:
    return default if alpha is None else check_number("alpha", alpha, positive=True)


# ----------------------------------------------------------------------------- shared search pieces
def _parameter_gradient(model: nn.Module, render: Callable[[torch.Tensor], torch.Tensor], params: torch.Tensor,
                        y: torch.Tensor) -> torch.Tensor:
    """∇ of the summed cross-entropy with respect to the threat's parameters; the model's gradients are left alone."""
    with torch.enable_grad():
        params = params.detach().requires_grad_(True)
        loss = cross_entropy(model(render(params)), y).sum()
        (grad,) = torch.autograd.grad(loss, params)
    return grad


def _sign_pgd(model, y, render, start, low: float, high: float, alpha: float, steps: int) -> torch.Tensor:
    """PGD with sign steps on parameters that live in the box [low, high]; returns the parameters."""
    params = start
    for _ in range(steps):
        grad = _parameter_gradient(model, render, params, y)
        params = (params + alpha * grad.sign()).clamp(low, high)
    return params.detach()


# ----------------------------------------------------------------------------- rotation and translation
def rotate_translate(x: torch.Tensor, angle_deg, tx, ty) -> torch.Tensor:
    """Rotate each image by `angle_deg` degrees about its centre, then shift it by (tx, ty) pixels.

    `images.affine` with no scale and no shear: each parameter is a number or one value per image,
    a positive angle turns the image counter-clockwise as displayed (90° equals
    `torch.rot90(x, 1, dims=(-2, -1))`), a positive tx moves the content right, a positive ty down,
    and what enters the frame is black.
    """
    return affine(x, angle_deg, (tx, ty))


def _evenly_spaced(limit: float, count: int) -> list[float]:
    """`count` values from −limit to limit (0 among them when count is odd)."""
    if count == 1:
        return [0.0]
    return [limit * (2 * i / (count - 1) - 1) for i in range(count)]


def rotation_translation(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    max_angle: float,
    max_shift: float,
    *,
    trials: int | None = None,
    angles: int = 11,
    shifts: int = 5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Engstrom et al.'s (2019) spatial attack: the worst rotation by ≤ max_angle degrees and shift by ≤ max_shift pixels.

    With `trials=None` it tries a grid: `angles` angles × `shifts` × `shifts` shifts, evenly
    spaced over the ranges. With `trials=k` it tries k random transforms per example,
    drawn uniformly (Engstrom's worst-of-k, cheap enough to train against). Either way
    the untransformed image is tried first, and each example keeps the first transform
    that fools the model, else the one with the highest loss. No gradients: the loss
    surface of three parameters is rugged enough that search beats first-order steps.
    """
    x0, y = attack_inputs(model, x, y)
    max_angle = check_number("max_angle", max_angle)
    if max_angle > 180:
        raise ValueError(f"max_angle must be ≤ 180 degrees, got {max_angle}")
    max_shift = check_number("max_shift", max_shift)
    if trials is not None:
        trials = check_count("trials", trials)
    angles, shifts = check_count("angles", angles), check_count("shifts", shifts)
    if max_angle == 0 and max_shift == 0:
        return x0.clone()  # the identity is the only transform

    if trials is None:
        grid = {(a, sx, sy) for a in _evenly_spaced(max_angle, angles)
                for sx in _evenly_spaced(max_shift, shifts) for sy in _evenly_spaced(max_shift, shifts)}
        grid.discard((0.0, 0.0, 0.0))  # already tried first, exactly
        # Mild transforms first: an example keeps the first one that fools the model.
        transforms = sorted(grid, key=lambda t: (abs(t[0]), abs(t[1]) + abs(t[2]), t))
    else:
        n = x0.shape[0]
        transforms = [
            (uniform(n, x0, -max_angle, max_angle, generator),
             uniform(n, x0, -max_shift, max_shift, generator),
             uniform(n, x0, -max_shift, max_shift, generator))
            for _ in range(trials)
        ]
    # A generator, so that only one transformed batch is alive at a time.
    candidates = itertools.chain([x0], (rotate_translate(x0, *t) for t in transforms))
    with eval_mode(model), torch.no_grad():
        return worst_case(model, y, candidates).detach()


# ----------------------------------------------------------------------------- elastic warp
def elastic_deform(x: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """Warp each image by a smooth displacement field given at a coarse lattice of control points.

    `displacement` is N×2×g×g in pixels (channel 0 to the right, channel 1 down), with
    the g×g control points spread evenly from corner to corner. It is upsampled
    bilinearly to H×W, so no pixel moves further than the largest control displacement,
    and the output at pixel p is the input read at p + displacement(p).
    """
    h, w = x.shape[-2:]
    flow = F.interpolate(displacement, size=(h, w), mode="bilinear", align_corners=True)
    identity = torch.eye(2, 3, dtype=x.dtype, device=x.device).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(identity, list(x.shape), align_corners=False)
    # One pixel is 2/W (horizontally) and 2/H (vertically) in grid_sample's [−1, 1] coordinates.
    to_grid_units = torch.tensor([2.0 / w, 2.0 / h], dtype=x.dtype, device=x.device)
    grid = grid + flow.permute(0, 2, 3, 1) * to_grid_units
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def elastic(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, *,
            alpha: float | None = None, grid: int = 7, random_start: bool = True,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """An adversarial elastic warp: PGD on a grid×grid field of control displacements in [−ε, ε] pixels.

    Sign steps of size `alpha` (default 2.5·ε/steps, as for ℓ∞ PGD) on the displacements,
    which are an ℓ∞ box; the warp is `elastic_deform`. Returns the warped images.
    """
    x0, y = attack_inputs(model, x, y)
    eps = check_number("eps", eps)
    steps = check_steps(steps)
    alpha = _check_alpha(alpha, 2.5 * eps / max(steps, 1))
    grid = check_count("grid", grid)
    if eps == 0:
        return x0.clone()  # exactly: resampling at the identity grid is only accurate to ~1e-6
    shape = (x0.shape[0], 2, grid, grid)
    start = uniform(shape, x0, -eps, eps, generator) if random_start else x0.new_zeros(shape)
    render = lambda displacement: elastic_deform(x0, displacement)
    with eval_mode(model):
        displacement = _sign_pgd(model, y, render, start, -eps, eps, alpha, steps)
    return render(displacement).clamp(0.0, 1.0).detach()


# ----------------------------------------------------------------------------- fog
def add_fog(x: torch.Tensor, pattern: torch.Tensor, eps: float) -> torch.Tensor:
    """(x + ε·F)/(1 + ε): a haze F in [0, 1] brightens the image and lowers its contrast.

    `pattern` is N×1×g×g in [0, 1]; F is that coarse pattern upsampled bicubically to
    H×W (a low-frequency fog, the same on every channel), clipped back to [0, 1]
    because bicubic interpolation overshoots. With ε = 0 the image is unchanged.
    """
    fog = F.interpolate(pattern, size=x.shape[-2:], mode="bicubic", align_corners=True).clamp(0.0, 1.0)
    return (x + eps * fog) / (1.0 + eps)


def adversarial_fog(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, *,
                    alpha: float | None = None, grid: int = 4, random_start: bool = True,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Adversarial fog of strength ε ≥ 0: PGD on a grid×grid fog pattern z in [0, 1] (`add_fog`).

    The budget is ε, not the pattern: any z is allowed, and the attack chooses where the
    fog is thick. Sign steps of size `alpha` on z, default 1.25/steps, the ℓ∞ rule
    2.5·(half-width)/steps for a box of half-width 1/2. Without a random start z = 0, the
    clean image dimmed by 1/(1 + ε).
    """
    x0, y = attack_inputs(model, x, y)
    eps = check_number("eps", eps)
    steps = check_steps(steps)
    alpha = _check_alpha(alpha, 1.25 / max(steps, 1))
    grid = check_count("grid", grid)
    shape = (x0.shape[0], 1, grid, grid)
    start = uniform(shape, x0, 0.0, 1.0, generator) if random_start else x0.new_zeros(shape)
    render = lambda pattern: add_fog(x0, pattern, eps)
    with eval_mode(model):
        pattern = _sign_pgd(model, y, render, start, 0.0, 1.0, alpha, steps)
    return render(pattern).clamp(0.0, 1.0).detach()


# ----------------------------------------------------------------------------- noise
def gaussian_noise(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + σ·N(0, 1) per pixel, clipped to [0, 1]: not an attack, the augmentation of noise training."""
    check_images(x)
    sigma = check_number("sigma", sigma)
    x = as_plain(x)
    return torch.clamp(x + sigma * normal(x.shape, x, generator), 0.0, 1.0)


def __getattr__(name: str):
    """The registry's names, which lived here in 0.1 (`threats.make_attack`): old notebooks still run."""
    if name in ("make_attack", "THREATS", "THREAT_NAMES", "DESCRIPTIONS"):
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
