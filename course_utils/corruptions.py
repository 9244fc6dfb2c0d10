"""MNIST-C-style corruptions (Mu & Gilmer, 2019), computed locally on a batch of images.

Nothing is downloaded: every corruption is a small function of the clean batch, so
notebook 08 can corrupt its own test split at any strength. Each one

- takes an N×C×H×W float batch in [0, 1] and returns a new batch of the same shape
  and dtype, in [0, 1] (the input is never modified),
- takes `severity`, an int from 1 (mild) to 5 (hard, but a person still reads the
  digit), which picks one value from the corruption's row of `PARAMS`,
- works on the whole batch at once (no per-image loop), with per-image randomness
  (a direction, an angle, a noise pattern) drawn from `generator` when one is given.

The random draws do not depend on the severity: with the same seed, severity only
changes how strong the corruption is, not where its lines go or which way it turns.

    x_c = corrupt(x, "fog", severity=3, generator=torch.Generator().manual_seed(0))

Positions and angles are in pixels and degrees, with x to the right, y down and the
origin at the image centre; a positive angle turns the image counter-clockwise on
screen (the convention of torchvision and of `torch.rot90`).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from .images import affine, check_images, random_sign, uniform

# One row per corruption: the parameter at severities 1..5, units in the comment.
PARAMS: dict[str, tuple] = {
    "shot_noise": (40, 20, 10, 6, 3),  # λ: expected photon count of a white pixel
    "impulse_noise": (0.03, 0.06, 0.10, 0.15, 0.22),  # fraction of pixels set to 0 or 1
    "gaussian_blur": (0.6, 0.9, 1.2, 1.5, 1.8),  # σ, pixels
    "glass_blur": ((0.5, 0.5), (0.5, 1.0), (0.5, 1.5), (0.6, 2.0), (0.6, 2.5)),  # (σ, largest jitter), pixels
    "motion_blur": (2, 3.5, 5, 6.5, 8),  # length of the blur streak, pixels
    "rotate": (10, 20, 30, 40, 50),  # degrees, random sign per image
    "shear": (8, 16, 24, 32, 40),  # horizontal shear angle, degrees, random sign per image
    "scale": (0.1, 0.2, 0.3, 0.4, 0.5),  # a: zoom by 1 − a or 1 + a, random per image
    "translate": (2, 3, 4, 5, 6),  # shift length, pixels, random direction per image
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),  # added to every pixel, pixel units
    "contrast": (0.7, 0.55, 0.4, 0.3, 0.2),  # factor on the distance from the image's mean
    "fog": (0.25, 0.4, 0.55, 0.7, 0.85),  # densest fog: how far a pixel is pulled towards white
    "stripes": (12, 9, 7, 5.5, 4.5),  # spacing of 1-pixel lines, pixels
    "dotted_line": (1, 2, 3, 4, 5),  # number of dotted lines
    "zigzag": ((1, 1.5), (1, 2.5), (2, 2.0), (2, 2.5), (3, 2.5)),  # (number of lines, amplitude pixels)
    "edges": (0.3, 0.5, 0.7, 0.85, 1.0),  # weight of the outline in a blend with the image
}

_MAX_LINES = 5  # dotted_line and zigzag always draw this many lines and show the first few


# ----------------------------------------------------------------------------- input checks
def _check_severity(severity) -> int:
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an int from 1 (mild) to 5 (hard), got {severity!r}")
    return severity


def _level(name: str, severity):
    """The parameter of corruption `name` at `severity` (checked to be an int in 1..5)."""
    return PARAMS[name][_check_severity(severity) - 1]


def _prepare(name: str, x: torch.Tensor, severity, generator):
    check_images(x)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return _level(name, severity)


# ----------------------------------------------------------------------------- random draws
def _rand(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) draws (`images.uniform`): a CPU seed gives the same images on any device."""
    return uniform(shape, like, generator=generator)


# ----------------------------------------------------------------------------- geometry helpers
def _pixel_grid(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates (X, Y), each H×W, with the origin at the image centre."""
    h, w = like.shape[-2:]
    ys = torch.arange(h, device=like.device, dtype=like.dtype) - (h - 1) / 2
    xs = torch.arange(w, device=like.device, dtype=like.dtype) - (w - 1) / 2
    return xs.expand(h, w), ys[:, None].expand(h, w)


def _depthwise(x: torch.Tensor, kernel: torch.Tensor, padding_mode: str = "constant") -> torch.Tensor:
    """Convolve every channel of every image with the same k×k kernel (output the size of x)."""
    n, c, h, w = x.shape
    k = kernel.shape[-1]
    padded = F.pad(x.reshape(n * c, 1, h, w), (k // 2,) * 4, mode=padding_mode)
    return F.conv2d(padded, kernel.to(x)[None, None]).reshape(n, c, h, w)


def _line(distance: torch.Tensor, width: float = 1.0) -> torch.Tensor:
    """Brightness of an anti-aliased line of `width` pixels at a distance from its centre line."""
    return (width / 2 + 0.5 - distance.abs()).clamp(0.0, 1.0)


def _overlay(x: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """Draw white marks on the image: the brighter of the two, so the digit is never erased."""
    return torch.maximum(x, pattern.to(x.dtype)[:, None].expand_as(x))


# ----------------------------------------------------------------------------- noise
def shot_noise(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Photon noise x ← Poisson(λx)/λ, clipped; λ = 40, 20, 10, 6, 3 photons at a white pixel."""
    lam = _prepare("shot_noise", x, severity, generator)
    rates = x.detach() * lam
    if generator is not None:
        rates = rates.to(generator.device)
    # Unbiased before the clip; black stays black (Poisson(0) = 0), like a real sensor.
    return (torch.poisson(rates, generator=generator).to(x.device) / lam).clamp(0.0, 1.0)


def impulse_noise(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Salt and pepper: a fraction p = 0.03, 0.06, 0.10, 0.15, 0.22 of pixels set to 0 or 1 (half each)."""
    p = _prepare("impulse_noise", x, severity, generator)
    u = _rand(x.shape, x, generator)
    # One uniform per pixel, compared with p: a higher severity hits a superset of the pixels.
    out = torch.where(u < p / 2, torch.zeros_like(x), x)
    return torch.where((u >= p / 2) & (u < p), torch.ones_like(x), out)


# ----------------------------------------------------------------------------- blur
def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    import torchvision.transforms.v2.functional as TF  # here, not at import: torchvision is slow to load

    size = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(x, kernel_size=[size, size], sigma=[sigma, sigma])


def gaussian_blur(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian blur (reflecting border) with σ = 0.6, 0.9, 1.2, 1.5, 1.8 pixels; not random."""
    sigma = _prepare("gaussian_blur", x, severity, generator)
    return _blur(x.detach(), sigma).clamp(0.0, 1.0)


def glass_blur(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Frosted glass: blur, jitter, blur; jitter = 0.5, 1, 1.5, 2, 2.5 pixels, σ = 0.5, 0.5, 0.5, 0.6, 0.6 pixels.

    Between two Gaussian blurs of σ pixels, each pixel reads the image (bilinearly) at a
    random offset of up to `jitter` pixels in x and in y, drawn per pixel.
    """
    sigma, jitter = _prepare("glass_blur", x, severity, generator)
    n, _, h, w = x.shape
    blurred = _blur(x.detach(), sigma)
    xs, ys = _pixel_grid(x)
    jx, jy = (2.0 * _rand((2, n, h, w), x, generator) - 1.0) * jitter
    # grid_sample reads at normalised coordinates: pixel centre / half-size (align_corners=False).
    grid = torch.stack([(xs + jx) / (w / 2), (ys + jy) / (h / 2)], dim=-1)
    jittered = F.grid_sample(blurred, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return _blur(jittered, sigma).clamp(0.0, 1.0)


def motion_blur_kernel(length: float, angle) -> torch.Tensor:
    """Line kernels for a streak of `length` pixels through the centre at `angle` degrees.

    `angle` is a number or a length-N tensor; the result is N×k×k (k odd, just over the
    length), each kernel an anti-aliased segment whose weights sum to 1.
    """
    if not isinstance(length, (int, float)) or isinstance(length, bool) or length <= 0:
        raise ValueError(f"length must be a positive number of pixels, got {length!r}")
    angle = torch.as_tensor(angle, dtype=torch.float32)
    angle = torch.deg2rad(angle.reshape(-1) if angle.dim() else angle[None])
    k = 2 * math.ceil(length / 2) + 1
    offsets = torch.arange(k, dtype=torch.float32) - k // 2
    xs, ys = offsets.expand(k, k), offsets[:, None].expand(k, k)
    ux, uy = torch.cos(angle)[:, None, None], -torch.sin(angle)[:, None, None]  # y points down
    along = (xs * ux + ys * uy).clamp(-(length - 1) / 2, (length - 1) / 2)  # nearest point of the segment
    distance = torch.hypot(xs - along * ux, ys - along * uy)
    weights = (1.0 - distance).clamp_min(0.0)
    return weights / weights.sum(dim=(-2, -1), keepdim=True)


def motion_blur(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Blur along a line at a random angle per image; streak length 2, 3.5, 5, 6.5, 8 pixels."""
    length = _prepare("motion_blur", x, severity, generator)
    n, c, h, w = x.shape
    if n == 0:
        return x.detach().clone()
    angle = _rand((n,), x, generator) * 180.0
    kernels = motion_blur_kernel(length, angle.cpu()).to(x)
    k = kernels.shape[-1]
    # One kernel per image: a grouped convolution with one group per (image, channel).
    weight = kernels.repeat_interleave(c, dim=0)[:, None]
    padded = F.pad(x.detach().reshape(1, n * c, h, w), (k // 2,) * 4)
    return F.conv2d(padded, weight, groups=n * c).reshape(n, c, h, w).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- geometry
def rotate(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate about the centre by ±10, 20, 30, 40, 50 degrees (random sign per image)."""
    degrees = _prepare("rotate", x, severity, generator)
    return affine(x.detach(), angle=degrees * random_sign(x.shape[0], x, generator))


def shear(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shear horizontally by ±8, 16, 24, 32, 40 degrees (random sign per image)."""
    degrees = _prepare("shear", x, severity, generator)
    return affine(x.detach(), shear=degrees * random_sign(x.shape[0], x, generator))


def scale(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zoom about the centre by 1 − a or 1 + a (random per image), a = 0.1, 0.2, 0.3, 0.4, 0.5."""
    a = _prepare("scale", x, severity, generator)
    # Out or in, not 1/(1 − a): zooming in by 2 would crop a 20-pixel MNIST digit to its middle.
    return affine(x.detach(), scale=1.0 + a * random_sign(x.shape[0], x, generator))


def translate(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift by 2, 3, 4, 5, 6 pixels in a random direction per image; zero fill."""
    distance = _prepare("translate", x, severity, generator)
    direction = _rand((x.shape[0],), x, generator) * (2 * math.pi)
    shift = (distance * torch.cos(direction), distance * torch.sin(direction))
    return affine(x.detach(), translate=shift)


# ----------------------------------------------------------------------------- photometric
def brightness(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add 0.1, 0.2, 0.3, 0.4, 0.5 to every pixel, clipped; not random.

    Additive, not torchvision's multiplicative `adjust_brightness`: scaling leaves MNIST's
    black background black and only saturates the strokes, which barely shows.
    """
    b = _prepare("brightness", x, severity, generator)
    return (x.detach() + b).clamp(0.0, 1.0)


def contrast(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shrink each pixel's distance from the image's mean by 0.7, 0.55, 0.4, 0.3, 0.2; not random."""
    factor = _prepare("contrast", x, severity, generator)
    mean = x.detach().mean(dim=(-3, -2, -1), keepdim=True)
    return (mean + factor * (x.detach() - mean)).clamp(0.0, 1.0)


def _smooth_noise(like: torch.Tensor, generator) -> torch.Tensor:
    """A smooth random field per image, N×H×W in [0, 1]: coarse noise at three scales, upsampled."""
    n, _, h, w = like.shape
    field = torch.zeros(n, 1, h, w, dtype=like.dtype, device=like.device)
    for cells, weight in ((3, 1.0), (5, 0.5), (9, 0.25)):  # each octave finer and fainter
        coarse = _rand((n, 1, cells, cells), like, generator)
        field = field + weight * F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    lo = field.amin(dim=(-2, -1), keepdim=True)
    hi = field.amax(dim=(-2, -1), keepdim=True)
    return ((field - lo) / (hi - lo).clamp_min(1e-6))[:, 0]


def fog(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Patchy haze: pull each pixel towards white by a·f, f a smooth random field in [0, 1]; a = 0.25, 0.4, 0.55, 0.7, 0.85."""
    a = _prepare("fog", x, severity, generator)
    haze = a * _smooth_noise(x, generator)[:, None]
    # x + (1 − x)·haze rather than x + haze: stays in [0, 1] and white strokes stay white.
    return (x.detach() + (1.0 - x.detach()) * haze).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- drawn over the digit
def stripes(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Parallel white 1-pixel lines, random angle and phase per image, 12, 9, 7, 5.5, 4.5 pixels apart."""
    spacing = _prepare("stripes", x, severity, generator)
    n = x.shape[0]
    angle = _rand((n, 1, 1), x, generator) * math.pi
    phase = _rand((n, 1, 1), x, generator)
    xs, ys = _pixel_grid(x)
    across = xs * torch.cos(angle) + ys * torch.sin(angle) + phase * spacing
    to_nearest = across - spacing * torch.round(across / spacing)
    return _overlay(x.detach(), _line(to_nearest))


def _random_lines(like: torch.Tensor, generator, spread: float):
    """_MAX_LINES random lines per image, each passing within `spread` pixels of the centre.

    Returns two N×L×H×W tensors: each pixel's signed distance from the line, and its
    position along it (0 at the foot of the perpendicular from the centre), in pixels.
    """
    n = like.shape[0]
    angle, offset = _rand((2, n, _MAX_LINES, 1, 1), like, generator)
    angle = angle * math.pi
    offset = (2.0 * offset - 1.0) * spread
    xs, ys = _pixel_grid(like)
    across = xs * torch.cos(angle) + ys * torch.sin(angle) - offset
    along = -xs * torch.sin(angle) + ys * torch.cos(angle)
    return across, along


def dotted_line(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """1, 2, 3, 4, 5 lines of white dots (about 2 pixels wide, 3.5 apart) across the digit, random per image."""
    count = _prepare("dotted_line", x, severity, generator)
    across, along = _random_lines(x, generator, spread=6.0)  # through the digit
    spacing = 3.5
    phase = _rand((x.shape[0], _MAX_LINES, 1, 1), x, generator) * spacing
    shifted = along + phase
    to_dot = torch.hypot(across, shifted - spacing * torch.round(shifted / spacing))
    # Lines are drawn for every severity and only the first `count` shown, so a higher
    # severity adds lines to the same picture instead of drawing a new one.
    return _overlay(x.detach(), _line(to_dot, width=1.6)[:, :count].amax(dim=1))


def zigzag(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """White zigzags (period 6 pixels): (count, amplitude px) = (1, 1.5), (1, 2.5), (2, 2), (2, 2.5), (3, 2.5)."""
    count, amplitude = _prepare("zigzag", x, severity, generator)
    # Spread over the whole image, not just the digit: zigzags that all cross the strokes
    # look like strokes themselves and bury the digit by severity 5.
    across, along = _random_lines(x, generator, spread=9.0)
    period = 6.0
    phase = _rand((x.shape[0], _MAX_LINES, 1, 1), x, generator)
    frac = torch.remainder(along / period + phase, 1.0)
    wave = amplitude * (2.0 * (2.0 * frac - 1.0).abs() - 1.0)  # a triangle wave in [−A, A]
    # The distance across is measured perpendicular to the line, not to the zigzag's slanted
    # segments: dividing by √(1 + slope²) restores a 1-pixel stroke.
    slope = 4.0 * amplitude / period
    to_zigzag = (across - wave) / math.sqrt(1.0 + slope**2)
    return _overlay(x.detach(), _line(to_zigzag)[:, :count].amax(dim=1))


# ----------------------------------------------------------------------------- edges
def sobel_edges(x: torch.Tensor, threshold: float = 0.3) -> torch.Tensor:
    """Outline of each image: Sobel gradient, thinned to 1 pixel (non-maximum suppression), thresholded.

    Canny without the hysteresis step. The gradient is scaled so a black-to-white step
    scores 1; `threshold` is in those units. Returns a 0/1 batch shaped like x.
    """
    check_images(x)
    x = x.detach()
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    # Replicated border: zero padding would draw a frame around any image with a bright edge.
    gx = _depthwise(x, sobel_x, padding_mode="replicate") / 4
    gy = _depthwise(x, sobel_x.T, padding_mode="replicate") / 4
    magnitude = torch.hypot(gx, gy)
    # Compare each pixel with its two neighbours along the gradient, in four direction bins.
    degrees = torch.rad2deg(torch.atan2(gy, gx)).remainder(180.0)
    direction = torch.round(degrees / 45.0).long().remainder(4)  # 0: →, 1: ↘, 2: ↓, 3: ↙
    padded = F.pad(magnitude, (1, 1, 1, 1))
    h, w = x.shape[-2:]
    shifted = lambda dy, dx: padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
    steps = ((0, 1), (1, 1), (1, 0), (1, -1))
    ahead = torch.stack([shifted(dy, dx) for dy, dx in steps]).gather(0, direction[None])[0]
    behind = torch.stack([shifted(-dy, -dx) for dy, dx in steps]).gather(0, direction[None])[0]
    # Strict on one side, so a step between two pixels, where both score the same, keeps one.
    peak = (magnitude > behind) & (magnitude >= ahead)
    return (peak & (magnitude > threshold)).to(x.dtype)


def edges(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Blend towards the digit's outline (`sobel_edges`) with weight 0.3, 0.5, 0.7, 0.85, 1.0; not random.

    MNIST-C's canny_edges is the last step, the outline alone.
    """
    weight = _prepare("edges", x, severity, generator)
    return torch.lerp(x.detach(), sobel_edges(x), weight).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- registry
Corruption = Callable[..., torch.Tensor]

CORRUPTIONS: dict[str, Corruption] = {
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "gaussian_blur": gaussian_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "rotate": rotate,
    "shear": shear,
    "scale": scale,
    "translate": translate,
    "brightness": brightness,
    "contrast": contrast,
    "fog": fog,
    "stripes": stripes,
    "dotted_line": dotted_line,
    "zigzag": zigzag,
    "edges": edges,
}

# The ones that draw from `generator`; the others give the same output for any seed.
RANDOM_CORRUPTIONS = frozenset(CORRUPTIONS) - {"gaussian_blur", "brightness", "contrast", "edges"}


def corrupt(x: torch.Tensor, name: str, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the corruption called `name` (a key of CORRUPTIONS) at `severity` 1..5."""
    if not isinstance(name, str) or name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose one of: {', '.join(CORRUPTIONS)}")
    return CORRUPTIONS[name](x, severity, generator=generator)


def corrupt_all(
    x: torch.Tensor, severities=(1, 2, 3, 4, 5), generator: torch.Generator | None = None
) -> dict[str, list[torch.Tensor]]:
    """Every corruption at every severity: {name: [batch at severities[0], ...]}, in registry order."""
    for s in severities:
        _check_severity(s)  # fail before any work, not after ten corruptions
    return {name: [fn(x, s, generator=generator) for s in severities] for name, fn in CORRUPTIONS.items()}
