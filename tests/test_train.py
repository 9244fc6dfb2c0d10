"""Training loops: they learn, they record, and adversarial training trains on the attack's output."""
import pytest
import torch

from course_utils.evaluate import accuracy
from course_utils.models import linear
from course_utils.train import Schedule, fit


@pytest.fixture(scope="module")
def small_split(mnist):
    x_train, y_train, x_test, y_test = mnist
    return x_train[:1000], y_train[:1000], x_test[:300], y_test[:300]


def _fit(model, x, y, **kwargs):
    kwargs.setdefault("epochs", 2)
    kwargs.setdefault("lr", 1e-2)
    return fit(model, x, y, batch_size=50, generator=torch.Generator().manual_seed(0),
               progress=False, **kwargs)


def test_fit_learns_a_small_problem(small_split):
    """Oracle: chance is 10 %; logistic regression on MNIST reaches well above it, and the loss falls."""
    x, y, xt, yt = small_split
    torch.manual_seed(0)
    model = linear()
    before = accuracy(model, xt, yt)
    history = _fit(model, x, y, epochs=3)
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["train_acc"] > 0.8
    assert accuracy(model, xt, yt) > 0.7 > before
    assert not model.training


def test_history_has_one_record_per_epoch_with_eval_keys(small_split):
    """Records are numbered 1..E with loss/train_acc/seconds, plus what eval_fn returned (as floats)."""
    x, y, xt, yt = small_split
    seen_modes = []

    def eval_fn(model):
        seen_modes.append(model.training)
        return {"val_acc": torch.tensor(accuracy(model, xt, yt)), "answer": 42}

    torch.manual_seed(0)
    history = _fit(linear(), x, y, epochs=3, eval_fn=eval_fn)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    for record in history:
        assert {"loss", "train_acc", "seconds", "val_acc", "answer"} <= set(record)
        assert 0 <= record["train_acc"] <= 1 and record["loss"] > 0 and record["seconds"] > 0
        assert isinstance(record["val_acc"], float) and record["answer"] == 42.0
    assert seen_modes == [False, False, False]  # evaluated in eval mode, once per epoch


def test_zero_epochs_changes_nothing(small_split):
    x, y, _, _ = small_split
    torch.manual_seed(0)
    model = linear()
    before = [p.detach().clone() for p in model.parameters()]
    assert _fit(model, x, y, epochs=0) == []
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_adversarial_fit_trains_on_the_attack_output(small_split):
    """A counting attack is called once per batch; an attack that blanks the images leaves nothing to learn."""
    x, y, _, _ = small_split
    calls = []

    def blank(model, xb, yb):
        calls.append(len(xb))
        return torch.zeros_like(xb)

    torch.manual_seed(0)
    history = _fit(linear(), x, y, epochs=2, attack=blank)
    assert len(calls) == 2 * 20 and sum(calls) == 2 * len(y)  # 1000 images in batches of 50
    # On blank images the best a model can do is predict the most frequent class.
    top_class_share = torch.bincount(y).max().item() / len(y)
    assert history[-1]["train_acc"] <= top_class_share + 0.02


def test_adversarial_fit_with_clean_weight_also_learns_from_clean_images(small_split):
    """clean_weight=0.5 mixes in the clean loss, so even a blanking attack leaves something to learn."""
    x, y, xt, yt = small_split
    torch.manual_seed(0)
    model = linear()
    _fit(model, x, y, epochs=2, attack=lambda m, xb, yb: torch.zeros_like(xb), clean_weight=0.5)
    assert accuracy(model, xt, yt) > 0.6


@pytest.mark.parametrize("epochs", [-1, 1.5, "2", None])
def test_bad_epochs_raise(small_split, epochs):
    x, y, _, _ = small_split
    with pytest.raises(ValueError, match="epochs"):
        fit(linear(), x, y, epochs=epochs, progress=False)


def test_bad_arguments_raise(small_split):
    x, y, _, _ = small_split
    with pytest.raises(ValueError, match="length"):
        fit(linear(), x, y[:-1], epochs=1, progress=False)
    with pytest.raises(ValueError, match="clean_weight"):
        fit(linear(), x, y, epochs=1, clean_weight=1.5, progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        fit(linear(), x, y, epochs=1, optimizer="adagrad", progress=False)


# ----------------------------------------------------------------------------- schedules
def test_eps_ramp_rises_linearly_then_stays():
    """Closed form: ε·t/ramp until t = ramp, then ε; never 0, so the first batch's attack is valid."""
    from course_utils.train import eps_ramp

    ramp = eps_ramp(0.3, 0.5)
    assert ramp(0.25) == pytest.approx(0.15)
    assert ramp(0.5) == pytest.approx(0.3) and ramp(0.9) == pytest.approx(0.3)
    assert 0 < ramp(0.0) < 0.001
    assert eps_ramp(0.3, 0.0)(0.0) == 0.3
    with pytest.raises(ValueError, match="ramp"):
        eps_ramp(0.3, 1.5)


def test_cyclic_lr_is_a_triangle():
    from course_utils.train import cyclic_lr

    lr = cyclic_lr(0.01, warmup=0.4)
    assert lr(0.0) == 0.0
    assert lr(0.2) == pytest.approx(0.005) and lr(0.4) == pytest.approx(0.01)
    assert lr(0.7) == pytest.approx(0.005)
    with pytest.raises(ValueError):
        cyclic_lr(0.01, warmup=1.0)


def test_schedules_see_the_progress_of_training(small_split):
    """Every mini-batch asks the schedules once, with t = batches done / all batches, in order."""
    x, y, _, _ = small_split
    seen_attack, seen_lr = [], []

    def attack_at(t):
        seen_attack.append(t)
        return lambda m, xb, yb: xb

    def lr_at(t):
        seen_lr.append(t)
        return 1e-2

    _fit(linear(), x[:200], y[:200], epochs=2, attack=Schedule(attack_at), lr=lr_at)  # 4 batches per epoch
    assert seen_attack == seen_lr == [i / 8 for i in range(8)]


def test_a_learning_rate_schedule_sets_the_optimizer_rate(small_split):
    """A learning rate of 0 throughout must leave the weights exactly where they were."""
    x, y, _, _ = small_split
    model = linear()
    before = [p.detach().clone() for p in model.parameters()]
    _fit(model, x[:200], y[:200], epochs=1, lr=lambda t: 0.0, optimizer="sgd")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_keep_best_restores_the_best_epochs_weights(small_split):
    """The eval_fn below scores epoch 2 highest; after training the model must hold epoch 2's weights."""
    x, y, _, _ = small_split
    snapshots, scores = [], iter([0.1, 0.9, 0.5])

    def eval_fn(model):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"pgd_acc": next(scores)}

    model = linear()
    _fit(model, x, y, epochs=3, eval_fn=eval_fn, keep_best="pgd_acc")
    assert all(torch.equal(v, snapshots[1][k]) for k, v in model.state_dict().items())
    assert not all(torch.equal(v, snapshots[2][k]) for k, v in model.state_dict().items())


def test_schedule_arguments_are_checked(small_split):
    x, y, _, _ = small_split
    with pytest.raises(TypeError):  # one way to give each: `attack` (fixed or a Schedule), `lr` (number or function)
        _fit(linear(), x, y, attack_at=lambda t: None)
    with pytest.raises(ValueError, match="eval_fn"):
        _fit(linear(), x, y, keep_best="pgd_acc")
    with pytest.raises(ValueError, match="reported only"):
        _fit(linear(), x, y, eval_fn=lambda m: {"clean_acc": 1.0}, keep_best="pgd_acc")
