"""The run profiles every notebook derives its sizes from, seeding, and the choice of device.

(Called `setup` before; `course_utils.setup` still imports, see `course_utils.MOVED`.)
"""
from __future__ import annotations

import ctypes
import dataclasses
import os
import platform
import random
from dataclasses import dataclass

import numpy as np
import torch


def get_device() -> torch.device:
    """The best device present: CUDA, then Apple's MPS, then the CPU.

    On a Linux CPU it also calls `tune_cpu_allocator` (once per process), which makes large-batch
    CPU passes up to 2.4× faster (batches of 64 a little); the notebooks all start with this call.
    """
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    tune_cpu_allocator()
    return torch.device("cpu")


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's <malloc.h>
_KEEP_BELOW = 2**30  # bytes: freed blocks up to this size stay in the process for reuse
_allocator_tuned: bool | None = None


def tune_cpu_allocator() -> bool:
    """Let glibc's malloc reuse freed memory instead of handing it back to the OS. True if in effect.

    A CPU forward and backward pass allocates activation buffers of a few to a hundred MB and frees
    them at the end of the step. By default glibc serves such blocks with fresh mmap pages and
    returns them on free, so every step pays the page faults of zeroing them again: on 2 cores that
    was up to half the time of a PGD step on the Kolter–Madry CNN (benchmarks/RESULTS.md). Raising the mmap and
    trim thresholds (both: raising only one turns off glibc's adaptive threshold and is slower) does
    what linking jemalloc or tcmalloc does in PyTorch's CPU tuning guide. The price: memory freed
    after the peak stays with the process until it exits.

    Does nothing, and returns False, off glibc (macOS, Windows, musl), when the user already chose
    (MALLOC_*_THRESHOLD_ variables or a preloaded allocator), or with COURSE_DEFAULT_MALLOC=1.
    """
    global _allocator_tuned
    if _allocator_tuned is None:
        _allocator_tuned = _set_malloc_thresholds()
    return _allocator_tuned


def _set_malloc_thresholds() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    chosen = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "COURSE_DEFAULT_MALLOC")
    if any(os.environ.get(name) for name in chosen) or "malloc" in os.environ.get("LD_PRELOAD", ""):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # Trim first: with only the mmap threshold raised, freed heap tops would still be trimmed.
    return bool(libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BELOW)) and bool(libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BELOW))


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator seeded the same way.

    The returned generator is what `data.batches` and the attacks' random starts
    take, so a notebook's randomness does not depend on the order cells ran in.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class Profile:
    """Every size a notebook uses. Units: ε and step sizes are in pixel units on [0, 1]."""

    name: str
    dataset: str  # "sample": the embedded 5,000-digit MNIST sample; "mnist": full MNIST
    n_train: int  # training images used (at most what the dataset has)
    n_test: int  # held-out images loaded
    eval_size: int  # held-out images that attacks are evaluated on (attacks are the slow part)
    standard_arch: str  # `models.build_model` name of the standard model of 00–03 (and 06's judge)
    epochs: int  # epochs for a standard (non-adversarial) model
    batch_size: int
    lr: float  # Adam learning rate
    eps: float  # the headline ℓ∞ budget of 00–02 (MNIST convention: 0.1)
    eps_list: tuple[float, ...]  # budgets for accuracy-vs-ε curves
    pgd_steps: int  # PGD iterations for evaluation
    pgd_restarts: int  # random restarts for the strongest evaluation
    step_multiplier: float  # α = step_multiplier · ε / steps (Madry et al. use ≈ 2.5)
    minimal_eps_size: int  # examples whose smallest flipping ε is searched (02)
    adv_epochs: int  # epochs of adversarial training (04–08)
    train_pgd_steps: int  # k of PGD-k adversarial training
    strong_steps: int  # PGD steps of the "strong" evaluation attack (run with pgd_restarts restarts)
    large_eps: float  # the MNIST budget of Madry et al. (0.3): where catastrophic overfitting and masking show
    eps_ramp: float  # fraction of adversarial training over which ε grows from 0 (needed at large_eps)
    masking_steps: tuple[int, ...]  # the k of the lecture's Figure 27.3 (05)
    masking_epochs: int  # epochs of each k ≥ 2 model of Figure 27.3 (k = 1 is 04's model, adv_epochs)
    monitor_size: int  # held-out digits checked after every training epoch (tail of the test split)
    viz_per_class: int  # feature-visualisation starts per class (06)
    threat_epochs: int  # epochs of each model trained against another threat or a mix, cyclic lr (07)
    threat_steps: int  # gradient steps of those models' training attacks
    robust_arch: str  # `models.build_model` name of the course's robust models (`zoo.robust_recipe`)
    robust_epochs: int  # epochs of every recipe compared in 04 and of the robust models (cyclic lr)
    sweep_epochs: int  # epochs of each model of 05's Figure 27.3 (cyclic lr)
    apgd_steps: int  # iterations of each APGD run of the strong evaluation (`strong_attack`)
    apgd_targets: int  # target classes of its APGD-T (AutoAttack: 9)
    apgd_restarts: int  # random restarts of each of its runs
    verify_digits: int  # digits verified exactly by the MILP (09)
    verify_seconds: float  # the MILP's time limit per digit (09)
    verify_epochs: int  # epochs of 09's small perceptrons (cyclic lr)
    smooth_digits: int  # digits certified by randomised smoothing (09)
    smooth_samples: int  # noisy copies per digit that estimate the smoothed classifier's top class probability (09)
    smooth_epochs: int  # epochs of each noise-trained base classifier of 09 (cyclic lr)
    defense_digits: int  # digits each defence of 10 is attacked on (the checklist audits the first half)
    eot_samples: int  # random draws per EOT step, and per digit when a randomised defence is evaluated (10)
    square_queries: int  # the Square attack's query budget per digit (10)

    def alpha(self, eps: float, steps: int | None = None) -> float:
        """PGD step size for budget `eps`: large enough to cross the ball, small enough to refine."""
        steps = self.pgd_steps if steps is None else steps
        return self.step_multiplier * eps / max(steps, 1)

    def strong_attack(self, eps: float, norm="inf", seed: int = 0):
        """The course's strong evaluation at budget `eps`: `apgd.StrongAttack` with this profile's budget.

        "Robust accuracy" in the notebooks always means accuracy under this attack (AutoAttack's
        APGD-CE + APGD-T, worst case per example). The fast profile runs 50 iterations and 3 targets;
        measured on its robust models that finds the same digits as 100 iterations and 9 targets, and
        within half a point of torchattacks' full AutoAttack (benchmarks/RESULTS.md).
        """
        from .attacks.apgd import StrongAttack  # imported here: config stays light

        return StrongAttack(eps, norm=norm, steps=self.apgd_steps, targets=self.apgd_targets,
                            restarts=self.apgd_restarts, seed=seed)

    def plain_pgd(self, eps: float, *, seed: int = 0, steps: int | None = None, restarts: int | None = None,
                  loss_fn=None):
        """Plain PGD with many steps and restarts (`strong_steps` × `pgd_restarts` by default): stronger than
        any training attack, weaker than `strong_attack`, and always named as such (`plain_pgd_name`).

        Its random starts come from a generator seeded with `seed` when the attack is made."""
        from .attacks import cross_entropy, pgd  # imported here: config stays light

        steps = self.strong_steps if steps is None else steps
        restarts = self.pgd_restarts if restarts is None else restarts
        alpha, generator, loss_fn = self.alpha(eps, steps), torch.Generator().manual_seed(seed), loss_fn or cross_entropy
        return lambda model, x, y: pgd(model, x, y, eps, alpha, steps, restarts=restarts, loss_fn=loss_fn,
                                       generator=generator)

    @property
    def plain_pgd_name(self) -> str:
        """The label of `plain_pgd` in tables, e.g. 'PGD-40×2'."""
        return f"PGD-{self.strong_steps}×{self.pgd_restarts}"

    def replace(self, **changes) -> "Profile":
        """A copy with some fields changed (profiles are frozen on purpose)."""
        return dataclasses.replace(self, **changes)


# fast: the embedded sample, sized so each notebook runs in about a minute on 2 CPU cores.
FAST = Profile(
    name="fast",
    dataset="sample",
    n_train=4000,
    n_test=1000,
    eval_size=400,
    # Wong et al.'s small CNN: 13× less arithmetic per image than the Kolter–Madry CNN, 6–7× less time on a CPU
    # (benchmarks/RESULTS.md), and the lessons of 00–03 do not depend on the architecture.
    standard_arch="small_cnn",
    epochs=8,
    batch_size=64,
    lr=1e-3,
    eps=0.1,
    eps_list=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3),
    pgd_steps=10,
    pgd_restarts=2,
    step_multiplier=2.5,
    minimal_eps_size=100,
    adv_epochs=10,
    train_pgd_steps=7,
    strong_steps=40,
    large_eps=0.3,
    eps_ramp=0.4,
    masking_steps=(1, 2, 3, 5, 10),
    masking_epochs=6,
    monitor_size=200,
    viz_per_class=10,
    threat_epochs=3,
    threat_steps=5,
    robust_arch="wide_cnn",
    robust_epochs=20,
    sweep_epochs=10,
    apgd_steps=50,
    apgd_targets=3,
    apgd_restarts=1,
    verify_digits=16,
    verify_seconds=10.0,
    verify_epochs=20,
    smooth_digits=200,
    smooth_samples=1000,
    smooth_epochs=10,
    defense_digits=200,
    eot_samples=10,
    square_queries=1000,
)

# full: all of MNIST on a GPU, so that the numbers compare with the papers'. Only what differs from fast.
FULL = FAST.replace(
    name="full",
    dataset="mnist",
    n_train=60000,
    n_test=10000,
    eval_size=9000,  # the last 1,000 test digits are the training monitor (monitor_size)
    standard_arch="mnist_cnn",  # the Kolter–Madry tutorial's CNN, so 02 compares with their numbers
    batch_size=128,
    eps_list=(0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3),
    pgd_steps=40,
    pgd_restarts=5,
    minimal_eps_size=1000,
    train_pgd_steps=10,
    strong_steps=100,
    masking_epochs=10,
    monitor_size=1000,
    threat_epochs=10,
    threat_steps=10,
    sweep_epochs=20,
    apgd_steps=100,  # AutoAttack's APGD-CE + APGD-T budget
    apgd_targets=9,
    verify_digits=100,
    verify_seconds=60.0,
    smooth_digits=1000,
    smooth_samples=10000,  # Cohen et al. use 100,000
    defense_digits=1000,
    eot_samples=20,
    square_queries=5000,  # Andriushchenko et al. report MNIST at 10,000
)

PROFILES: dict[str, Profile] = {"fast": FAST, "full": FULL}


def get_profile(name: str = "auto", device: torch.device | None = None) -> Profile:
    """The profile called `name`; "auto" means "full" on a CUDA GPU and "fast" elsewhere.

    The environment variable COURSE_PROFILE, when set, replaces "auto" (graders and CI
    use it to force "fast" without editing notebooks).
    """
    if not isinstance(name, str):
        raise ValueError(f"profile must be a string, got {name!r}")
    key = name.strip().lower()
    if key == "auto":
        key = os.environ.get("COURSE_PROFILE", "").strip().lower() or "auto"
    if key == "auto":
        device = device if device is not None else get_device()
        key = "full" if device.type == "cuda" else "fast"
    if key not in PROFILES:
        raise ValueError(f"profile must be one of 'auto', {', '.join(map(repr, PROFILES))}; got {name!r}")
    return PROFILES[key]
