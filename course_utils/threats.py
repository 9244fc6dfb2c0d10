"""Threat models beyond the ℓp ball, for 07 (unforeseen attacks, Kang et al. 2019).

A defence trained against one threat model is usually measured against that same one.
Kang et al. ask what happens against perturbations it never saw: rotations and shifts
(Engstrom et al. 2019), smooth elastic warps, fog. Each threat here is a small set of
parameters (an angle and a shift, a coarse displacement field, a coarse fog pattern)
and a pure function that renders an image from them; the attack searches the
parameters, by grid or random search when there are three of them, by PGD with sign
steps when there are dozens.

Every attack follows the rules of `attacks`: images are N×C×H×W in [0, 1] and the
output is a detached batch in [0, 1]; gradients come from `torch.autograd.grad` with
respect to the threat's parameters only; the model runs in eval mode and gets its mode
back; losses are summed per example. Geometric warps use bilinear `grid_sample` with
zero padding, so what enters the frame is black, MNIST's background.

`make_attack(name, size)` puts every threat, the three ℓp balls included, behind one
call shape `attack(model, x, y)`, so that 07's table and its training loop treat them alike.
"""
from __future__ import annotations

import itertools
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import (
    _as_plain,
    _check_batch,
    _check_number,
    _check_steps,
    _normal,
    _outcome,
    _uniform,
    cross_entropy,
    eval_mode,
    pgd,
)

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- input checks
def _check_images(x: torch.Tensor, y: torch.Tensor) -> None:
    _check_batch(x, y)
    if x.dim() != 4:
        raise ValueError(f"x must be an image batch N×C×H×W, got shape {tuple(x.shape)}")


def _check_count(name: str, value, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int ≥ {minimum}, got {value!r}")
    return value


def _check_alpha(alpha, default: float) -> float:
    return default if alpha is None else _check_number("alpha", alpha, positive=True)


def _per_example(value, x: torch.Tensor, name: str) -> torch.Tensor:
    """A number or an N-vector of numbers, as an N-vector on x's device and dtype."""
    value = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if value.dim() == 0:
        return value.expand(x.shape[0])
    if value.shape != (x.shape[0],):
        raise ValueError(f"{name} must be a number or hold one value per image ({x.shape[0]}), got shape {tuple(value.shape)}")
    return value


def _as_batch_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1)))


# ----------------------------------------------------------------------------- shared search pieces
def _worst_case(model: nn.Module, y: torch.Tensor, candidates: Iterable[torch.Tensor]) -> torch.Tensor:
    """Per example, the first candidate that fools the model, else the one with the highest loss.

    The model must already be in eval mode. Keeping the first success (rather than any
    later one with a higher loss) is what guarantees that an example misclassified by
    the first candidate, e.g. the clean image, stays misclassified.
    """
    best = best_fooled = best_loss = None
    for candidate in candidates:
        fooled, loss = _outcome(model, candidate, y, False, cross_entropy)
        if best is None:
            best, best_fooled, best_loss = candidate, fooled, loss
            continue
        better = ~best_fooled & (fooled | (loss > best_loss))
        best = torch.where(_as_batch_mask(better, candidate), candidate, best)
        best_fooled, best_loss = best_fooled | fooled, torch.where(better, loss, best_loss)
    return best


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

    Each parameter is a number or one value per image. A positive angle turns the image
    counter-clockwise as displayed (row 0 at the top), so 90° equals
    `torch.rot90(x, 1, dims=(-2, -1))`; a positive tx moves the content right, a positive
    ty moves it down. Bilinear sampling with zero padding: what enters the frame is black.
    grid_sample's float32 coordinate arithmetic errs by about W·1e-7 pixels, so even the
    identity changes pixel values by up to a few 1e-6 on 28×28 (not at all on 32×32).
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise ValueError("x must be a floating-point image batch N×C×H×W")
    h, w = x.shape[-2:]
    angle = torch.deg2rad(_per_example(angle_deg, x, "angle_deg"))
    tx, ty = _per_example(tx, x, "tx"), _per_example(ty, x, "ty")
    cos, sin = torch.cos(angle), torch.sin(angle)
    # grid_sample asks, for each output pixel p, where to read the input: q = R(−θ)(p − t) in
    # pixel units (y down). affine_grid works in coordinates normalised to [−1, 1] per axis,
    # i.e. pixels scaled by 2/W and 2/H, which is why the off-diagonal terms carry H/W.
    theta = torch.stack([
        torch.stack([cos, -sin * h / w, -(cos * tx - sin * ty) * 2 / w], dim=1),
        torch.stack([sin * w / h, cos, -(sin * tx + cos * ty) * 2 / h], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


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
    _check_images(x, y)
    max_angle = _check_number("max_angle", max_angle)
    if max_angle > 180:
        raise ValueError(f"max_angle must be ≤ 180 degrees, got {max_angle}")
    max_shift = _check_number("max_shift", max_shift)
    if trials is not None:
        trials = _check_count("trials", trials)
    angles, shifts = _check_count("angles", angles), _check_count("shifts", shifts)
    x0, y = _as_plain(x), _as_plain(y)
    if max_angle == 0 and max_shift == 0:
        return x0.clone()  # the identity is the only transform

    if trials is None:
        grid = {(a, sx, sy) for a in _evenly_spaced(max_angle, angles)
                for sx in _evenly_spaced(max_shift, shifts) for sy in _evenly_spaced(max_shift, shifts)}
        grid.discard((0.0, 0.0, 0.0))  # already tried first, exactly
        # Mild transforms first: an example keeps the first one that fools the model.
        transforms = sorted(grid, key=lambda t: (abs(t[0]), abs(t[1]) + abs(t[2]), t))
    else:
        like = x0.new_empty(x0.shape[0])
        transforms = [
            (_uniform(like, -max_angle, max_angle, generator),
             _uniform(like, -max_shift, max_shift, generator),
             _uniform(like, -max_shift, max_shift, generator))
            for _ in range(trials)
        ]
    # A generator, so that only one transformed batch is alive at a time.
    candidates = itertools.chain([x0], (rotate_translate(x0, *t).clamp(0.0, 1.0) for t in transforms))
    with eval_mode(model), torch.no_grad():
        return _worst_case(model, y, candidates).detach()


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


def elastic(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int,
    *,
    alpha: float | None = None,
    grid: int = 7,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """An adversarial elastic warp: PGD on a grid×grid field of control displacements in [−ε, ε] pixels.

    Sign steps of size `alpha` (default 2.5·ε/steps, as for ℓ∞ PGD) on the displacements,
    which are an ℓ∞ box; the warp is `elastic_deform`. Returns the warped images.
    """
    _check_images(x, y)
    eps = _check_number("eps", eps)
    steps = _check_steps(steps)
    alpha = _check_alpha(alpha, 2.5 * eps / max(steps, 1))
    grid = _check_count("grid", grid)
    x0, y = _as_plain(x), _as_plain(y)
    if eps == 0:
        return x0.clone()  # exactly: resampling at the identity grid is only accurate to ~1e-6
    like = x0.new_empty(x0.shape[0], 2, grid, grid)
    start = _uniform(like, -eps, eps, generator) if random_start else torch.zeros_like(like)
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


def fog(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int,
    *,
    alpha: float | None = None,
    grid: int = 4,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Adversarial fog of strength ε ≥ 0: PGD on a grid×grid fog pattern z in [0, 1] (`add_fog`).

    The budget is ε, not the pattern: any z is allowed, and the attack chooses where the
    fog is thick. Sign steps of size `alpha` on z, default 1.25/steps, the ℓ∞ rule
    2.5·(half-width)/steps for a box of half-width 1/2. Without a random start z = 0, the
    clean image dimmed by 1/(1 + ε).
    """
    _check_images(x, y)
    eps = _check_number("eps", eps)
    steps = _check_steps(steps)
    alpha = _check_alpha(alpha, 1.25 / max(steps, 1))
    grid = _check_count("grid", grid)
    x0, y = _as_plain(x), _as_plain(y)
    like = x0.new_empty(x0.shape[0], 1, grid, grid)
    start = _uniform(like, 0.0, 1.0, generator) if random_start else torch.zeros_like(like)
    render = lambda pattern: add_fog(x0, pattern, eps)
    with eval_mode(model):
        pattern = _sign_pgd(model, y, render, start, 0.0, 1.0, alpha, steps)
    return render(pattern).clamp(0.0, 1.0).detach()


# ----------------------------------------------------------------------------- noise
def gaussian_noise(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + σ·N(0, 1) per pixel, clipped to [0, 1]: not an attack, the augmentation of noise training."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError("x must be a floating-point image tensor in [0, 1]")
    sigma = _check_number("sigma", sigma)
    x = _as_plain(x)
    return torch.clamp(x + sigma * _normal(x, generator), 0.0, 1.0)


# ----------------------------------------------------------------------------- one registry
THREAT_NAMES = ("linf", "l2", "l1", "rotation", "elastic", "fog", "noise")

DESCRIPTIONS = {
    "linf": "ℓ∞ PGD; size = ε, the largest change of any pixel (pixel units, e.g. 0.3)",
    "l2": "ℓ2 PGD; size = ε, the Euclidean length of the change (pixel units, e.g. 2)",
    "l1": "ℓ1 PGD (sparse steps); size = ε, the sum of absolute pixel changes (pixel units, e.g. 10)",
    "rotation": "worst rotation and shift; size = largest angle in degrees, shifts up to size/10 pixels",
    "elastic": "adversarial smooth warp; size = largest displacement of a pixel, in pixels",
    "fog": "adversarial low-frequency fog; size = fog strength ε in (x + ε·F)/(1 + ε)",
    "noise": "Gaussian noise, no model; size = σ, the noise's standard deviation in pixel units",
}

# Engstrom et al.'s MNIST setting pairs ±30° with ±3 pixels: the shift follows the angle.
DEGREES_PER_PIXEL = 10.0


def make_attack(
    name: str,
    size: float,
    *,
    steps: int = 10,
    restarts: int = 1,
    generator: torch.Generator | None = None,
) -> Attack:
    """The attack `name` at budget `size`, as a function attack(model, x, y) → x_adv.

    Sizes are in each threat's own units (see DESCRIPTIONS). For the gradient attacks
    `steps` is the number of PGD steps, with step size 2.5·size/steps for the ℓp balls
    (the ℓ1 step is sparse, see `attacks.step_l1`, and this rule also works there: more
    steps, lower accuracy) and the defaults of `elastic` and `fog`. For "rotation",
    `steps` is the number of random transforms (worst-of-k) and 0 means the full grid.
    `restarts` > 1 keeps each example's worst case over fresh random starts; it needs
    something random to restart, so the grid and "noise" refuse it.
    """
    if name not in THREAT_NAMES:
        raise ValueError(f"unknown threat {name!r}; known: {', '.join(THREAT_NAMES)}")
    size = _check_number("size", size)
    steps = _check_steps(steps)
    restarts = _check_count("restarts", restarts)
    if restarts > 1 and (name == "noise" or (name == "rotation" and steps == 0)):
        raise ValueError(f"restarts > 1 needs a random search; {name!r} with steps={steps} has nothing to restart")

    if name == "linf" and size > 1:
        raise ValueError(f"size must be ≤ 1 for 'linf', the whole [0, 1] pixel range, got {size}")
    if name == "rotation" and size > 180:
        raise ValueError(f"size must be ≤ 180 degrees for 'rotation', got {size}")

    if name in ("linf", "l2", "l1"):
        norm = {"linf": "inf", "l2": 2, "l1": 1}[name]
        alpha = 2.5 * size / max(steps, 1) if size > 0 else 1.0  # with ε = 0 any α > 0 stays at x0

        def attack(model, x, y):
            return pgd(model, x, y, size, alpha, steps, norm=norm, restarts=restarts, generator=generator)

    elif name == "rotation":
        trials = steps * restarts if steps else None  # worst of k restarts of worst-of-k = worst-of-k·restarts

        def attack(model, x, y):
            return rotation_translation(model, x, y, size, size / DEGREES_PER_PIXEL, trials=trials, generator=generator)

    elif name == "noise":

        def attack(model, x, y):
            _check_images(x, y)
            return gaussian_noise(x, size, generator)

    else:
        search = elastic if name == "elastic" else fog

        def attack(model, x, y):
            run = lambda: search(model, x, y, size, steps, generator=generator)
            if restarts == 1:
                return run()
            with eval_mode(model):
                return _worst_case(model, _as_plain(y), (run() for _ in range(restarts)))

    attack.__doc__ = f"{name} attack of size {size:g}: {DESCRIPTIONS[name]}"
    return attack
