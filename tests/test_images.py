"""The one validator of image batches, the seeded draws, the affine warp, and the one worst-case rule."""
import pytest
import torch
from torch import nn

from course_utils import attacks
from course_utils.attacks import threats
from course_utils.attacks.core import worst_case
from course_utils.images import affine, check_batch, normal, uniform
from course_utils.models import linear, small_cnn


def _batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.arange(n) % 10


EVERY_ATTACK = {
    "fgsm": lambda m, x, y: attacks.fgsm(m, x, y, 0.1),
    "pgd": lambda m, x, y: attacks.pgd(m, x, y, 0.1, 0.05, 2),
    "pgd_l2": lambda m, x, y: attacks.pgd(m, x, y, 1.0, 0.5, 2, norm=2),
    "apgd": lambda m, x, y: attacks.apgd(m, x, y, 0.1, 2),
    "apgd_targeted": lambda m, x, y: attacks.apgd_targeted(m, x, y, 0.1, 2, targets=2),
    "strong": lambda m, x, y: attacks.StrongAttack(0.1, steps=2, targets=1)(m, x, y),
    "rotation": lambda m, x, y: threats.rotation_translation(m, x, y, 10.0, 1.0, angles=3, shifts=1),
    "elastic": lambda m, x, y: threats.elastic(m, x, y, 1.0, 2),
    "fog": lambda m, x, y: threats.adversarial_fog(m, x, y, 0.3, 2),
    "make_attack_l1": attacks.make_attack("l1", 5.0, steps=2),
}


def _nan_pixels():
    x, y = _batch()
    x[1, 0, 3, 3] = float("nan")
    return x, y


def _flat_batch():
    x, y = _batch()
    return x[:, 0], y  # N×H×W: the channel is missing


def _label_out_of_range():
    x, y = _batch()
    return x, torch.tensor([0, 1, 10, 3])


def _negative_label():
    x, y = _batch()
    return x, torch.tensor([0, -1, 2, 3])


def _float_labels():
    x, y = _batch()
    return x, y.float()


BAD_INPUTS = {
    "NaN pixels": (_nan_pixels, r"^x contains NaN"),
    "a 3-D batch": (_flat_batch, r"^x must be a batch of images shaped N×C×H×W"),
    "label 10": (_label_out_of_range, r"^y must hold class labels 0 … 9"),
    "label -1": (_negative_label, r"^y must hold class labels (≥ 0|0 … 9), got labels from -1"),
    "float labels": (_float_labels, r"^y must hold integer class labels"),
}


@pytest.mark.parametrize("what", BAD_INPUTS)
@pytest.mark.parametrize("name", EVERY_ATTACK)
def test_every_attack_refuses_bad_batches_with_a_value_error_that_names_the_argument(name, what):
    """Before, NaN pixels were attacked and NaN returned, and the others failed deep inside PyTorch."""
    torch.manual_seed(0)
    model = small_cnn().eval()
    make, message = BAD_INPUTS[what]
    x, y = make()
    with pytest.raises(ValueError, match=message):
        EVERY_ATTACK[name](model, x, y)


def test_labels_are_checked_against_the_models_own_classes():
    """A three-class model has no class 5, even though 5 is a digit."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 3))
    x, _ = _batch(2)
    with pytest.raises(ValueError, match=r"0 … 2"):
        attacks.pgd(model, x, torch.tensor([0, 5]), 0.1, 0.05, 1)
    attacks.pgd(model, x, torch.tensor([0, 2]), 0.1, 0.05, 1)  # in range: no error


def test_the_validator_accepts_good_batches_and_an_empty_one():
    check_batch(*_batch())
    check_batch(torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.int64), classes=10)
    with pytest.raises(ValueError, match="one label per image"):
        check_batch(*_batch(3)[:1], torch.arange(2))


def test_seeded_draws_repeat_and_follow_their_range():
    like = torch.zeros(3)
    a = uniform((1000,), like, -2.0, 3.0, torch.Generator().manual_seed(4))
    b = uniform((1000,), like, -2.0, 3.0, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and a.min() >= -2.0 and a.max() < 3.0
    assert abs(a.mean().item() - 0.5) < 0.15  # the mean of U(−2, 3)
    assert torch.equal(normal((5,), like, torch.Generator().manual_seed(1)), torch.randn(5, generator=torch.Generator().manual_seed(1)))


def test_the_affine_warp_is_exact_on_quarter_turns_and_whole_pixel_shifts():
    """Oracles: torch.rot90 and a shifted copy (32 × 32: grid_sample is exact at the identity there)."""
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(affine(x, angle=90.0), torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5, rtol=0)
    shifted = affine(x, translate=(3.0, 0.0))
    torch.testing.assert_close(shifted[..., 3:], x[..., :-3], atol=1e-5, rtol=0)
    assert shifted[..., :3].abs().max() == 0  # what enters the frame is black
    # The same warp serves the threats and the corruptions.
    torch.testing.assert_close(threats.rotate_translate(x, 90.0, 0.0, 0.0), affine(x, angle=90.0))


def test_worst_case_keeps_the_first_success_else_the_highest_loss():
    """Two examples, three candidates. Example 0: fooled by the first candidate, and a later one fools it
    with a higher loss — the first is kept. Example 1: never fooled — the candidate of highest loss is kept."""
    model = linear(in_features=2, classes=2).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        model[1].bias.zero_()
    y = torch.tensor([0, 0])
    # logit_0 = pixel 0, logit_1 = pixel 1: fooled when pixel 1 > pixel 0; the loss grows with pixel 1 − pixel 0.
    c1 = torch.tensor([[0.2, 0.6], [0.9, 0.1]]).view(2, 1, 1, 2)
    c2 = torch.tensor([[0.0, 1.0], [0.9, 0.5]]).view(2, 1, 1, 2)
    c3 = torch.tensor([[0.5, 0.6], [0.9, 0.3]]).view(2, 1, 1, 2)
    best = worst_case(model, y, iter([c1, c2, c3]))
    assert torch.equal(best[0], c1[0]), "a later, higher-loss success must not replace the first one"
    assert torch.equal(best[1], c2[1]), "unfooled: the highest loss wins"
    with pytest.raises(ValueError, match="at least one"):
        worst_case(model, y, iter([]))
