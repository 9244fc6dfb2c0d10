"""Profiles and seeding."""
import dataclasses
import platform
import random

import numpy as np
import pytest
import torch

from course_utils.config import PROFILES, get_profile, seed_everything


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


_FAULTS_SCRIPT = """
import resource, torch
from course_utils.config import get_device, tune_cpu_allocator
get_device()
for _ in range(3):
    torch.ones(16 * 2**20).sum()  # the heap grows to its working size here
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(16 * 2**20).sum()  # 64 MB allocated, touched and freed, as an activation buffer is
print(tune_cpu_allocator(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(env_extra):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "COURSE_DEFAULT_MALLOC"}
    out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT], env={**env, **env_extra},
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_tuned_allocator_reuses_freed_memory_instead_of_faulting_it_in_again():
    # Oracle: the kernel's count of minor page faults. Untuned, each 64 MB buffer is a fresh mmap
    # (all its pages faulted in every round); tuned, pages come back for reuse once the heap has
    # settled (a few rounds; then none fault at all).
    import resource

    pages_per_round = 64 * 2**20 // resource.getpagesize()
    tuned, tuned_faults = _page_faults({})
    untuned, untuned_faults = _page_faults({"COURSE_DEFAULT_MALLOC": "1"})
    assert tuned and not untuned
    assert untuned_faults > 20 * pages_per_round * 0.9, untuned_faults
    assert tuned_faults <= 5 * pages_per_round, (tuned_faults, untuned_faults)


def test_allocator_tuning_is_skipped_where_the_user_chose(monkeypatch):
    import course_utils.config as setup

    for name, value in [("COURSE_DEFAULT_MALLOC", "1"), ("MALLOC_TRIM_THRESHOLD_", "100000"),
                        ("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")]:
        monkeypatch.setenv(name, value)
        assert setup._set_malloc_thresholds() is False, name
        monkeypatch.delenv(name)
