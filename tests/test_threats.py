"""Threat models beyond ℓp: exact identities of the transforms, the attacks' hygiene, and their strength."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.attacks import pgd
from course_utils.evaluate import accuracy
from course_utils.models import linear
from course_utils.attacks.registry import DESCRIPTIONS, THREAT_NAMES, make_attack
from course_utils.attacks.threats import (
    add_fog,
    adversarial_fog,
    elastic,
    elastic_deform,
    gaussian_noise,
    rotate_translate,
    rotation_translation,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 8, shape=(1, 28, 28), seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *shape, generator=_gen(seed))


def _shifted(x: torch.Tensor, shift: int, dim: int) -> torch.Tensor:
    """torch.roll with what wraps around replaced by zeros (black)."""
    out = torch.roll(x, shift, dims=dim)
    index = torch.arange(shift) if shift > 0 else torch.arange(x.shape[dim] + shift, x.shape[dim])
    return out.index_fill(dim, index, 0.0)


# ----------------------------------------------------------------------------- transforms
def test_rotate_translate_by_nothing_is_the_identity():
    """Up to float32 rounding in grid_sample's coordinates: ~1e-6 on 9×13, ~3e-6 on 28×28, exact on 32×32."""
    x = _images(4, (3, 9, 13))
    torch.testing.assert_close(rotate_translate(x, 0.0, 0.0, 0.0), x, rtol=0, atol=1e-6)
    torch.testing.assert_close(rotate_translate(x, torch.zeros(4), torch.zeros(4), torch.zeros(4)), x, rtol=0, atol=1e-6)
    mnist_sized = _images(16)
    torch.testing.assert_close(rotate_translate(mnist_sized, 0.0, 0.0, 0.0), mnist_sized, rtol=0, atol=5e-6)
    assert torch.equal(rotate_translate(_images(2, (1, 32, 32)), 0.0, 0.0, 0.0), _images(2, (1, 32, 32)))


@pytest.mark.parametrize("tx,ty", [(1, 0), (0, 1), (-2, 0), (0, -3), (2, -1)])
def test_integer_shift_is_a_roll_with_black_fill(tx, ty):
    """Oracle: a shift by whole pixels reads pixel centres exactly: torch.roll, with zeros where it wrapped."""
    x = _images(3, (2, 10, 12), seed=1)
    expected = _shifted(_shifted(x, tx, -1), ty, -2) if tx and ty else (_shifted(x, tx, -1) if tx else _shifted(x, ty, -2))
    torch.testing.assert_close(rotate_translate(x, 0.0, tx, ty), expected, rtol=0, atol=1e-6)


def test_quarter_turns_equal_rot90_and_half_turn_equals_flips():
    """Positive angles turn counter-clockwise as displayed: +90° is rot90(k=1) on (H, W), −90° is k=−1.

    The half turn maps pixel centres onto pixel centres on non-square images too.
    """
    x = _images(3, (1, 11, 11), seed=2)
    torch.testing.assert_close(rotate_translate(x, 90.0, 0, 0), torch.rot90(x, 1, dims=(-2, -1)), rtol=0, atol=1e-5)
    torch.testing.assert_close(rotate_translate(x, -90.0, 0, 0), torch.rot90(x, -1, dims=(-2, -1)), rtol=0, atol=1e-5)
    wide = _images(2, (3, 6, 10), seed=3)
    torch.testing.assert_close(rotate_translate(wide, 180.0, 0, 0), torch.flip(wide, dims=(-2, -1)), rtol=0, atol=1e-5)


def test_rotate_translate_applies_each_images_own_parameters():
    x = _images(3, (1, 12, 12), seed=4)
    angle, tx, ty = torch.tensor([10.0, -25.0, 90.0]), torch.tensor([0.5, -1.0, 2.0]), torch.tensor([0.0, 1.5, -2.0])
    together = rotate_translate(x, angle, tx, ty)
    for i in range(3):
        alone = rotate_translate(x[i : i + 1], angle[i].item(), tx[i].item(), ty[i].item())
        torch.testing.assert_close(together[i : i + 1], alone, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="^angle"):
        rotate_translate(x, torch.zeros(2), 0, 0)


def test_elastic_deform_reads_the_input_at_p_plus_displacement():
    """Zero field: identity. A constant field of −1 pixel to the right: content moves one pixel right."""
    x = _images(2, (1, 10, 10), seed=5)
    torch.testing.assert_close(elastic_deform(x, torch.zeros(2, 2, 4, 4)), x, rtol=0, atol=1e-6)
    field = torch.zeros(2, 2, 4, 4)
    field[:, 0] = -1.0
    torch.testing.assert_close(elastic_deform(x, field), _shifted(x, 1, -1), rtol=0, atol=1e-6)
    field = torch.zeros(2, 2, 4, 4)
    field[:, 1] = 2.0
    torch.testing.assert_close(elastic_deform(x, field), _shifted(x, -2, -2), rtol=0, atol=1e-6)


def test_add_fog_by_hand():
    """ε = 0 changes nothing; a uniform pattern c gives (x + ε·c)/(1 + ε) exactly where bicubic is flat."""
    x = _images(2, (3, 8, 8), seed=6)
    assert torch.equal(add_fog(x, torch.rand(2, 1, 4, 4, generator=_gen(0)), 0.0), x)
    torch.testing.assert_close(add_fog(x, torch.full((2, 1, 4, 4), 0.4), 0.5), (x + 0.5 * 0.4) / 1.5)
    # The pattern is one grey haze over every channel.
    foggy = add_fog(torch.zeros(1, 3, 8, 8), torch.rand(1, 1, 3, 3, generator=_gen(1)), 1.0)
    assert torch.equal(foggy[:, 0], foggy[:, 1]) and torch.equal(foggy[:, 0], foggy[:, 2])


# ----------------------------------------------------------------------------- hygiene
ATTACKS = {
    "rotation_grid": lambda m, x, y: rotation_translation(m, x, y, 20.0, 2.0, angles=5, shifts=3),
    "rotation_trials": lambda m, x, y: rotation_translation(m, x, y, 20.0, 2.0, trials=5, generator=_gen(0)),
    "elastic": lambda m, x, y: elastic(m, x, y, 1.5, 3, generator=_gen(0)),
    "fog": lambda m, x, y: adversarial_fog(m, x, y, 0.5, 3, generator=_gen(0)),
    **{f"make_{name}": (lambda name: lambda m, x, y: make_attack(name, 0.3 if name == "linf" else 2.0, steps=3,
                                                                   generator=_gen(0))(m, x, y))(name)
       for name in THREAT_NAMES},
}


def _dropout_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))


@pytest.fixture
def batch():
    return _images(6, seed=7), torch.randint(0, 10, (6,), generator=_gen(7))


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_output_is_detached_in_range_and_leaves_grads_and_input_alone(batch, name):
    x, _ = batch
    model = _dropout_net().eval()
    with torch.no_grad():
        y = model(x).argmax(1)  # correctly classified, so that every attack has something to do
    x_in = x.clone().requires_grad_(True)
    out = ATTACKS[name](model, x_in, y)
    assert not out.requires_grad and out.grad_fn is None
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(x_in.detach(), x) and x_in.grad is None
    assert all(p.grad is None for p in model.parameters())
    if name != "make_noise":
        assert not torch.equal(out, x)


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_runs_in_eval_mode_and_restores_the_mode(batch, name):
    """A Dropout net in train mode gives the eval-mode result, deterministically; its mode is restored."""
    x, y = batch
    net = _dropout_net()
    expected = ATTACKS[name](net.eval(), x, y)
    net.train()
    assert torch.equal(ATTACKS[name](net, x, y), expected)
    assert net.training and all(m.training for m in net.modules())
    net.eval()
    ATTACKS[name](net, x, y)
    assert not any(m.training for m in net.modules())


def test_attacks_work_under_no_grad_and_with_inference_tensors(batch):
    x, y = batch
    model = _dropout_net().eval()
    for name in ("elastic", "fog", "rotation_trials"):
        expected = ATTACKS[name](model, x, y)
        with torch.no_grad():
            assert torch.equal(ATTACKS[name](model, x, y), expected)
        with torch.inference_mode():
            x_inf, y_inf = x.clone(), y.clone()
        assert torch.equal(ATTACKS[name](model, x_inf, y_inf), expected)


# ----------------------------------------------------------------------------- size 0 and the parameter boxes
def test_size_zero_changes_nothing(batch):
    x, y = batch
    model = _dropout_net().eval()
    assert torch.equal(rotation_translation(model, x, y, 0.0, 0.0), x)
    assert torch.equal(rotation_translation(model, x, y, 0.0, 0.0, trials=3, generator=_gen(0)), x)
    assert torch.equal(adversarial_fog(model, x, y, 0.0, 3, generator=_gen(0)), x)
    assert torch.equal(elastic(model, x, y, 0.0, 3, generator=_gen(0)), x)
    for name in THREAT_NAMES:
        torch.testing.assert_close(make_attack(name, 0.0, steps=2, generator=_gen(0))(model, x, y), x, rtol=0, atol=1e-6)


@pytest.mark.parametrize("axis", ["horizontal", "vertical"])
def test_elastic_moves_no_pixel_further_than_eps(axis):
    """Oracle: on a linear ramp bilinear sampling is exact, so (out − x)/slope is the displacement itself.

    Away from the border it must stay within ±ε, and PGD drives it to the box's faces.
    """
    eps, h = 1.5, 28
    ramp = 0.2 + 0.6 * torch.arange(h, dtype=torch.float32) / (h - 1)
    x = (ramp.view(1, 1, 1, h) if axis == "horizontal" else ramp.view(1, 1, h, 1)).expand(8, 1, h, h).contiguous()
    torch.manual_seed(0)
    model = linear()
    y = torch.arange(8)
    out = elastic(model, x, y, eps, 5, generator=_gen(1))
    moved = (out - x) / (0.6 / (h - 1))
    inner = moved[..., 3:-3, 3:-3]  # ε + 1 pixels from the border nothing is read from outside the frame
    assert inner.abs().max() <= eps + 1e-3
    assert inner.abs().max() >= 0.9 * eps


def test_fog_pattern_stays_in_its_box():
    """Oracle: F = ((1 + ε)·out − x)/ε recovers the fog, which must lie in [0, 1] and use its whole range."""
    eps = 0.8
    x = _images(8, seed=8)
    torch.manual_seed(0)
    model = linear()
    out = adversarial_fog(model, x, torch.arange(8), eps, 5, generator=_gen(2))
    haze = ((1 + eps) * out - x) / eps
    assert haze.min() >= -1e-5 and haze.max() <= 1 + 1e-5
    assert haze.min() <= 0.05 and haze.max() >= 0.95


# ----------------------------------------------------------------------------- rotation: worst case and strength
def _band_model() -> nn.Module:
    """Class 0 iff the rows 12–15 hold more than 20 units of ink: a horizontal bar there is class 0,
    and rotating or shifting the bar out of the band flips the decision."""
    weight = torch.zeros(2, 1, 28, 28)
    weight[0, 0, 12:16, :] = 1.0
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 2))
    with torch.no_grad():
        model[1].weight.copy_(weight.flatten(1))
        model[1].bias.copy_(torch.tensor([0.0, 20.0]))
    return model


def _ink_model() -> nn.Module:
    """Class 0 iff the image holds more than 20 units of ink anywhere: blind to rotations and shifts."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.cat([torch.ones(1, 784), torch.zeros(1, 784)]))
        model[1].bias.copy_(torch.tensor([0.0, 20.0]))
    return model


def _bars(n: int = 6) -> torch.Tensor:
    """Horizontal bars two pixels thick across the middle, with a little noise."""
    x = 0.05 * torch.rand(n, 1, 28, 28, generator=_gen(9))
    x[:, :, 13:15, 2:26] = 0.9
    return x


@pytest.mark.parametrize("model_fn,fooled", [(_band_model, True), (_ink_model, False)])
def test_grid_rotation_breaks_a_rotation_sensitive_model_only(model_fn, fooled):
    """Oracle: every bar is class 0 for both models; rotations up to 30° and shifts up to 3 px move the bar
    out of the band (all fooled) but keep its ink (none fooled)."""
    model, x = model_fn(), _bars()
    y = torch.zeros(6, dtype=torch.int64)
    assert accuracy(model, x, y) == 1.0
    out = rotation_translation(model, x, y, 30.0, 3.0)
    assert accuracy(model, out, y) == (0.0 if fooled else 1.0)


def test_rotation_keeps_the_first_transform_that_fools():
    """Already misclassified examples come back unchanged (the identity is tried first); a fooled example
    stays fooled; and the grid's mildest fooling transform is the one kept."""
    model, x = _band_model(), _bars()
    y = torch.tensor([0, 0, 0, 1, 1, 1])  # the last three are misclassified as they are
    for kwargs in (dict(), dict(trials=4, generator=_gen(3))):
        out = rotation_translation(model, x, y, 30.0, 3.0, **kwargs)
        assert torch.equal(out[3:], x[3:])
        with torch.no_grad():
            assert (model(out).argmax(1) != y).all()
    # Shifts alone: a 1-pixel shift keeps the bar in the band; the 3-pixel ones push it out.
    out = rotation_translation(model, x[:1], y[:1], 0.0, 3.0, shifts=7)
    with torch.no_grad():
        assert model(out).argmax(1).item() == 1
    vertical = [rotate_translate(x[:1], 0.0, 0.0, s) for s in (-3.0, 3.0)]
    assert any(torch.allclose(out, v, atol=1e-6) for v in vertical)


def test_worst_of_k_random_trials_is_reproducible_and_grows_with_k():
    model, x = _band_model(), _bars(24)
    y = torch.zeros(24, dtype=torch.int64)
    once = rotation_translation(model, x, y, 30.0, 3.0, trials=1, generator=_gen(4))
    assert torch.equal(once, rotation_translation(model, x, y, 30.0, 3.0, trials=1, generator=_gen(4)))
    many = rotation_translation(model, x, y, 30.0, 3.0, trials=20, generator=_gen(4))
    assert accuracy(model, many, y) < accuracy(model, once, y)


# ----------------------------------------------------------------------------- gradient attacks: strength
@pytest.fixture(scope="module")
def linear_mnist(linear_mnist_300):
    """The shared softmax regression (tests/conftest.py) on its first 200 test digits."""
    model, x, y = linear_mnist_300
    return model, x[:200], y[:200]


@pytest.mark.parametrize("attack,size", [(elastic, 0.5), (adversarial_fog, 0.3)])
def test_gradient_attacks_beat_random_parameters_of_the_same_size(linear_mnist, attack, size):
    """Oracle: steps=0 is a random point of the same threat model; ten sign steps from it do far more damage."""
    model, x, y = linear_mnist
    random = accuracy(model, attack(model, x, y, size, 0, generator=_gen(5)), y)
    attacked = accuracy(model, attack(model, x, y, size, 10, generator=_gen(5)), y)
    assert attacked <= random - 0.25


@pytest.mark.parametrize("name,size", [("elastic", 0.5), ("fog", 0.2)])
def test_make_attack_restarts_keep_the_worst_case(linear_mnist, name, size):
    """With one seed, restart 1 of restarts=3 is the restarts=1 run: nothing it fooled may come back."""
    model, x, y = linear_mnist
    one = make_attack(name, size, steps=3, restarts=1, generator=_gen(6))(model, x, y)
    three = make_attack(name, size, steps=3, restarts=3, generator=_gen(6))(model, x, y)
    with torch.no_grad():
        fooled_one, fooled_three = model(one).argmax(1) != y, model(three).argmax(1) != y
    assert fooled_one.any() and not (fooled_one & ~fooled_three).any()
    assert fooled_three.sum() >= fooled_one.sum()


# ----------------------------------------------------------------------------- make_attack
def test_make_attack_wires_each_name_to_its_attack(linear_mnist):
    """Same seed, same result as the direct call with the documented parameters."""
    model, x, y = linear_mnist
    x, y = x[:16], y[:16]
    direct = {
        "linf": lambda: pgd(model, x, y, 0.1, 2.5 * 0.1 / 4, 4, generator=_gen(0)),
        "l2": lambda: pgd(model, x, y, 1.0, 2.5 * 1.0 / 4, 4, norm=2, generator=_gen(0)),
        "l1": lambda: pgd(model, x, y, 8.0, 2.5 * 8.0 / 4, 4, norm=1, generator=_gen(0)),
        "elastic": lambda: elastic(model, x, y, 1.0, 4, generator=_gen(0)),
        "fog": lambda: adversarial_fog(model, x, y, 1.0, 4, generator=_gen(0)),
        "noise": lambda: gaussian_noise(x, 1.0, generator=_gen(0)),
    }
    sizes = {"linf": 0.1, "l2": 1.0, "l1": 8.0}
    for name, run in direct.items():
        got = make_attack(name, sizes.get(name, 1.0), steps=4, generator=_gen(0))(model, x, y)
        assert torch.equal(got, run()), name
    grid = make_attack("rotation", 20.0, steps=0)(model, x, y)
    assert torch.equal(grid, rotation_translation(model, x, y, 20.0, 2.0))
    trials = make_attack("rotation", 20.0, steps=3, restarts=2, generator=_gen(0))(model, x, y)
    assert torch.equal(trials, rotation_translation(model, x, y, 20.0, 2.0, trials=6, generator=_gen(0)))


def test_gaussian_noise_has_standard_deviation_sigma_and_ignores_the_model():
    x = torch.full((50, 1, 20, 20), 0.5)
    out = make_attack("noise", 0.1, generator=_gen(7))(None, x, torch.zeros(50, dtype=torch.int64))
    assert (out - x).std().item() == pytest.approx(0.1, rel=0.03)
    assert (out - x).mean().abs() < 0.005
    assert out.min() >= 0 and out.max() <= 1
    assert gaussian_noise(torch.zeros(2, 1, 4, 4), 0.5, generator=_gen(8)).min() == 0  # clipped, not negative


def test_names_and_descriptions_agree():
    assert set(DESCRIPTIONS) == set(THREAT_NAMES) and len(THREAT_NAMES) == 7
    assert all(isinstance(d, str) and "size" in d for d in DESCRIPTIONS.values())


BAD_MAKE = [
    (("lp", 1.0), {}, "^unknown threat 'lp'; known: linf, l2, l1, rotation, elastic, fog, noise"),
    (("fog", -0.1), {}, "^size"),
    (("elastic", float("nan")), {}, "^size"),
    (("linf", 1.5), {}, "^size"),
    (("rotation", 200.0), {}, "^size"),
    (("fog", 0.5), dict(steps=-1), "^steps"),
    (("fog", 0.5), dict(restarts=0), "^restarts"),
    (("rotation", 30.0), dict(steps=0, restarts=2), "^restarts"),
    (("noise", 0.1), dict(restarts=2), "^restarts"),
]


@pytest.mark.parametrize("args,kwargs,match", BAD_MAKE, ids=[str(a) + str(k) for a, k, _ in BAD_MAKE])
def test_make_attack_rejects_bad_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_attack(*args, **kwargs)


@pytest.mark.parametrize("name", THREAT_NAMES)
def test_attacks_reject_images_outside_the_unit_range(batch, name):
    x, y = batch
    attack = make_attack(name, 0.1, steps=1, generator=_gen(0))
    with pytest.raises(ValueError, match="^x must"):
        attack(_dropout_net(), (x - 0.1307) / 0.3081, y)
    with pytest.raises(ValueError, match="^y must"):
        attack(_dropout_net(), x, y[:3])


@pytest.mark.parametrize("call,match", [
    (lambda m, x, y: elastic(m, x, y, -1.0, 3), "^eps"),
    (lambda m, x, y: elastic(m, x, y, 1.0, 3, alpha=0.0), "^alpha"),
    (lambda m, x, y: elastic(m, x, y, 1.0, 3, grid=0), "^grid"),
    (lambda m, x, y: adversarial_fog(m, x, y, 0.5, 2.5), "^steps"),
    (lambda m, x, y: rotation_translation(m, x, y, -5.0, 1.0), "^max_angle"),
    (lambda m, x, y: rotation_translation(m, x, y, 5.0, 1.0, trials=0), "^trials"),
    (lambda m, x, y: rotation_translation(m, x.flatten(1), y, 5.0, 1.0), "^x must be a batch of images"),
    (lambda m, x, y: gaussian_noise(x, -0.1), "^sigma"),
])
def test_attacks_reject_bad_parameters(batch, call, match):
    x, y = batch
    with pytest.raises(ValueError, match=match):
        call(_dropout_net(), x, y)
