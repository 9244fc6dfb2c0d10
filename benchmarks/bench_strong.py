"""The course's strong evaluation against torchattacks: time for the same work, and strength.

    python benchmarks/bench_strong.py [--digits 800] [--repeats 3]

On the course's two robust models (`zoo.robust_recipe` at ε = 0.1 and 0.3, trained or loaded
from the checkpoint folder), on the embedded sample's held-out digits (the test split minus the
training monitor):

- time: our `StrongAttack` (APGD-CE, then APGD-T on the digits still standing) against torchattacks'
  APGD + APGDT run the same way (torchattacks' MultiAttack attacks only what is left), at the fast
  profile's budget (50 steps, 3 targets); calls alternate, the median of `--repeats` is reported;
- strength: robust accuracy under ours at the fast budget and at AutoAttack's (100 steps, 9 targets),
  under torchattacks' pair, under torchattacks' AutoAttack (standard: APGD-CE, APGD-T, FAB-T, Square),
  and under the union of everything (a digit is robust only if no attack fooled it).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from course_utils.attacks.apgd import StrongAttack
from course_utils.data import load_mnist
from course_utils.evaluate import correct
from course_utils.config import get_device, get_profile
from course_utils.zoo import monitor_split, robust_recipe, trained_model


def by_batches(attack, model, x, y, size=400):
    return torch.cat([attack(model, xb, yb) for xb, yb in zip(x.split(size), y.split(size))])


def main() -> None:
    import torchattacks

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--digits", type=int, default=800)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = get_device()
    profile = get_profile("fast")
    x_train, y_train, x_test, y_test = load_mnist(profile, device)
    x_val, y_val = monitor_split(x_test, y_test, profile)
    x, y = x_test[: args.digits], y_test[: args.digits]
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"torchattacks {torchattacks.__version__}; {len(y)} held-out digits")
    print("| model | ours, fast budget (s) | torchattacks, same work (s) | ratio | ours fast | ours 100 steps, 9 targets "
          "| torchattacks APGD + APGD-T | torchattacks AutoAttack | union of all |")
    print("|---|---|---|---|---|---|---|---|---|")
    for eps in (profile.eps, profile.large_eps):
        model, _ = trained_model(robust_recipe(eps, profile), profile, x_train, y_train, x_val, y_val, device, progress=False)
        ours = profile.strong_attack(eps)
        theirs_pair = torchattacks.MultiAttack([
            torchattacks.APGD(model, eps=eps, steps=profile.apgd_steps, loss="ce", seed=0),
            torchattacks.APGDT(model, eps=eps, steps=profile.apgd_steps, n_classes=profile.apgd_targets + 1, seed=0)])
        times = {"ours": [], "theirs": []}
        for r in range(args.repeats):
            for who in (("ours", "theirs") if r % 2 == 0 else ("theirs", "ours")):
                start = time.perf_counter()
                out = by_batches(ours if who == "ours" else (lambda m, a, b: theirs_pair(a, b)), model, x, y)
                times[who].append(time.perf_counter() - start)
                if who == "ours":
                    ours_out = out
                else:
                    pair_out = out
        full = by_batches(StrongAttack(eps, steps=100, targets=9), model, x, y)
        aa = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)
        aa_out = by_batches(lambda m, a, b: aa(a, b), model, x, y)
        masks = {name: correct(model, out, y) for name, out in
                 {"fast": ours_out, "full": full, "pair": pair_out, "aa": aa_out}.items()}
        union = torch.stack(list(masks.values())).all(0)
        t_ours, t_theirs = statistics.median(times["ours"]), statistics.median(times["theirs"])
        acc = {k: f"{v.float().mean().item():.2%}" for k, v in masks.items()}
        print(f"| robust, ε = {eps} | {t_ours:.1f} | {t_theirs:.1f} | {t_ours / t_theirs:.2f} | {acc['fast']} | {acc['full']} "
              f"| {acc['pair']} | {acc['aa']} | {union.float().mean().item():.2%} |", flush=True)


if __name__ == "__main__":
    main()
