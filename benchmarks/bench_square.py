"""The course's Square attack against torchattacks' `Square`, on the course's own models (notebook 10).

    python benchmarks/bench_square.py [--seeds 0-2] [--digits 400]

For each seed: the fast profile's standard model and its PGD-trained model at ε = 0.3 (trained, or loaded
from the checkpoint folder, exactly as 04/05/10 train them), attacked on held-out digits the notebooks do
not report (test digits 400 onwards) by both implementations with the same ε, query budget and p_init,
each with its own seed. Printed: accuracy under ours, under torchattacks', under white-box PGD-40×2 for
scale, and the median queries ours needed per fooled digit, as Markdown table rows for RESULTS.md.
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

from course_utils.attacks.square import square_search
from course_utils.config import get_device, get_profile
from course_utils.data import load_mnist
from course_utils.evaluate import correct, robust_accuracy
from course_utils.zoo import Trainer, monitor_split, robust_recipe, standard_recipe


def seeds_arg(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=seeds_arg, default=seeds_arg("0-2"))
    parser.add_argument("--digits", type=int, default=400)
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    import torchattacks

    profile, device = get_profile("fast"), get_device()
    x_train, y_train, x_test, y_test = load_mnist(profile, device)
    start = profile.eval_size  # digits 400 onwards: not the ones the notebooks report
    x, y = x_test[start:start + args.digits], y_test[start:start + args.digits]
    x_val, y_val = monitor_split(x_test, y_test, profile)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"torchattacks {torchattacks.__version__}, {len(y)} digits, {args.queries} queries")
    print("| seed | model | ε | clean | ours | torchattacks | ours − theirs | white-box PGD-40×2 | median queries (ours) | seconds ours / theirs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        train = Trainer(profile, x_train, y_train, x_val, y_val, device, seed=seed)
        models = {"standard": (train(standard_recipe(profile))[0], 0.2),
                  "PGD-trained ε 0.3": (train(robust_recipe(0.3, profile))[0], 0.3)}
        for name, (model, eps) in models.items():
            t = time.perf_counter()
            found = square_search(model, x, y, eps, queries=args.queries, generator=torch.Generator().manual_seed(seed))
            t_ours = time.perf_counter() - t
            ours = robust_accuracy(model, x, y, lambda m, a, b: found.x_adv)
            reference = torchattacks.Square(model, norm="Linf", eps=eps, n_queries=args.queries, n_restarts=1,
                                            p_init=0.8, loss="margin", seed=seed)
            t = time.perf_counter()
            theirs = robust_accuracy(model, x, y, lambda m, a, b: reference(a, b).detach())
            t_theirs = time.perf_counter() - t
            white = robust_accuracy(model, x, y, profile.plain_pgd(eps, seed=seed))
            clean_ok = correct(model, x, y)
            fooled = found.queries[found.fooled & clean_ok].float()
            median = fooled.median().item() if len(fooled) else float("nan")
            print(f"| {seed} | {name} | {eps:g} | {clean_ok.float().mean():.1%} | {ours:.1%} | {theirs:.1%} | "
                  f"{100 * (ours - theirs):+.1f} | {white:.1%} | {median:.0f} | {t_ours:.1f} / {t_theirs:.1f} |", flush=True)


if __name__ == "__main__":
    main()
