"""Defences that look robust and are not (10_breaking_defenses), and the pieces that break them.

Each defence wraps a trained classifier and keeps its predictions on clean digits (nearly)
unchanged, but hides or scrambles the input gradient that a white-box attack follows:

- `QuantizedInput`: the image rounded to a few grey levels before the classifier. Rounding has
  a zero derivative almost everywhere, so every gradient attack receives exactly zero (shattered
  gradients, Athalye et al. 2018). `straight_through=True` gives the attacker's copy: the same
  forward pass, the identity on the backward pass (BPDA).
- `RandomResizePad`: each forward pass shrinks every image by a random factor and places it at a
  random position on the black canvas (Xie et al. 2018). The gradient of one pass belongs to
  one random draw; averaging over draws (EOT, `attacks.eot`) recovers a useful direction.
- `GradientBlocked`: a model that answers queries and gives no gradient at all, as a remote API
  does: gradient attacks fail with an error, score-based and transfer attacks still work.

05's masked model (`models.ScaledLogits`) is the third defence of the notebook.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attacks.core import check_count, input_gradient


# ----------------------------------------------------------------------------- quantisation
def quantize(x: torch.Tensor, levels: int) -> torch.Tensor:
    """x in [0, 1] rounded to the nearest of `levels` evenly spaced grey values (0 and 1 included)."""
    steps = levels - 1
    return torch.round(x * steps) / steps


class StraightThrough(torch.autograd.Function):
    """Quantisation forward, identity backward: Athalye et al.'s BPDA for a layer g(x) ≈ x."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, levels: int) -> torch.Tensor:
        return quantize(x, levels)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output, None  # no gradient for `levels`


class QuantizedInput(nn.Module):
    """`model` behind input quantisation to `levels` grey values.

    The defended model's gradient is zero almost everywhere (torch.round's derivative). With
    `straight_through=True` the forward pass is identical and the backward pass treats the
    quantiser as the identity, which is what an adaptive attacker differentiates (BPDA).
    """

    def __init__(self, model: nn.Module, levels: int, *, straight_through: bool = False):
        super().__init__()
        self.model, self.levels, self.straight_through = model, check_count("levels", levels, 2), bool(straight_through)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = StraightThrough.apply(x, self.levels) if self.straight_through else quantize(x, self.levels)
        return self.model(q)

    def bpda(self) -> "QuantizedInput":
        """The attacker's copy: the same classifier and quantiser, the identity on the backward pass."""
        return QuantizedInput(self.model, self.levels, straight_through=True)


# ----------------------------------------------------------------------------- randomisation
def random_resize_pad(x: torch.Tensor, max_shrink: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image shrunk by a random factor in [1, max_shrink] and shifted to a random position that keeps
    it inside the frame, on a black (zero) background: Xie et al.'s resize-and-pad on a fixed canvas.

    Differentiable in x (bilinear resampling), random in the draw.
    """
    n = x.shape[0]
    # Drawn on the CPU (where the defence's generator lives), then moved: the same draws on every device.
    shrink = 1 + (max_shrink - 1) * torch.rand(n, generator=generator)
    # affine_grid maps output coordinates in [−1, 1] to input coordinates: scaling them by `shrink`
    # samples a larger area, i.e. shrinks the digit; the shift keeps the shrunk digit in the frame.
    shift = (2 * torch.rand(n, 2, generator=generator) - 1) * (1 - 1 / shrink)[:, None]
    shrink, shift = shrink.to(x.device, x.dtype), shift.to(x.device, x.dtype)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = shrink
    theta[:, :, 2] = -shift * shrink[:, None]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class RandomResizePad(nn.Module):
    """`model` behind a fresh random resize-and-pad of every image on every forward pass.

    The randomness comes from the module's own generator (seeded), so a run is reproducible and
    an attack cannot read the draw it will be evaluated with.
    """

    def __init__(self, model: nn.Module, max_shrink: float = 1.4, seed: int = 0):
        super().__init__()
        if not max_shrink > 1:
            raise ValueError(f"max_shrink must be > 1 (1 would be no randomness), got {max_shrink}")
        self.model, self.max_shrink = model, float(max_shrink)
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(random_resize_pad(x, self.max_shrink, self.generator))


# ----------------------------------------------------------------------------- no gradient at all
class _Detach(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor) -> torch.Tensor:
        return logits.clone()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        raise RuntimeError("this model gives no gradient (only its outputs): use a score-based or transfer attack")


class GradientBlocked(nn.Module):
    """`model`'s outputs without its gradient: any backward pass through it raises, as with a remote API."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Detach.apply(self.model(x))


# ----------------------------------------------------------------------------- evaluating a random defence
@torch.no_grad()
def expected_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, draws: int = 10) -> torch.Tensor:
    """Per image, the fraction of `draws` forward passes that classify it correctly: for a randomised
    defence, the probability that it gets the image right, estimated (1.0 or 0.0 for a deterministic model)."""
    if draws < 1:
        raise ValueError(f"draws must be ≥ 1, got {draws}")
    was_training = model.training
    model.eval()
    try:
        hits = sum((model(x).argmax(1) == y).float() for _ in range(draws))
    finally:
        model.train(was_training)
    return hits / draws


# ----------------------------------------------------------------------------- BPDA
def bpda_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, levels: int) -> torch.Tensor:
    """The input gradient that BPDA follows through `QuantizedInput(model, levels)`: the cross-entropy's
    gradient taken with the quantiser in the forward pass and the identity in the backward pass, which
    is the classifier's own gradient at the quantised image. Parameter gradients are left alone."""
    return input_gradient(QuantizedInput(model, levels, straight_through=True), x, y)


class OneDraw(nn.Module):
    """A `RandomResizePad` frozen at one random draw (the same shrink and shift on every call): what an
    evaluator attacks when they differentiate a single forward pass and treat it as the defence."""

    def __init__(self, defence: RandomResizePad, seed: int = 0):
        super().__init__()
        self.defence, self.seed = defence, int(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        draw = torch.Generator().manual_seed(self.seed)
        return self.defence.model(random_resize_pad(x, self.defence.max_shrink, draw))
