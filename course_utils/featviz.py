"""Feature visualisation: the input that a class logit or a hidden unit likes most.

Start from noise and climb the objective by gradient ascent *on the input*, the same
gradient the attacks use, but with the weights fixed and no ε-ball. A standard network's
gradients are noisy, so plain ascent produces high-frequency texture; an adversarially
trained network's gradients are perceptually aligned, so the same ascent draws strokes
(the lecture's Figure 27.4; Santurkar et al. 2019, "Image Synthesis with a Single Robust
Classifier"). To get anything readable out of a standard network people add
regularisers (Olah et al. 2017, "Feature Visualization"): random jitter, scaling and
rotation of the image at each step, a smoother parameterisation (Fourier coefficients
damped at high frequency), and a total-variation penalty. They are written here in a
few lines each.

Objectives map a batch of images to one score per image (higher is better).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .attacks import eval_mode, project_l2, step_l2
from .images import affine, uniform

Objective = Callable[[nn.Module, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- objectives
def class_logit(c: int) -> Objective:
    """z_c(x): the logit of class c (not its softmax probability, which can rise by pushing the
    other logits down instead of making the image look more like a c)."""
    if isinstance(c, bool) or not isinstance(c, int) or c < 0:
        raise ValueError(f"class must be an int ≥ 0, got {c!r}")

    def objective(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        logits = model(x)
        if c >= logits.shape[1]:
            raise ValueError(f"class {c} does not exist: the model has {logits.shape[1]} outputs")
        return logits[:, c]

    return objective


def unit_activation(layer: nn.Module, unit: int) -> Objective:
    """Mean activation of channel (or feature) `unit` at the output of `layer`, read by a forward hook."""

    def objective(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        seen = {}
        handle = layer.register_forward_hook(lambda module, inputs, output: seen.__setitem__("out", output))
        try:
            model(x)
        finally:
            handle.remove()
        if "out" not in seen:
            raise ValueError("the layer given was not used by the model's forward pass")
        out = seen["out"]
        if unit >= out.shape[1]:
            raise ValueError(f"unit {unit} does not exist: the layer has {out.shape[1]} channels")
        return out[:, unit].reshape(out.shape[0], -1).mean(dim=1)

    return objective


# ----------------------------------------------------------------------------- regularisers
def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Per-image mean absolute difference between neighbouring pixels: large for speckle, small for strokes."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(dim=1)
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(dim=1)
    return dh + dw


def random_transform(x: torch.Tensor, jitter: int, degrees: float, scale: float, generator=None) -> torch.Tensor:
    """Shift by up to `jitter` pixels, rotate by up to `degrees`, rescale by up to ±`scale`, per image.

    The objective must then hold for a whole family of slightly moved images, which a
    pattern that only works pixel by pixel cannot do (Olah et al.'s transformation robustness).
    """
    if jitter == 0 and degrees == 0 and scale == 0:
        return x
    n = x.shape[0]
    angle = uniform(n, x, -degrees, degrees, generator)
    factor = 1.0 + uniform(n, x, -scale, scale, generator)
    shift = (uniform(n, x, -jitter, jitter, generator), uniform(n, x, -jitter, jitter, generator))
    return affine(x, angle=angle, translate=shift, scale=factor)


# ----------------------------------------------------------------------------- parameterisations
def _frequency_scale(h: int, w: int, decay: float, device) -> torch.Tensor:
    fy = torch.fft.fftfreq(h, device=device)[:, None]
    fx = torch.fft.rfftfreq(w, device=device)[None, :]
    freq = torch.sqrt(fx**2 + fy**2).clamp_min(1.0 / max(h, w))
    return freq ** (-decay)


@dataclass(frozen=True)
class Settings:
    """How the ascent runs. The defaults are plain steepest ascent from dark noise, no regulariser.

    steps, lr     ascent steps on the parameters and their size
    optimiser     "adam", or "l2": plain steepest ascent, a step of length lr along the gradient
                  (Adam rescales every pixel's step to about the same size, so it brightens
                  pixels the gradient barely cares about; the ℓ2 step follows the gradient itself)
    param         "pixel": the image itself, projected to [0, 1] after each step;
                  "fourier": Fourier coefficients damped by 1/f^decay, squashed by a sigmoid
                  (every step then moves smooth, low-frequency patterns first)
    jitter, degrees, scale   random transformation applied before each forward pass
    tv            weight of the total-variation penalty
    start         (mean, std) of the Gaussian noise the pixel ascent starts from
    radius        pixel only: if > 0, stay within this ℓ2 distance of the noise start (Santurkar et
                  al.'s bounded ascent: a standard model then reaches a high logit with invisible
                  changes, a robust one has to draw)
    """

    steps: int = 100
    lr: float = 0.2
    optimiser: str = "l2"
    param: str = "pixel"
    decay: float = 1.0
    jitter: int = 0
    degrees: float = 0.0
    scale: float = 0.0
    tv: float = 0.0
    radius: float = 0.0
    start: tuple[float, float] = (0.1, 0.1)

    def __post_init__(self):
        if self.param not in ("pixel", "fourier"):
            raise ValueError(f"param must be 'pixel' or 'fourier', got {self.param!r}")
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be an int ≥ 0, got {self.steps!r}")
        if self.optimiser not in ("adam", "l2"):
            raise ValueError(f"optimiser must be 'adam' or 'l2', got {self.optimiser!r}")
        if not 0 < self.start[0] < 1 or self.start[1] < 0:
            raise ValueError(f"start must be (mean in (0, 1), std ≥ 0), got {self.start}")
        if self.radius and self.param != "pixel":
            raise ValueError("radius needs param='pixel'")
        for name in ("lr", "decay", "jitter", "degrees", "scale", "tv", "radius"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)}")


# Plain steepest ascent from dark noise (MNIST digits are white on black); the regularised
# variant adds Olah et al.'s random transformations and a total-variation penalty.
PLAIN = Settings(steps=100, lr=0.2, optimiser="l2", start=(0.1, 0.1))
REGULARISED = Settings(steps=100, lr=0.2, optimiser="l2", start=(0.1, 0.1), jitter=2, degrees=10.0, scale=0.1, tv=2.0)


def visualize(
    model: nn.Module,
    objective: Objective,
    n: int = 1,
    settings: Settings = PLAIN,
    shape: tuple[int, ...] = (1, 28, 28),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """`n` images in [0, 1] that maximise `objective`, each from its own noise start.

    The model's weights and parameter gradients are left alone (gradients are taken with
    torch.autograd.grad with respect to the image parameters only); it runs in eval mode.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int ≥ 1, got {n!r}")
    device = next(model.parameters()).device
    h, w = shape[-2:]
    if settings.param == "pixel":
        init = settings.start[0] + settings.start[1] * torch.randn((n, *shape), generator=generator)
        start = init.clamp(0, 1).to(device)
        params = start.clone().requires_grad_(True)
        to_image = lambda p: p
    else:
        damp = _frequency_scale(h, w, settings.decay, device)
        init = 0.01 * torch.randn((n, *shape[:-2], h, w // 2 + 1, 2), generator=generator)
        params = init.to(device).requires_grad_(True)
        bias = math.log(settings.start[0] / (1 - settings.start[0]))  # start from the same mean grey level
        to_image = lambda p: torch.sigmoid(torch.fft.irfft2(torch.view_as_complex(p) * damp, s=(h, w), norm="ortho") * 4 + bias)
    adam = torch.optim.Adam([params], lr=settings.lr) if settings.optimiser == "adam" else None
    with eval_mode(model), torch.enable_grad():
        for _ in range(settings.steps):
            x = to_image(params)
            seen = random_transform(x, settings.jitter, settings.degrees, settings.scale, generator)
            score = objective(model, seen) - settings.tv * total_variation(x)
            (grad,) = torch.autograd.grad(-score.sum(), params)
            if adam is not None:
                params.grad = grad
                adam.step()
            else:
                with torch.no_grad():
                    params.sub_(step_l2(params, grad, settings.lr) - params)
            if settings.param == "pixel":
                with torch.no_grad():  # projected ascent: stay a valid image (near the start, if asked)
                    params.copy_(project_l2(params, start, settings.radius) if settings.radius else params.clamp(0, 1))
    with torch.no_grad():
        return to_image(params).detach().clamp(0, 1)


def class_images(model: nn.Module, classes: int = 10, per_class: int = 1, settings: Settings = PLAIN,
                 shape: tuple[int, ...] = (1, 28, 28), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images maximising each class logit, `per_class` starts each: (images, intended labels), class by class."""
    generator = torch.Generator().manual_seed(seed)
    images = [visualize(model, class_logit(c), per_class, settings, shape, generator) for c in range(classes)]
    labels = torch.arange(classes).repeat_interleave(per_class)
    return torch.cat(images), labels.to(images[0].device)


# ----------------------------------------------------------------------------- measuring, not only looking
@torch.no_grad()
def recognised_as_intended(judge: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of the images that an independently trained `judge` classifies as the class they were made for."""
    with eval_mode(judge):
        return (judge(images).argmax(1) == labels).float().mean().item()


@torch.no_grad()
def nearest_real_distance(images: torch.Tensor, real: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Per image: the ℓ2 distance (pixel units) to the closest image in `real` — how far it is from
    anything anyone actually wrote. A model-free judge: a network's quirks cannot fool it."""
    flat = real.flatten(1)
    return torch.cat([torch.cdist(chunk.flatten(1), flat, compute_mode="donot_use_mm_for_euclid_dist").amin(1) for chunk in images.split(batch_size)])


def realism(images: torch.Tensor, real: torch.Tensor, reference: torch.Tensor | float) -> float:
    """Mean nearest-real distance of held-out real digits (`reference`) divided by that of `images`:
    1 means as close to the training digits as a new handwritten digit is, smaller means further.

    `reference` may also be that mean distance itself, computed once for many calls.
    """
    if isinstance(reference, torch.Tensor):
        reference = nearest_real_distance(reference, real).mean().item()
    return reference / nearest_real_distance(images, real).mean().item()


@torch.no_grad()
def nearest_digit_labels(images: torch.Tensor, real: torch.Tensor, real_labels: torch.Tensor,
                         batch_size: int = 500) -> torch.Tensor:
    """Per image: the label of the real digit it resembles most, by the *shape* of the ink alone.

    Each image is centred (its mean removed) and scaled to unit length before it is compared, so the
    similarity is a correlation: how much ink an image has, or how bright it is overall, does not
    count, only where the ink is. A blank or uniformly grey image correlates with nothing (it scores
    0 against every digit), so it gets an arbitrary label and, over ten classes, is recognised one
    time in ten. No network is involved: a pattern that fools networks does not fool this judge.
    """
    def unit(t: torch.Tensor) -> torch.Tensor:
        t = t.flatten(1)
        t = t - t.mean(dim=1, keepdim=True)
        return t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)

    reference = unit(real)
    best = [(unit(chunk) @ reference.T).argmax(dim=1) for chunk in images.split(batch_size)]
    return real_labels[torch.cat(best)]


def recognised_by_nearest_digit(images: torch.Tensor, labels: torch.Tensor, real: torch.Tensor,
                                real_labels: torch.Tensor) -> torch.Tensor:
    """Per image: does the real digit it correlates with most carry the class it was made for?"""
    return nearest_digit_labels(images, real, real_labels) == labels
