"""10's self-checks (course_utils/checks/defenses.py) pass the reference solutions and fail, without raising and
naming the mistake, the usual wrong ones: the BPDA gradient (straight-through quantiser) and the EOT gradient."""
import pytest
import torch
import torch.nn.functional as F

from course_utils import defenses
from course_utils.attacks.eot import eot_gradient
from course_utils.checks import check_bpda_gradient, check_eot_gradient


def _grad(model, x, y, reduction="sum", create_graph=False):
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction=reduction), x, create_graph=create_graph)
    return g if create_graph else g.detach()


def not_implemented(*args):
    raise NotImplementedError()


def crashes(*args):
    return [][0]


# ----------------------------------------------------------------------------- exercise 1: wrong BPDA gradients
class Plain(torch.autograd.Function):
    """The quantiser with torch.round's own derivative, zero: the defence's gradient, not the attacker's."""

    @staticmethod
    def forward(ctx, x, levels):
        return defenses.quantize(x, levels)

    @staticmethod
    def backward(ctx, grad_output):
        return torch.zeros_like(grad_output), None


def at_q(model, x, y, levels, **options):
    return _grad(model, defenses.quantize(x, levels), y, **options)


def bpda_with_backward(model, x, y, levels):
    x = x.detach().requires_grad_(True)
    F.cross_entropy(model(defenses.StraightThrough.apply(x, levels)), y, reduction="sum").backward()
    return x.grad.detach()


def bpda_changes_the_model(model, x, y, levels):
    g = at_q(model, x, y, levels)
    with torch.no_grad():
        model[1].weight.mul_(2)
    return g


def bpda_right_for_six_images_only(model, x, y, levels):
    """Right on a batch of 6, rescaled on any other: an image's gradient depends on the batch's size."""
    return at_q(model, x, y, levels) * (6 / len(y))


BPDA_MISTAKES = [
    (lambda m, x, y, l: _grad(lambda v: m(Plain.apply(v, l)), x, y), "all zeros"),
    (lambda m, x, y, l: _grad(m, x, y), "without the quantiser"),
    (lambda m, x, y, l: at_q(m, x, y, l, reduction="mean"), "averaged over the batch"),
    (lambda m, x, y, l: at_q(m, x, y, l).sign(), "the sign of the gradient"),
    (lambda m, x, y, l: -at_q(m, x, y, l), "opposite direction"),
    (lambda m, x, y, l: _grad(m, torch.round(x * l) / l, y), "steps, i.e."),
    (lambda m, x, y, l: _grad(m, torch.floor(x * (l - 1)) / (l - 1), y), "rounds down"),
    (lambda m, x, y, l: at_q(m, x, y, l, create_graph=True), "still requires grad"),
    (lambda m, x, y, l: at_q(m, x, y, l).flatten(1), "shape"),
    (lambda m, x, y, l: torch.full_like(x, float("nan")), "NaN"),
    (lambda m, x, y, l: None, "returned None"),
    (bpda_with_backward, "parameter gradients"),
    (bpda_changes_the_model, "changed the model's weights"),
    (bpda_right_for_six_images_only, "other images in the batch"),
    (lambda m, x, y, l: at_q(m, x, y, l) + 0.01, "differs from the model's gradient at quantize"),
    (not_implemented, "not implemented yet"),
    (crashes, "IndexError"),
]


def test_the_bpda_reference_is_the_gradient_at_the_quantised_image():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 3))
    x, y = torch.rand(4, 1, 2, 4), torch.tensor([0, 1, 2, 0])
    want = _grad(model, defenses.quantize(x, 5), y)
    assert torch.allclose(defenses.bpda_gradient(model, x, y, 5), want)


def test_bpda_check_passes_the_reference(capsys):
    assert check_bpda_gradient(defenses.bpda_gradient) is True
    assert capsys.readouterr().out.startswith("✅ check_bpda_gradient: passed")


def test_bpda_check_accepts_a_non_leaf_or_double_gradient(capsys):
    assert check_bpda_gradient(lambda m, x, y, l: defenses.bpda_gradient(m, x, y, l) * 1.0) is True
    assert check_bpda_gradient(lambda m, x, y, l: defenses.bpda_gradient(m, x, y, l).double()) is True


@pytest.mark.parametrize("broken, hint", BPDA_MISTAKES, ids=[hint for _, hint in BPDA_MISTAKES])
def test_bpda_check_names_each_mistake(broken, hint, capsys):
    assert check_bpda_gradient(broken) is False
    out = capsys.readouterr().out
    assert out.startswith("❌ check_bpda_gradient") and hint in out, out


# ----------------------------------------------------------------------------- exercise 2: wrong EOT gradients
def eot_of_mean_logits(model, x, y, samples):
    x = x.detach().requires_grad_(True)
    logits = sum(model(x) for _ in range(samples)) / samples
    (g,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x)
    return g


def eot_of_mean_probabilities(model, x, y, samples):
    x = x.detach().requires_grad_(True)
    probs = sum(F.softmax(model(x), dim=1) for _ in range(samples)) / samples
    (g,) = torch.autograd.grad(F.nll_loss(probs.log(), y, reduction="sum"), x)
    return g


def eot_with_backward(model, x, y, samples):
    total = torch.zeros_like(x)
    for _ in range(samples):
        xs = x.detach().requires_grad_(True)
        F.cross_entropy(model(xs), y, reduction="sum").backward()
        total += xs.grad
    return total / samples


def eot_changes_the_model(model, x, y, samples):
    g = eot_gradient(model, x, y, samples)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    return g


EOT_MISTAKES = [
    (lambda m, x, y, s: eot_gradient(m, x, y, s) * s, "you summed the draws"),
    (lambda m, x, y, s: eot_gradient(m, x, y, 1), "only one draw was used"),
    (lambda m, x, y, s: sum(_grad(m, x, y).sign() for _ in range(s)) / s, "averaged the signs"),
    (lambda m, x, y, s: eot_gradient(m, x, y, s).sign(), "sign of the averaged gradient"),
    (eot_of_mean_logits, "averaged the logits"),
    (eot_of_mean_probabilities, "averaged the probabilities"),
    (lambda m, x, y, s: sum(_grad(m, x, y, "mean") for _ in range(s)) / s, "averaged over the batch"),
    (lambda m, x, y, s: eot_gradient(m, x, y, min(s, 2)), "EOT needs one forward/backward per sample"),
    (lambda m, x, y, s: sum(_grad(m, x, y, create_graph=True) for _ in range(s)) / s, "still requires grad"),
    (lambda m, x, y, s: torch.full_like(x, float("nan")), "NaN"),
    (eot_with_backward, "parameter gradients"),
    (eot_changes_the_model, "changed the model's weights"),
    (lambda m, x, y, s: eot_gradient(m, x, y, s) + 0.01, "expected the mean of the two draws' gradients"),
    (not_implemented, "not implemented yet"),
    (crashes, "IndexError"),
]


def test_eot_check_passes_the_reference(capsys):
    assert check_eot_gradient(eot_gradient) is True
    assert capsys.readouterr().out.startswith("✅ check_eot_gradient: passed")


def test_eot_check_accepts_extra_forward_passes(capsys):
    """A forward pass more than `samples` (say, for the predictions) is no mistake."""
    def with_predictions(model, x, y, samples):
        with torch.no_grad():
            model(x).argmax(1)
        return eot_gradient(model, x, y, samples)

    assert check_eot_gradient(with_predictions) is True


@pytest.mark.parametrize("broken, hint", EOT_MISTAKES, ids=[hint for _, hint in EOT_MISTAKES])
def test_eot_check_names_each_mistake(broken, hint, capsys):
    assert check_eot_gradient(broken) is False
    out = capsys.readouterr().out
    assert out.startswith("❌ check_eot_gradient") and hint in out, out


# ----------------------------------------------------------------------------- through the grader's proxies
STUDENT = '''
import torch
import torch.nn.functional as F
from course_utils.defenses import quantize

class StraightThroughQuantize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, levels):
        return quantize(x, levels)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, None

def bpda_gradient(model, x, y, levels):
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(StraightThroughQuantize.apply(x, levels)), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad.detach()

def bpda_plain(model, x, y, levels):  # the defence's own gradient: torch.round's, zero
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(quantize(x, levels)), y, reduction="sum"), x)
    return grad

def eot_gradient(model, x, y, samples):
    total = torch.zeros_like(x)
    for _ in range(samples):
        xs = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(xs), y, reduction="sum"), xs)
        total += grad
    return total / samples

def eot_one_draw(model, x, y, samples):
    return eot_gradient(model, x, y, 1)

def eot_two_draws(model, x, y, samples):  # right on this model, but fewer passes than samples
    return eot_gradient(model, x, y, min(samples, 2))
'''


def test_the_checks_run_on_the_graders_proxies(tmp_path, capsys):
    """The grader calls the student's functions in another process: the autograd Function travels by value with
    them, and the forward passes the worker makes are counted in the checker (the check model's buffer)."""
    import linecache

    from course_utils.classroom.remote import Worker, dump_functions

    names = ("bpda_gradient", "bpda_plain", "eot_gradient", "eot_one_draw", "eot_two_draws")
    namespace = {"__name__": "__main__"}  # as a notebook cell runs, so that cloudpickle saves by value
    linecache.cache["<cell>"] = (len(STUDENT), None, STUDENT.splitlines(True), "<cell>")
    exec(compile(STUDENT, "<cell>", "exec"), namespace)
    dump_functions(tmp_path / "functions.pkl", {name: namespace[name] for name in names})
    with Worker(tmp_path / "functions.pkl", timeout=60) as worker:
        assert check_bpda_gradient(worker.function("bpda_gradient")) is True
        assert check_bpda_gradient(worker.function("bpda_plain")) is False
        assert check_eot_gradient(worker.function("eot_gradient")) is True
        assert check_eot_gradient(worker.function("eot_one_draw")) is False
        assert check_eot_gradient(worker.function("eot_two_draws")) is False
    out = capsys.readouterr().out
    assert "✅ check_bpda_gradient" in out and "all zeros" in out, out
    assert "✅ check_eot_gradient" in out and "only one draw was used" in out, out
    assert "EOT needs one forward/backward per sample" in out, out
