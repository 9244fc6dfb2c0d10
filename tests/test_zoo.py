"""The course's model recipes: validated, named, trained once and reloaded, monitored per epoch."""
import pytest
import torch

from course_utils import attacks
from course_utils.config import get_profile
from course_utils.zoo import (Recipe, baseline_recipe, monitor_split, standard_model, train_from_config, trained_model,
                              training_config)


def test_recipes_reject_what_cannot_be_trained():
    with pytest.raises(ValueError, match="method"):
        Recipe("trades", 0.1, 1)
    with pytest.raises(ValueError, match="eps"):
        Recipe("pgd", 0.0, 1)
    with pytest.raises(ValueError, match="eps"):
        Recipe("pgd", 8, 1)  # ε in 0-255 units instead of [0, 1]
    with pytest.raises(ValueError, match="one step"):
        Recipe("fgsm", 0.1, 1, steps=3)
    with pytest.raises(ValueError, match="monitor"):
        Recipe("pgd", 0.1, 1, early_stop=True, monitor=False)


def test_default_step_sizes_follow_the_papers():
    """FGSM: α = ε; Wong et al.'s fast training: α = 1.25ε; Madry et al.'s PGD-k: α = 2.5ε/k."""
    assert Recipe("fgsm", 0.3, 1).step_size == pytest.approx(0.3)
    assert Recipe("fgsm_rs", 0.3, 1).step_size == pytest.approx(0.375)
    assert Recipe("pgd", 0.3, 1, steps=10).step_size == pytest.approx(0.075)
    assert Recipe("pgd", 0.3, 1, steps=10, alpha=0.01).step_size == 0.01
    assert Recipe("pgd", 0.1, 1, steps=7).name == "small_cnn_pgd7_eps0.1"
    assert Recipe("fgsm", 0.3, 1, early_stop=True).name == "small_cnn_fgsm_eps0.3_es"


def test_fgsm_recipe_attack_is_fgsm(trained_cnn, eval_batch):
    """Oracle: one step of size ε from x0 is exactly the FGSM image."""
    x, y = eval_batch[0][:50], eval_batch[1][:50]
    x_adv = Recipe("fgsm", 0.2, 1).training_attack(0.2)(trained_cnn, x, y)
    assert torch.allclose(x_adv, attacks.fgsm(trained_cnn, x, y, 0.2))
    # At a smaller (ramped) ε the step shrinks with it and the result stays in that smaller ball.
    x_small = Recipe("fgsm_rs", 0.2, 1).training_attack(0.05)(trained_cnn, x, y)
    assert (x_small - x).abs().max() <= 0.05 + 1e-6
    assert Recipe("standard", 0.1, 1).training_attack(0.1) is None


def test_monitor_split_is_disjoint_from_the_reported_digits(mnist):
    _, _, x_test, y_test = mnist
    profile = get_profile("fast")
    x_val, _ = monitor_split(x_test, y_test, profile)
    assert len(x_val) == profile.monitor_size
    assert torch.equal(x_val, x_test[len(y_test) - profile.monitor_size:])
    assert len(y_test) - profile.monitor_size >= profile.eval_size
    with pytest.raises(ValueError, match="overlap"):
        monitor_split(x_test, y_test, profile.replace(monitor_size=700))


def test_trained_model_records_the_monitor_and_is_reloaded_not_retrained(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path))
    x_train, y_train, x_test, y_test = mnist
    profile = get_profile("fast").replace(n_train=300, batch_size=100, monitor_size=40, pgd_steps=2)
    x_val, y_val = monitor_split(x_test, y_test, profile)
    recipe = Recipe("fgsm", 0.1, 2, model="linear", ramp=0.5)
    model, history = trained_model(recipe, profile, x_train[:300], y_train[:300], x_val, y_val, "cpu", progress=False)
    assert [r["epoch"] for r in history] == [1, 2]
    assert {"clean_acc", "fgsm_acc", "pgd_acc"} <= set(history[0])
    assert all(0 <= r["pgd_acc"] <= r["clean_acc"] <= 1 for r in history)
    files = list(tmp_path.glob("*.pt"))
    assert [f.name for f in files] == ["linear_fgsm_eps0.1_fast_s0.pt"]
    mtime = files[0].stat().st_mtime_ns
    again, history_again = trained_model(recipe, profile, x_train[:300], y_train[:300], x_val, y_val, "cpu", progress=False)
    assert files[0].stat().st_mtime_ns == mtime, "a matching cache must be loaded, not retrained"
    assert history_again == history
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    with pytest.raises(ValueError, match="training images"):
        trained_model(recipe, profile, x_train[:200], y_train[:200], x_val, y_val, "cpu", progress=False)


def test_config_changes_with_everything_that_changes_the_weights():
    profile = get_profile("fast")
    base = training_config(Recipe("pgd", 0.1, 10, steps=7), profile, "abc", 0)
    for other in (Recipe("pgd", 0.1, 10, steps=5), Recipe("pgd", 0.2, 10, steps=7), Recipe("pgd", 0.1, 9, steps=7),
                  Recipe("pgd", 0.1, 10, steps=7, random_start=True), Recipe("pgd", 0.1, 10, steps=7, ramp=0.3)):
        assert training_config(other, profile, "abc", 0) != base
    assert training_config(Recipe("pgd", 0.1, 10, steps=7), profile, "abc", 1) != base
    assert training_config(Recipe("pgd", 0.1, 10, steps=7), profile, "abd", 0) != base


def test_standard_model_uses_the_profiles_architecture_unless_told(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path))
    x_train, y_train, _, _ = mnist
    profile = get_profile("fast").replace(n_train=200, epochs=1, batch_size=100, standard_arch="linear")
    model, _ = standard_model(profile, x_train[:200], y_train[:200], "cpu", progress=False)
    assert isinstance(model, torch.nn.Sequential) and len(list(model.parameters())) == 2  # one linear layer
    standard_model(profile, x_train[:200], y_train[:200], "cpu", model="mlp", progress=False)
    assert sorted(f.name for f in tmp_path.glob("*.pt")) == ["linear_standard_eps0.1_fast_s0.pt",
                                                             "mlp_standard_eps0.1_fast_s0.pt"]
    # The two profiles train different networks, and the architecture is part of the cache key.
    assert get_profile("fast").standard_arch == "small_cnn" and get_profile("full").standard_arch == "mnist_cnn"
    assert training_config(baseline_recipe(profile), profile, "abc", 0)["model"] == "linear"


def test_the_standard_model_is_the_baseline_recipe_through_the_one_path(mnist, tmp_path, monkeypatch):
    """standard_model is trained_model(baseline_recipe): the same file, the same weights, whichever is asked first."""
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path))
    x_train, y_train, _, _ = mnist
    profile = get_profile("fast").replace(n_train=200, epochs=1, batch_size=100, standard_arch="linear")
    model, _ = standard_model(profile, x_train[:200], y_train[:200], "cpu", progress=False)
    same, _ = trained_model(baseline_recipe(profile), profile, x_train[:200], y_train[:200], device="cpu", progress=False)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), same.state_dict().values()))


class _Recorder(dict):
    """A config that remembers which keys were read, at any depth."""

    def __init__(self, data, read, prefix=""):
        super().__init__({k: _Recorder(v, read, f"{prefix}{k}.") if isinstance(v, dict) else v for k, v in data.items()})
        self.read, self.prefix = read, prefix

    def __getitem__(self, key):
        self.read.add(self.prefix + key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.read.add(self.prefix + key)
        return super().get(key, default)


def _leaves(config, prefix=""):
    for k, v in config.items():
        yield from _leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [prefix + k]


@pytest.mark.parametrize("recipe", [
    Recipe("pgd", 0.1, 1, steps=2, ramp=0.5, early_stop=True, model="linear", lr_peak=5e-3, alpha=0.03, random_start=True),
    Recipe("threats", 0, 1, steps=1, threats=(("noise", 0.3),), monitor=False, model="linear"),
    Recipe("ibp", 0.1, 1, ramp=0.5, monitor=False, model="linear", lr_peak=5e-3),
])
def test_training_reads_exactly_the_cache_key(mnist, recipe):
    """Every setting in the config is read by training, and training reads nothing else: the cache key
    and what is trained cannot drift apart (a setting outside the config would be a KeyError here)."""
    import json

    x_train, y_train, x_test, y_test = mnist
    profile = get_profile("fast").replace(n_train=200, batch_size=100, monitor_size=40, pgd_steps=1)
    x_val, y_val = monitor_split(x_test, y_test, profile)
    from course_utils.zoo import data_fingerprint

    config = json.loads(json.dumps(training_config(recipe, profile, data_fingerprint(x_train[:200], y_train[:200]), 3)))
    read: set[str] = set()
    train_from_config(_Recorder(config, read), x_train[:200], y_train[:200], x_val, y_val, "cpu", progress=False)
    recipe_keys = {f"recipe.{k}" for k in config["recipe"]}
    ignored = ({"recipe"} | set(_leaves(config)) - recipe_keys) - read
    assert not ignored, f"settings in the cache key that training ignores: {ignored}"
    # The recipe is read as a whole and rebuilt (`recipe_from_config`); each of its fields is used by training.
    with pytest.raises(ValueError, match="not the data"):
        train_from_config(config, x_train[:200], 1 - y_train[:200].clamp(max=1), x_val, y_val, "cpu", progress=False)


# ----------------------------------------------------------------------------- training against other threats (07, 08)
def test_threat_recipes_are_validated_and_named():
    r = Recipe("threats", 0, 3, steps=5, threats=(("l2", 1.5), ("rotation", 10.0)), monitor=False)
    assert r.name == "small_cnn_l21.5+rotation10_k5"
    with pytest.raises(ValueError, match="threats"):
        Recipe("threats", 0, 3, monitor=False)  # no threats given
    with pytest.raises(ValueError, match="threats"):
        Recipe("pgd", 0.1, 3, threats=(("l2", 1.0),))  # only method 'threats' takes them
    with pytest.raises(ValueError, match="name in"):
        Recipe("threats", 0, 3, threats=(("l7", 1.0),), monitor=False)
    with pytest.raises(ValueError, match="monitor"):
        Recipe("threats", 0, 3, threats=(("l2", 1.0),))
    with pytest.raises(ValueError, match="threat_schedule"):
        r.training_attack(0.1)


def test_threat_schedule_takes_the_threats_in_turn_and_follows_the_ramp():
    from course_utils.zoo import threat_schedule

    r = Recipe("threats", 0, 1, steps=2, threats=(("noise", 0.2), ("linf", 0.1)), ramp=0.5, monitor=False)
    schedule = threat_schedule(r, torch.Generator().manual_seed(0))
    docs = [schedule(t).__doc__.split(":")[0] for t in (0.5, 0.6, 0.7, 0.8)]
    assert docs == ["noise attack of size 0.2", "linf attack of size 0.1", "noise attack of size 0.2", "linf attack of size 0.1"]
    halfway = threat_schedule(r)(0.25)  # a quarter of training = half of the ramp: half the size
    assert halfway.__doc__.startswith("noise attack of size 0.1")


def test_the_config_holds_the_whole_recipe_and_the_monitor_only_when_monitored():
    profile = get_profile("fast")
    cfg = training_config(Recipe("threats", 0, 1, threats=(("l2", 1.0),), monitor=False), profile, "d", 0)
    assert cfg["recipe"]["threats"] == (("l2", 1.0),) and "monitor" not in cfg
    monitored = training_config(Recipe("pgd", 0.1, 10, steps=7), profile, "d", 0)
    assert monitored["monitor"] == {"size": profile.monitor_size, "steps": profile.pgd_steps,
                                    "step_multiplier": profile.step_multiplier, "default_eps": profile.eps}


def test_training_on_noise_makes_a_model_more_noise_robust(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path))
    from course_utils.evaluate import accuracy
    from course_utils.attacks.threats import gaussian_noise

    x_train, y_train, x_test, y_test = mnist
    profile = get_profile("fast").replace(n_train=1000, batch_size=100, monitor_size=40)
    x_val, y_val = monitor_split(x_test, y_test, profile)
    xt, yt = x_train[:1000], y_train[:1000]
    common = dict(epochs=3, model="linear", monitor=False)
    clean, _ = trained_model(Recipe("standard", 0.1, **common), profile, xt, yt, x_val, y_val, "cpu", progress=False)
    noisy, _ = trained_model(Recipe("threats", 0, threats=(("noise", 0.6),), **common), profile, xt, yt, x_val, y_val,
                             "cpu", progress=False)
    x_noisy = gaussian_noise(x_test[:400], 0.6, torch.Generator().manual_seed(1))
    assert accuracy(noisy, x_noisy, y_test[:400]) > accuracy(clean, x_noisy, y_test[:400]) + 0.05


def test_cyclic_recipes_are_named_configured_and_validated():
    from course_utils.zoo import efficient_pgd

    r = efficient_pgd(0.1)
    assert (r.method, r.steps, r.random_start, r.lr_peak, r.epochs) == ("pgd", 3, True, 5e-3, 15)
    assert r.name == "small_cnn_pgd3_eps0.1_cyc0.005_e15"
    profile = get_profile("fast")
    assert training_config(r, profile, "d", 0)["recipe"]["lr_peak"] == 5e-3
    assert training_config(Recipe("pgd", 0.1, 10, steps=7), profile, "d", 0)["recipe"]["lr_peak"] is None
    with pytest.raises(ValueError, match="lr_peak"):
        Recipe("pgd", 0.1, 1, lr_peak=-1.0)


def test_cyclic_recipe_trains_with_the_cyclic_schedule(mnist, tmp_path, monkeypatch):
    """The learning rate ends at 0: a recipe whose peak is tiny barely moves the weights, a larger one does."""
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path))
    x_train, y_train, x_test, y_test = mnist
    profile = get_profile("fast").replace(n_train=300, batch_size=100, monitor_size=40)
    x_val, y_val = monitor_split(x_test, y_test, profile)
    xt, yt = x_train[:300], y_train[:300]
    from course_utils.evaluate import accuracy

    accs = {}
    for peak in (1e-7, 5e-2):
        model, _ = trained_model(Recipe("standard", 0.1, 2, model="linear", monitor=False, lr_peak=peak), profile,
                                 xt, yt, x_val, y_val, "cpu", progress=False)
        accs[peak] = accuracy(model, x_test[:300], y_test[:300])
    assert accs[1e-7] < 0.3 < 0.6 < accs[5e-2]


def test_a_cyclic_threat_recipe_has_its_own_file_name():
    plain = Recipe("threats", 0, 3, steps=5, threats=(("l2", 1.5),), monitor=False)
    cyclic = Recipe("threats", 0, 3, steps=5, threats=(("l2", 1.5),), monitor=False, lr_peak=5e-3)
    assert cyclic.name == plain.name + "_cyc0.005_e3"
