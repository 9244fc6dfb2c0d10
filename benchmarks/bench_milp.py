"""How the exact verifier's time grows with the number of unstable ReLUs (notebook 09).

    python benchmarks/bench_milp.py [--digits 4] [--time-limit 30]

Two networks of the fast profile, trained (or loaded from the checkpoint folder) exactly as notebook 09 trains
them at SEED 0: the standard small perceptron (784-32-32-10) at growing ε, and the IBP-trained small CNN at
ε = 0.1 on held-out digits that IBP cannot certify (the digits it certifies are decided without the solver).
For each digit: unstable ReLUs (the program's binaries), the decision, and the solve time (`exact_margin=False`,
as in the notebook). The table's rows are per (network, ε): digits, median and range of unstable ReLUs, median
and maximum time, how many hit the time limit.
"""
from __future__ import annotations

import argparse
import platform
import statistics

import torch

from course_utils.certify import ibp, milp
from course_utils.config import get_device, get_profile
from course_utils.data import load_mnist
from course_utils.evaluate import correct
from course_utils.zoo import LR_PEAK, Recipe, Trainer, ibp_recipe, monitor_split


def row(name: str, eps: float, verdicts: list) -> str:
    unstable = [v.unstable for v in verdicts]
    seconds = [v.seconds for v in verdicts]
    decided = {"robust": sum(v.robust is True for v in verdicts), "not robust": sum(v.robust is False for v in verdicts),
               "time limit": sum(v.robust is None for v in verdicts)}
    return (f"| {name} | {eps:g} | {len(verdicts)} | {statistics.median(unstable):.0f} ({min(unstable)}–{max(unstable)}) "
            f"| {statistics.median(seconds):.2f} | {max(seconds):.2f} | {decided['robust']} / {decided['not robust']} "
            f"/ {decided['time limit']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--digits", type=int, default=4)
    parser.add_argument("--time-limit", type=float, default=30.0)
    args = parser.parse_args()
    device, profile = get_device(), get_profile("fast")
    x_train, y_train, x_test, y_test = load_mnist(profile, device)
    x_val, y_val = monitor_split(x_test, y_test, profile)
    train = Trainer(profile, x_train, y_train, x_val, y_val, device, seed=0).model
    x_eval, y_eval = x_test[: profile.eval_size], y_test[: profile.eval_size]
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| network | ε | digits | unstable ReLUs, median (range) | median s | max s | robust / not robust / time limit |")
    print("|---|---|---|---|---|---|---|")
    mlp = train(Recipe("standard", profile.eps, profile.verify_epochs, monitor=False, model="small_mlp", lr_peak=LR_PEAK))
    ok = correct(mlp, x_eval, y_eval)
    x, y = x_eval[ok][: args.digits], y_eval[ok][: args.digits]
    for eps in (0.005, 0.01, 0.02):
        print(row("standard perceptron", eps, milp.verify_batch(mlp, x, y, eps, time_limit=args.time_limit,
                                                              exact_margin=False, progress=False)), flush=True)
    cnn = train(ibp_recipe(profile.eps, profile))
    hard = correct(cnn, x_eval, y_eval) & ~ibp.certified(cnn, x_eval, y_eval, profile.eps)
    x, y = x_eval[hard][: args.digits], y_eval[hard][: args.digits]
    print(row("IBP-trained small CNN, digits IBP cannot certify", profile.eps,
              milp.verify_batch(cnn, x, y, profile.eps, time_limit=args.time_limit, exact_margin=False, progress=False)))


if __name__ == "__main__":
    main()
