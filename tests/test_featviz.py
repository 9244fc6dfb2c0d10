"""Feature visualisation: objectives, regularisers, the ascent itself, and the judges that measure its pictures."""
import pytest
import torch
from torch import nn

from course_utils import featviz as fv
from course_utils.checks_featviz import check_maximise
from course_utils.models import small_cnn


def linear_logit(seed=0, d=16):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([w, -w]))
        model[1].bias.zero_()
    return model, w


def test_plain_ascent_reaches_the_closed_form_optimum_of_a_linear_logit():
    # max_{x ∈ [0,1]^d} w·x is attained at x_j = 1[w_j > 0].
    model, w = linear_logit()
    x = fv.visualize(model, fv.class_logit(0), n=3, settings=fv.Settings(steps=200, lr=0.3), shape=(1, 4, 4),
                     generator=torch.Generator().manual_seed(0))
    assert torch.allclose(x, (w > 0).float().view(1, 1, 4, 4).expand_as(x), atol=1e-4)


def test_adam_ascent_reaches_it_too_and_class_1_gives_the_opposite_image():
    model, w = linear_logit(1)
    x = fv.visualize(model, fv.class_logit(1), settings=fv.Settings(steps=300, lr=0.05, optimiser="adam"), shape=(1, 4, 4))
    assert torch.allclose(x[0, 0], (w < 0).float().view(4, 4), atol=1e-3)


def test_radius_keeps_the_image_within_l2_of_its_start():
    model, _ = linear_logit()
    s = fv.Settings(steps=50, lr=0.5, radius=0.7)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    x = fv.visualize(model, fv.class_logit(0), n=4, settings=s, shape=(1, 4, 4), generator=g1)
    start = (s.start[0] + s.start[1] * torch.randn((4, 1, 4, 4), generator=g2)).clamp(0, 1)
    assert (x - start).flatten(1).norm(dim=1).max() <= 0.7 + 1e-5
    assert x.min() >= 0 and x.max() <= 1


def test_the_model_is_untouched_and_its_mode_restored():
    torch.manual_seed(0)
    model = small_cnn().train()
    fv.visualize(model, fv.class_logit(3), settings=fv.Settings(steps=3), generator=torch.Generator().manual_seed(0))
    fv.visualize(model, fv.unit_activation(model[1], 2), settings=fv.REGULARISED.__class__(steps=3, param="fourier", jitter=1, tv=1.0))
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_ascent_raises_the_objective_of_a_cnn_for_every_parameterisation():
    torch.manual_seed(0)
    model = small_cnn().eval()
    objective = fv.class_logit(7)
    for settings in (fv.PLAIN, fv.Settings(jitter=2, degrees=10.0, scale=0.1), fv.Settings(param="fourier")):
        settings = fv.Settings(**{**settings.__dict__, "steps": 30})
        start = fv.visualize(model, objective, n=2, settings=fv.Settings(**{**settings.__dict__, "steps": 0}),
                             generator=torch.Generator().manual_seed(1))
        end = fv.visualize(model, objective, n=2, settings=settings, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            assert (objective(model, end) > objective(model, start)).all(), settings


def test_the_tv_penalty_buys_smoother_images():
    torch.manual_seed(0)
    model = small_cnn().eval()
    rough = fv.visualize(model, fv.class_logit(2), settings=fv.Settings(steps=30), generator=torch.Generator().manual_seed(0))
    smooth = fv.visualize(model, fv.class_logit(2), settings=fv.Settings(steps=30, tv=2.0), generator=torch.Generator().manual_seed(0))
    assert fv.total_variation(smooth) < 0.5 * fv.total_variation(rough)


def test_unit_activation_reads_the_hooked_layer():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x = torch.rand(5, 1, 2, 2)
    got = fv.unit_activation(model[2], 1)(model, x)
    assert torch.allclose(got, torch.relu(model[1](x.flatten(1)))[:, 1])
    with pytest.raises(ValueError, match="does not exist"):
        fv.unit_activation(model[2], 7)(model, x)
    with pytest.raises(ValueError, match="not used"):
        fv.unit_activation(nn.Linear(2, 2), 0)(model, x)


def test_total_variation_closed_form():
    x = torch.zeros(1, 1, 3, 3)
    x[..., :, 2] = 1.0  # one bright column: |Δw| is 1 on 3 of the 6 horizontal pairs, |Δh| is 0
    assert fv.total_variation(x).item() == pytest.approx(0.5)
    assert fv.total_variation(torch.full((2, 1, 5, 5), 0.3)).abs().max() == 0


def test_random_transform_is_the_identity_when_asked_for_nothing_and_shifts_by_whole_pixels():
    x = torch.rand(2, 1, 8, 8)
    assert fv.random_transform(x, 0, 0.0, 0.0) is x
    moved = fv.random_transform(x, 2, 0.0, 0.0, torch.Generator().manual_seed(0))
    assert moved.shape == x.shape and not torch.allclose(moved, x)


def test_realism_is_one_for_the_reference_itself_and_lower_for_noise():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(50, 1, 4, 4, generator=g)
    reference = real[:10] + 0.05 * torch.randn(10, 1, 4, 4, generator=g)
    assert fv.realism(reference, real, reference) == pytest.approx(1.0)
    assert fv.nearest_real_distance(real[:5], real).abs().max() == 0
    far = torch.rand(10, 1, 4, 4, generator=g).round()
    assert fv.realism(far, real, reference) < 0.5


@pytest.mark.parametrize("bad", [dict(param="wavelet"), dict(steps=-1), dict(lr=-0.1), dict(optimiser="sgd"),
                                 dict(radius=1.0, param="fourier"), dict(start=(1.2, 0.1))])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        fv.Settings(**bad)


def test_bad_class_and_n_are_refused():
    model, _ = linear_logit()
    with pytest.raises(ValueError):
        fv.class_logit(-1)
    with pytest.raises(ValueError, match="does not exist"):
        fv.visualize(model, fv.class_logit(5), settings=fv.Settings(steps=1), shape=(1, 4, 4))
    with pytest.raises(ValueError):
        fv.visualize(model, fv.class_logit(0), n=0, shape=(1, 4, 4))


# ----------------------------------------------------------------------------- the exercise's self-check
def reference_maximise(model, objective, x_start, steps, lr):
    x = x_start.detach().clone()
    for _ in range(steps):
        x.requires_grad_(True)
        (g,) = torch.autograd.grad(objective(model, x).sum(), x)
        x = (x.detach() + lr * g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)).clamp(0, 1)
    return x.detach()


def test_check_maximise_passes_the_reference(capsys):
    assert check_maximise(reference_maximise) is True
    assert "✅ check_maximise: passed" in capsys.readouterr().out


@pytest.mark.parametrize("mistake, hint", [
    ("descent", "minimises"),
    ("no_clamp", "[0, 1]"),
    ("backward", "parameter gradients"),
    ("unfinished", "not implemented"),
])
def test_check_maximise_names_each_mistake(mistake, hint, capsys):
    def broken(model, objective, x_start, steps, lr):
        if mistake == "unfinished":
            raise NotImplementedError
        x = x_start.detach().clone()
        for _ in range(steps):
            x.requires_grad_(True)
            score = objective(model, x).sum()
            if mistake == "backward":
                score.backward()
                g = x.grad
            else:
                (g,) = torch.autograd.grad(score, x)
            step = lr * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            x = x.detach() + (-step if mistake == "descent" else step)
            if mistake != "no_clamp":
                x = x.clamp(0, 1)
        return x.detach()

    assert check_maximise(broken) is False
    assert hint in capsys.readouterr().out


def test_nearest_digit_judge_ignores_ink_and_brightness():
    """Oracle by construction: a digit, the same digit brighter or fainter, and shifted in grey level,
    is still matched to itself; a blank image matches nothing in particular."""
    from course_utils.featviz import nearest_digit_labels, recognised_by_nearest_digit

    g = torch.Generator().manual_seed(0)
    real = (torch.rand(20, 1, 28, 28, generator=g) > 0.8).float()
    labels = torch.arange(20) % 10
    variants = torch.cat([real, 0.3 * real, (0.5 * real + 0.2).clamp(0, 1)])
    assert torch.equal(nearest_digit_labels(variants, real, labels), labels.repeat(3))
    assert recognised_by_nearest_digit(real, labels, real, labels).all()
    blank = torch.zeros(10, 1, 28, 28)
    assert nearest_digit_labels(blank, real, labels).unique().numel() == 1  # every blank image gets the same label
