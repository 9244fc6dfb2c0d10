"""Corruptions: the contract every one keeps, oracles for each, and clear errors on bad input."""
import math

import pytest
import torch

from course_utils.corruptions import (
    CORRUPTIONS,
    PARAMS,
    RANDOM_CORRUPTIONS,
    affine,
    corrupt,
    corrupt_all,
    motion_blur_kernel,
    sobel_edges,
)

NAMES = list(CORRUPTIONS)
SEVERITIES = (1, 2, 3, 4, 5)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def digits(mnist):
    """32 real test digits from the embedded sample, N×1×28×28 in [0, 1]."""
    return mnist[2][:32].clone()


def _centred_blob(n: int = 4, size: int = 28, radius: float = 4.0) -> torch.Tensor:
    """A soft disc in the middle of the image: far from the border, so nothing is cropped."""
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    r = torch.hypot(coords[None, :], coords[:, None])
    return (radius + 0.5 - r).clamp(0, 1).expand(n, 1, size, size).clone()


def _centroid(x: torch.Tensor) -> torch.Tensor:
    """Centre of mass (x, y) of each image, in pixels."""
    h, w = x.shape[-2:]
    mass = x.sum(dim=(-3, -2, -1))
    cx = (x.sum(dim=(-3, -2)) * torch.arange(w, dtype=x.dtype)).sum(-1) / mass
    cy = (x.sum(dim=(-3, -1)) * torch.arange(h, dtype=x.dtype)).sum(-1) / mass
    return torch.stack([cx, cy], dim=-1)


# ----------------------------------------------------------------------------- registry
def test_registry_lists_every_corruption_with_five_parameters():
    assert NAMES == [
        "shot_noise", "impulse_noise", "gaussian_blur", "glass_blur", "motion_blur",
        "rotate", "shear", "scale", "translate", "brightness", "contrast", "fog",
        "stripes", "dotted_line", "zigzag", "edges",
    ]
    assert set(PARAMS) == set(NAMES) and RANDOM_CORRUPTIONS <= set(NAMES)
    for name, fn in CORRUPTIONS.items():
        assert len(PARAMS[name]) == 5, name
        assert fn.__doc__ and fn.__doc__.strip(), f"{name} has no docstring"


# ----------------------------------------------------------------------------- the contract
@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_range_and_input_untouched(name, digits):
    rgb = torch.rand(3, 3, 20, 24, generator=_gen(5))  # not square, three channels
    for x in (digits, digits.double(), rgb):
        before = x.clone()
        for severity in SEVERITIES:
            out = corrupt(x, name, severity, generator=_gen())
            assert out.shape == x.shape and out.dtype == x.dtype
            assert out.min() >= 0 and out.max() <= 1
            assert torch.equal(x, before), f"{name} modified its input"


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch(name):
    x = torch.zeros(0, 1, 28, 28)
    assert corrupt(x, name, 3, generator=_gen()).shape == x.shape


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output_other_seed_other_output(name, digits):
    a = corrupt(digits, name, 3, generator=_gen(1))
    b = corrupt(digits, name, 3, generator=_gen(1))
    c = corrupt(digits, name, 3, generator=_gen(2))
    assert torch.equal(a, b)
    if name in RANDOM_CORRUPTIONS:
        assert not torch.equal(a, c)
    else:
        assert torch.equal(a, c) and torch.equal(a, corrupt(digits, name, 3))


@pytest.mark.parametrize("name", sorted(set(NAMES) - RANDOM_CORRUPTIONS))
def test_deterministic_ones_treat_each_image_on_its_own(name, digits):
    whole = corrupt(digits[:6], name, 4)
    one_by_one = torch.cat([corrupt(digits[i : i + 1], name, 4) for i in range(6)])
    torch.testing.assert_close(whole, one_by_one, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_change_grows_with_severity(name, digits):
    """Every severity gives another image, and the mean |change| never shrinks (same seed)."""
    outs = [corrupt(digits, name, s, generator=_gen(3)) for s in SEVERITIES]
    change = [float((out - digits).abs().mean()) for out in outs]
    assert change[0] > 1e-3, f"{name} at severity 1 barely changes the image"
    for s in range(4):
        assert not torch.equal(outs[s], outs[s + 1]), f"{name}: severities {s + 1} and {s + 2} agree"
        assert change[s + 1] >= change[s] - 1e-6, f"{name}: mean change {change}"


# ----------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("k", [1, 2, 3])
def test_rotation_by_right_angles_is_rot90(k, digits):
    """Oracle: a counter-clockwise quarter turn is torch.rot90 over (H, W)."""
    torch.testing.assert_close(affine(digits, angle=90.0 * k), torch.rot90(digits, k, dims=(-2, -1)), rtol=0, atol=1e-5)
    torch.testing.assert_close(affine(digits, angle=-90.0 * k), torch.rot90(digits, -k, dims=(-2, -1)), rtol=0, atol=1e-5)


@pytest.mark.parametrize("dx, dy", [(3, 0), (0, -2), (-4, 5)])
def test_integer_translation_is_a_shift_with_zero_fill(dx, dy, digits):
    expected = torch.zeros_like(digits)
    h, w = digits.shape[-2:]
    # Output pixel (i, j) shows input pixel (i − dy, j − dx).
    expected[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = digits[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    torch.testing.assert_close(affine(digits, translate=(dx, dy)), expected, rtol=0, atol=1e-5)


def test_affine_takes_one_parameter_per_image(digits):
    angles = torch.tensor([0.0, 90.0, 180.0, 270.0])
    out = affine(digits[:4], angle=angles)
    for i in range(4):
        torch.testing.assert_close(out[i], torch.rot90(digits[i], i, dims=(-2, -1)), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "name, as_affine",
    [
        ("rotate", lambda x, v: affine(x, angle=v)),
        ("shear", lambda x, v: affine(x, shear=v)),
        ("scale", lambda x, v: affine(x, scale=1.0 + v)),
    ],
)
def test_geometric_corruptions_turn_each_image_one_way_or_the_other(name, as_affine, digits):
    """Oracle: each image is the affine map at +parameter or at −parameter, and both occur."""
    for severity in (1, 5):
        p = PARAMS[name][severity - 1]
        out = corrupt(digits, name, severity, generator=_gen(4))
        plus, minus = as_affine(digits, p), as_affine(digits, -p)
        is_plus = ((out - plus).abs().flatten(1).amax(1) < 1e-5)
        is_minus = ((out - minus).abs().flatten(1).amax(1) < 1e-5)
        assert bool((is_plus | is_minus).all())
        assert 0 < int(is_plus.sum()) < len(digits)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_translate_moves_the_centre_of_mass_by_the_shift_length(severity):
    blob = _centred_blob(n=16)
    out = corrupt(blob, "translate", severity, generator=_gen(6))
    moved = (_centroid(out) - _centroid(blob)).norm(dim=-1)
    torch.testing.assert_close(moved, torch.full_like(moved, float(PARAMS["translate"][severity - 1])), rtol=0, atol=0.05)
    torch.testing.assert_close(out.sum(dim=(1, 2, 3)), blob.sum(dim=(1, 2, 3)), rtol=1e-3, atol=0)


# ----------------------------------------------------------------------------- blur
@pytest.mark.parametrize("severity", SEVERITIES)
def test_gaussian_blur_keeps_the_mean_and_constant_images(severity):
    blob = _centred_blob()
    assert abs(float(corrupt(blob, "gaussian_blur", severity).mean() - blob.mean())) < 1e-3
    flat = torch.full((2, 1, 28, 28), 0.3)
    torch.testing.assert_close(corrupt(flat, "gaussian_blur", severity), flat, rtol=0, atol=1e-5)


@pytest.mark.parametrize("length", [2, 3.5, 8, 11])
def test_motion_blur_kernels_sum_to_one_and_lie_along_their_angle(length):
    kernels = motion_blur_kernel(length, torch.tensor([0.0, 90.0, 33.0, 135.0]))
    torch.testing.assert_close(kernels.sum(dim=(-2, -1)), torch.ones(4), rtol=0, atol=1e-6)
    assert (kernels >= 0).all()
    mid = kernels.shape[-1] // 2
    horizontal, vertical = kernels[0], kernels[1]
    assert horizontal[mid].sum() > 0.999 and vertical[:, mid].sum() > 0.999
    torch.testing.assert_close(vertical, horizontal.T, rtol=0, atol=1e-6)


def test_motion_blur_keeps_the_mean_of_a_central_image():
    """Kernels summing to 1, and nothing pushed past the border, keep the total brightness."""
    blob = _centred_blob(n=8)
    for severity in SEVERITIES:
        out = corrupt(blob, "motion_blur", severity, generator=_gen())
        torch.testing.assert_close(out.mean(dim=(1, 2, 3)), blob.mean(dim=(1, 2, 3)), rtol=1e-4, atol=0)


def test_glass_blur_keeps_the_mean_on_average():
    """Random offsets keep the total brightness only in expectation: within 3 % over 64 images."""
    blob = _centred_blob(n=64)
    out = corrupt(blob, "glass_blur", 5, generator=_gen())
    assert abs(float(out.mean() / blob.mean()) - 1) < 0.03


# ----------------------------------------------------------------------------- noise
@pytest.mark.parametrize("severity", SEVERITIES)
def test_impulse_noise_hits_the_expected_fraction_half_salt_half_pepper(severity):
    flat = torch.full((50, 1, 28, 28), 0.5)
    out = corrupt(flat, "impulse_noise", severity, generator=_gen(7))
    p, n = PARAMS["impulse_noise"][severity - 1], flat.numel()
    tolerance = 5 * math.sqrt(p * (1 - p) / n)  # five binomial standard deviations
    assert abs(float((out != flat).float().mean()) - p) < tolerance
    assert abs(float((out == 1).float().mean()) - p / 2) < tolerance
    assert bool(((out == 0) | (out == 1) | (out == flat)).all())


@pytest.mark.parametrize("severity", [1, 2])
def test_shot_noise_is_unbiased_and_keeps_black_black(severity):
    """Oracle: E[Poisson(λx)/λ] = x (at these λ the clip at 1 almost never acts on 0.5)."""
    flat = torch.full((200, 1, 28, 28), 0.5)
    out = corrupt(flat, "shot_noise", severity, generator=_gen(8))
    assert abs(float(out.mean()) - 0.5) < 2e-3
    lam = PARAMS["shot_noise"][severity - 1]
    assert abs(float(out.var()) - 0.5 / lam) < 0.1 * 0.5 / lam  # Poisson: variance x/λ
    assert bool((corrupt(torch.zeros(4, 1, 28, 28), "shot_noise", 5, generator=_gen()) == 0).all())


# ----------------------------------------------------------------------------- photometric
@pytest.mark.parametrize("severity", SEVERITIES)
def test_brightness_adds_a_constant_and_raises_the_mean(severity, digits):
    out = corrupt(digits, "brightness", severity)
    b = PARAMS["brightness"][severity - 1]
    assert out.mean() > digits.mean()
    torch.testing.assert_close(out, (digits + b).clamp(0, 1), rtol=0, atol=0)


def test_contrast_keeps_each_image_mean_and_shrinks_its_spread(digits):
    out = corrupt(digits, "contrast", 5)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), digits.mean(dim=(1, 2, 3)), rtol=0, atol=1e-5)
    torch.testing.assert_close(out.std(dim=(1, 2, 3)), 0.2 * digits.std(dim=(1, 2, 3)), rtol=1e-4, atol=1e-6)


def test_fog_only_brightens_and_leaves_white_white(digits):
    for severity in SEVERITIES:
        out = corrupt(digits, "fog", severity, generator=_gen(9))
        assert bool((out >= digits - 1e-6).all())
        assert bool((out[digits == 1] == 1).all())
        assert float(out.amax(dim=(1, 2, 3)).min()) > 0.99


# ----------------------------------------------------------------------------- drawn over the digit
@pytest.mark.parametrize("name", ["stripes", "dotted_line", "zigzag"])
def test_overlays_only_brighten(name, digits):
    for severity in SEVERITIES:
        out = corrupt(digits, name, severity, generator=_gen(10))
        assert bool((out >= digits).all())
        assert float((out - digits).amax()) > 0.9  # something white was drawn


def test_more_dotted_lines_add_to_the_same_picture(digits):
    """With one seed, each severity draws over the previous one (the lines are nested)."""
    outs = [corrupt(digits, "dotted_line", s, generator=_gen(11)) for s in SEVERITIES]
    for low, high in zip(outs, outs[1:]):
        assert bool((high >= low).all())


def test_stripes_are_evenly_spaced_lines():
    """On a black image, stripes cover about one pixel in every `spacing` (anti-aliased lines of width 1)."""
    black = torch.zeros(64, 1, 28, 28)
    for severity in SEVERITIES:
        coverage = float(corrupt(black, "stripes", severity, generator=_gen(12)).mean())
        assert abs(coverage - 1.0 / PARAMS["stripes"][severity - 1]) < 0.02


# ----------------------------------------------------------------------------- edges
def test_edges_of_a_filled_square_lie_on_its_border():
    x = torch.zeros(1, 1, 28, 28)
    x[..., 8:20, 8:20] = 1.0
    out = sobel_edges(x)[0, 0]
    near_border = torch.zeros(28, 28, dtype=torch.bool)
    near_border[7:21, 7:21] = True
    near_border[9:19, 9:19] = False  # within one pixel of the square's boundary
    assert out.sum() > 0 and bool((out[~near_border] == 0).all())
    # All four sides are found, each as a line one pixel thick.
    rows, cols = out.nonzero(as_tuple=True)
    assert {int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())} <= {7, 8, 19, 20}
    for side in (out[7:9, 10:18], out[19:21, 10:18], out[10:18, 7:9], out[10:18, 19:21]):
        assert side.sum() == 8  # one pixel per row/column of the side, not two
    torch.testing.assert_close(corrupt(x, "edges", 5), sobel_edges(x), rtol=0, atol=0)


def test_edges_of_a_constant_image_are_empty():
    for value in (0.0, 0.6, 1.0):
        assert sobel_edges(torch.full((2, 1, 28, 28), value)).sum() == 0


# ----------------------------------------------------------------------------- corrupt_all
def test_corrupt_all_gives_every_corruption_at_every_severity(digits):
    out = corrupt_all(digits[:4], severities=(1, 5), generator=_gen())
    assert list(out) == NAMES
    assert all(len(v) == 2 and v[0].shape == digits[:4].shape for v in out.values())


# ----------------------------------------------------------------------------- bad input
def test_unknown_name_lists_the_known_ones(digits):
    with pytest.raises(ValueError, match="unknown corruption 'snow'.*shot_noise.*edges"):
        corrupt(digits, "snow", 1)
    with pytest.raises(ValueError, match="choose one of"):
        corrupt(digits, ["fog"], 1)


@pytest.mark.parametrize("severity", [0, 6, -1, 2.0, True, "3", None])
def test_bad_severity(severity, digits):
    with pytest.raises(ValueError, match="severity must be an int from 1"):
        corrupt(digits, "rotate", severity)
    with pytest.raises(ValueError, match="severity must be an int from 1"):
        corrupt_all(digits, severities=(1, severity))


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.full((2, 1, 28, 28), 1.5), r"\[0, 1\]"),
        (torch.full((2, 1, 28, 28), -0.1), r"\[0, 1\]"),
        (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "floating-point"),
        (torch.zeros(1, 28, 28), "N×C×H×W"),
        ([[0.0]], "tensor"),
    ],
)
@pytest.mark.parametrize("name", ["shot_noise", "fog", "edges"])
def test_bad_images(x, message, name):
    with pytest.raises(ValueError, match=message):
        corrupt(x, name, 1)


def test_bad_generator_and_kernel_length(digits):
    with pytest.raises(ValueError, match="generator"):
        corrupt(digits, "fog", 1, generator=0)
    with pytest.raises(ValueError, match="length"):
        motion_blur_kernel(0, 0.0)
    with pytest.raises(ValueError, match="scale must be > 0"):
        affine(digits, scale=torch.linspace(-1, 1, len(digits)))
