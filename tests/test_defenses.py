"""The defences of 10 (course_utils/defenses.py) and the adaptive attacks that break them (attacks/eot.py)."""
import pytest
import torch
from torch import nn

from course_utils import attacks, defenses
from course_utils.attacks.eot import eot_gradient, eot_pgd, pgd_with
from course_utils.defenses import (GradientBlocked, OneDraw, QuantizedInput, RandomResizePad, bpda_gradient,
                                   expected_correct, quantize, random_resize_pad)
from course_utils.evaluate import accuracy, robust_accuracy


def test_quantize_rounds_to_the_nearest_of_evenly_spaced_levels():
    x = torch.tensor([0.0, 0.1, 0.24, 0.26, 0.5, 0.74, 0.76, 1.0]).view(1, 1, 1, 8)
    assert quantize(x, 5).flatten().tolist() == [0.0, 0.0, 0.25, 0.25, 0.5, 0.75, 0.75, 1.0]
    assert set(quantize(torch.rand(1, 1, 20, 20), 2).unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="levels"):
        QuantizedInput(nn.Identity(), 1)


def test_quantised_model_has_exactly_zero_input_gradient(trained_cnn, eval_batch):
    x, y = eval_batch[0][:50], eval_batch[1][:50]
    g = attacks.input_gradient(QuantizedInput(trained_cnn, 8), x, y)
    assert torch.count_nonzero(g) == 0  # shattered: every gradient attack is blind


def test_bpda_copy_has_the_same_forward_and_the_classifiers_gradient_at_the_quantised_image(trained_cnn, eval_batch):
    x, y = eval_batch[0][:50], eval_batch[1][:50]
    q = QuantizedInput(trained_cnn, 8)
    with torch.no_grad():
        assert torch.equal(q(x), q.bpda()(x))
    want = attacks.input_gradient(trained_cnn, quantize(x, 8), y)
    assert torch.allclose(bpda_gradient(trained_cnn, x, y, 8), want, atol=1e-6)
    assert torch.allclose(attacks.input_gradient(q.bpda(), x, y), want, atol=1e-6)
    assert all(p.grad is None for p in trained_cnn.parameters())


def test_bpda_breaks_quantisation_that_pgd_cannot_touch(trained_cnn, eval_batch):
    x, y = eval_batch[0][:100], eval_batch[1][:100]
    q = QuantizedInput(trained_cnn, 8)
    eps = 0.2
    plain = robust_accuracy(q, x, y, lambda m, a, b: attacks.pgd(m, a, b, eps, eps / 4, 20))
    bpda = robust_accuracy(q, x, y, lambda m, a, b: attacks.pgd(m.bpda(), a, b, eps, eps / 4, 20))
    assert plain >= accuracy(q, x, y) - 0.05  # PGD gets no gradient: it only sees its random start
    assert bpda <= plain - 0.5


def test_random_resize_pad_keeps_the_frame_shrinks_and_is_random():
    x = torch.zeros(2, 1, 28, 28)
    x[:, :, 4:24, 4:24] = 1.0
    g = torch.Generator().manual_seed(0)
    a, b = random_resize_pad(x, 1.3, g), random_resize_pad(x, 1.3, g)
    assert a.shape == x.shape and not torch.equal(a, b)
    assert (a.sum((1, 2, 3)) < x.sum((1, 2, 3))).all()  # a shrunk digit covers fewer pixels
    assert a.min() >= 0 and a.max() <= 1
    # no shrink: the identity (up to bilinear rounding)
    assert torch.allclose(random_resize_pad(x, 1.0 + 1e-9, g), x, atol=1e-5)
    with pytest.raises(ValueError, match="max_shrink"):
        RandomResizePad(nn.Identity(), 1.0)


def test_random_resize_pad_is_differentiable_and_reproducible_by_seed():
    x = torch.rand(3, 1, 28, 28, requires_grad=True)
    out = random_resize_pad(x, 1.2, torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.abs().sum() > 0
    d1, d2 = RandomResizePad(nn.Identity(), 1.2, seed=5), RandomResizePad(nn.Identity(), 1.2, seed=5)
    assert torch.equal(d1(x), d2(x))


def test_one_draw_is_the_same_draw_every_call():
    d = RandomResizePad(nn.Identity(), 1.3, seed=0)
    frozen = OneDraw(d, seed=3)
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(frozen(x), frozen(x))
    assert not torch.equal(d(x), d(x))


def test_expected_correct_is_a_frequency_and_exact_for_a_deterministic_model(trained_cnn, eval_batch):
    x, y = eval_batch[0][:50], eval_batch[1][:50]
    e = expected_correct(trained_cnn, x, y, draws=3)
    assert torch.equal(e, (trained_cnn(x).argmax(1) == y).float())

    class Coin(nn.Module):  # right on even calls, wrong on odd ones
        calls = 0

        def forward(self, x):
            Coin.calls += 1
            logits = torch.zeros(len(x), 2)
            logits[:, Coin.calls % 2] = 1.0
            return logits

    assert torch.allclose(expected_correct(Coin(), x[:4], torch.zeros(4, dtype=torch.long), draws=10), torch.full((4,), 0.5))
    with pytest.raises(ValueError, match="draws"):
        expected_correct(trained_cnn, x, y, draws=0)


def test_gradient_blocked_answers_queries_and_refuses_gradients(trained_cnn, eval_batch):
    x, y = eval_batch[0][:8], eval_batch[1][:8]
    api = GradientBlocked(trained_cnn)
    with torch.no_grad():
        assert torch.equal(api(x), trained_cnn(x))
    with pytest.raises(RuntimeError, match="no gradient"):
        attacks.pgd(api, x, y, 0.1, 0.025, 5)


class _Alternating(nn.Module):
    """A 'random' model that is branch A on even calls and B on odd ones: its expected gradient is known."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a, self.b = nn.Linear(16, 3), nn.Linear(16, 3)
        with torch.no_grad():
            for layer in (self.a, self.b):
                layer.weight.copy_(torch.randn(3, 16, generator=g))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return (self.a if self.calls % 2 == 0 else self.b)(x.flatten(1))


def test_eot_gradient_is_the_mean_of_the_draws_gradients():
    model = _Alternating()
    x, y = torch.rand(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1])
    ga = attacks.input_gradient(nn.Sequential(nn.Flatten(), model.a), x, y)
    gb = attacks.input_gradient(nn.Sequential(nn.Flatten(), model.b), x, y)
    assert torch.allclose(eot_gradient(model, x, y, 4), (ga + gb) / 2, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="samples"):
        eot_gradient(model, x, y, 0)


def test_pgd_with_the_models_own_gradient_is_pgd(trained_cnn, eval_batch):
    x, y = eval_batch[0][:20], eval_batch[1][:20]
    ours = pgd_with(lambda m, a, b: attacks.input_gradient(m, a, b), trained_cnn, x, y, 0.1, 0.025, 10,
                    random_start=False)
    reference = attacks.pgd(trained_cnn, x, y, 0.1, 0.025, 10, random_start=False)
    assert torch.allclose(ours, reference)
    assert (ours - x).abs().max() <= 0.1 + 1e-6


def test_eot_is_no_weaker_than_plain_pgd_on_a_randomised_model(trained_cnn, eval_batch):
    x, y = eval_batch[0][:100], eval_batch[1][:100]
    d = RandomResizePad(trained_cnn, 1.15, seed=0)
    eps = 0.15
    one_draw = expected_correct(d, attacks.pgd(OneDraw(d, 3), x, y, eps, eps / 8, 20), y).mean()
    eot = expected_correct(d, eot_pgd(d, x, y, eps, eps / 8, 20, samples=8, generator=torch.Generator().manual_seed(0)), y).mean()
    assert eot <= one_draw - 0.03
    x_adv = eot_pgd(d, x, y, eps, eps / 8, 5, samples=2)
    assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
