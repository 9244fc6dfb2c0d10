"""Profiles and seeding."""
import dataclasses
import random

import numpy as np
import pytest
import torch

from course_utils.setup import PROFILES, get_profile, seed_everything


def test_auto_is_fast_on_cpu_and_full_on_cuda(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    assert get_profile("auto", device=torch.device("cpu")).name == "fast"
    assert get_profile("auto", device=torch.device("cuda")).name == "full"
    if not torch.cuda.is_available():
        assert get_profile().name == "fast"


def test_env_var_replaces_auto_but_not_an_explicit_name(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "full")
    assert get_profile("auto", device=torch.device("cpu")).name == "full"
    assert get_profile("fast").name == "fast"
    monkeypatch.setenv("COURSE_PROFILE", " Fast ")
    assert get_profile("auto", device=torch.device("cuda")).name == "fast"


@pytest.mark.parametrize("name", ["medium", "", 3, None])
def test_unknown_profile_raises(name):
    with pytest.raises(ValueError, match="profile"):
        get_profile(name)


def test_profiles_are_frozen_and_replace_copies():
    fast = PROFILES["fast"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.eps = 0.3
    changed = fast.replace(eps=0.3)
    assert changed.eps == 0.3 and fast.eps == 0.1 and changed.name == fast.name


def test_alpha_is_step_multiplier_eps_over_steps():
    p = PROFILES["fast"]
    assert p.alpha(0.1) == pytest.approx(2.5 * 0.1 / 10)
    assert p.alpha(0.2, steps=40) == pytest.approx(2.5 * 0.2 / 40)


def test_fast_profile_fits_the_embedded_sample():
    p = PROFILES["fast"]
    assert p.dataset == "sample" and p.n_train <= 4000 and p.n_test <= 1000 and p.eval_size <= p.n_test
    assert 0.0 in p.eps_list and list(p.eps_list) == sorted(p.eps_list)


def test_seed_everything_is_deterministic():
    """Oracle: the same seed replays Python, NumPy, torch and the returned generator; another seed does not."""
    def draw(seed):
        g = seed_everything(seed)
        return random.random(), np.random.rand(), torch.rand(3).tolist(), torch.rand(3, generator=g).tolist()

    assert draw(123) == draw(123)
    assert draw(123) != draw(124)


@pytest.mark.parametrize("seed", [-1, 1.5, "1"])
def test_seed_everything_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed"):
        seed_everything(seed)
