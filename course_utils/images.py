"""Image batches: the one validator of images and labels, seeded random draws, and the affine warp.

Every attack, threat, corruption and feature visualisation of the course handles N×C×H×W float
batches in [0, 1]; what they share about such batches is written here once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


# ----------------------------------------------------------------------------- validation
def check_images(x, name: str = "x") -> None:
    """A ValueError naming `name` unless x is a float tensor N×C×H×W of finite values in [0, 1].

    One host sync per call (for the value range), so call it once per attack, never inside a loop.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a tensor of images, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must be a batch of images shaped N×C×H×W, got shape {tuple(x.shape)} "
                         "(a single image needs x[None], a flat batch x.view(N, 1, H, W))")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point image batch in [0, 1], got dtype {x.dtype}")
    if x.numel():
        lo, hi = torch.aminmax(x.detach())
        if not (lo >= 0 and hi <= 1):  # NaN fails both comparisons
            if not bool(torch.isfinite(x).all()):
                raise ValueError(f"{name} contains NaN or infinite pixels; images must hold finite values in [0, 1]")
            raise ValueError(
                f"{name} must hold images in [0, 1], got values in [{lo.item():.3g}, {hi.item():.3g}] "
                "(normalisation belongs inside the model, see models.Normalize)"
            )


def check_labels(y, n: int, classes: int | None = None, name: str = "y") -> None:
    """A ValueError naming `name` unless y holds n integer class labels, each in 0 … classes − 1."""
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"{name} must be a tensor of class labels, got {type(y).__name__}")
    if y.dim() != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must hold one label per image: {n} images, but {name} has shape {tuple(y.shape)}")
    if y.dtype != torch.int64:  # what cross_entropy and gather accept
        raise ValueError(f"{name} must hold integer class labels of dtype torch.int64, got dtype {y.dtype}")
    if y.numel():
        lo, hi = torch.aminmax(y.detach())
        allowed = "≥ 0" if classes is None else f"0 … {classes - 1}"
        if lo < 0 or (classes is not None and hi >= classes):
            raise ValueError(f"{name} must hold class labels {allowed}, got labels from {lo.item()} to {hi.item()}")


def check_batch(x, y, classes: int | None = None) -> None:
    """`check_images(x)` and `check_labels(y, len(x), classes)`."""
    check_images(x)
    check_labels(y, x.shape[0], classes)


# ----------------------------------------------------------------------------- seeded draws
def uniform(shape, like: torch.Tensor, low: float = 0.0, high: float = 1.0,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform draws in [low, high) on like's device and dtype; from `generator` when one is given.

    A seeded generator is used where it lives (a CPU generator draws on the CPU), so a CPU seed
    gives the same numbers on any device. Without one, torch's global generator for like's device.
    """
    if generator is None:
        return torch.empty(shape, device=like.device, dtype=like.dtype).uniform_(low, high)
    u = torch.rand(shape, generator=generator, device=generator.device, dtype=like.dtype)
    return (low + (high - low) * u).to(like.device)


def normal(shape, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal draws on like's device and dtype, with `uniform`'s rule for the generator."""
    if generator is None:
        return torch.randn(shape, device=like.device, dtype=like.dtype)
    return torch.randn(shape, generator=generator, device=generator.device, dtype=like.dtype).to(like.device)


def random_sign(shape, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """±1 with equal probability, in like's dtype."""
    return torch.where(uniform(shape, like, generator=generator) < 0.5, -1.0, 1.0).to(like.dtype)


# ----------------------------------------------------------------------------- the affine warp
def per_image(value, x: torch.Tensor, name: str) -> torch.Tensor:
    """A number or one value per image of x, as an N-vector on x's device and dtype."""
    value = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if value.dim() == 0:
        return value.expand(x.shape[0])
    if value.shape != (x.shape[0],):
        raise ValueError(f"{name} must be a number or hold one value per image ({x.shape[0]}), got shape {tuple(value.shape)}")
    return value


def affine(x: torch.Tensor, angle=0.0, translate=(0.0, 0.0), scale=1.0, shear=0.0) -> torch.Tensor:
    """Scale, then shear along x, then rotate about the centre, then shift; bilinear, zero fill, in [0, 1].

    Every argument is one number for the whole batch or one value per image: `angle` and `shear` in
    degrees (a positive angle turns the picture counter-clockwise on screen, so 90° is
    `torch.rot90(x, 1, dims=(-2, -1))`), `translate` = (dx, dy) in pixels (right, down), `scale` a
    factor. What enters the frame is black, MNIST's background. torchvision's `affine` applies one
    matrix to the whole batch; attacks and corruptions need one per image, hence `affine_grid`.
    It does not check pixel values (feature visualisation calls it at every step): callers validate x.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise ValueError("x must be a floating-point image batch N×C×H×W")
    n, _, h, w = x.shape
    if n == 0:
        return x.detach().clone()  # affine_grid refuses an empty batch
    angle = torch.deg2rad(per_image(angle, x, "angle"))
    shear = torch.deg2rad(per_image(shear, x, "shear"))
    scale = per_image(scale, x, "scale")
    if not bool((scale > 0).all()):  # a singular matrix would fill the image with garbage
        raise ValueError(f"scale must be > 0 for every image, got {scale.min().item():.3g}")
    dx, dy = (per_image(t, x, "translate") for t in translate)
    cos, sin, zero, one = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle), torch.ones_like(angle)
    # With y pointing down, [[cos, sin], [−sin, cos]] turns the picture counter-clockwise.
    rotation = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    shearing = torch.stack([torch.stack([one, torch.tan(shear)], -1), torch.stack([zero, one], -1)], -2)
    forward = rotation @ shearing * scale[:, None, None]
    # grid_sample asks, for each output pixel, where to read in the input: the inverse map, in
    # coordinates normalised to [−1, 1] per axis (half-sizes `half`, align_corners=False).
    half = torch.tensor([w / 2, h / 2], dtype=x.dtype, device=x.device)
    inverse = torch.linalg.inv(forward)
    linear = inverse * half[None, None, :] / half[None, :, None]
    offset = -(inverse @ torch.stack([dx, dy], -1)[..., None]).squeeze(-1) / half
    theta = torch.cat([linear, offset[..., None]], dim=-1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0.0, 1.0)
