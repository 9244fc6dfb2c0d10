"""Our PGD against torchattacks' PGD: time ratio and strength, measured in one run, alternating.

    python benchmarks/bench_pgd.py [--batch 100 1000] [--steps 10] [--repeats 7]

Both attack the same trained Kolter–Madry CNN on the same test digits with the same ε, α and
steps (random start on). Timings: a warm-up call each, then `repeats` pairs of calls, the order within a pair alternating;
median and spread (min–max) reported. The floor is k × one forward+backward pass with respect
to the input: PGD cannot be cheaper than its k gradient evaluations.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from course_utils import attacks
from course_utils.data import load_mnist
from course_utils.evaluate import accuracy
from course_utils.config import get_device, get_profile
from course_utils.zoo import standard_model


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def main():
    import torchattacks

    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    device = get_device()
    profile = get_profile("fast")
    x_train, y_train, x_test, y_test = load_mnist(profile, device)
    # The Kolter–Madry CNN (the full profile's standard model): 13× the small CNN's arithmetic per image,
    # so the attack's own overhead is measured against a realistic model cost.
    model, _ = standard_model(profile, x_train, y_train, device, model="mnist_cnn", progress=False)
    model.eval()
    alpha = 2.5 * args.eps / args.steps
    print(f"torch {torch.__version__}, {device}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads; ε={args.eps}, α={alpha:.4f}, {args.steps} steps")
    print("| batch | ours (s) | torchattacks (s) | ratio of medians | paired ratio (median, min–max) | floor k×(fwd+bwd) (s) | ours/floor | acc ours | acc theirs |")
    print("|---|---|---|---|---|---|---|---|---|")
    ta = torchattacks.PGD(model, eps=args.eps, alpha=alpha, steps=args.steps, random_start=True)
    for n in args.batch:
        x, y = x_test[:n], y_test[:n]
        ours = lambda: attacks.pgd(model, x, y, args.eps, alpha, args.steps)
        theirs = lambda: ta(x, y)
        grad = lambda: attacks.input_gradient(model, x, y)
        for fn in (ours, theirs, grad):
            fn()  # warm-up
        t_ours, t_theirs, t_grad = [], [], []
        for i in range(args.repeats):
            # Who goes first alternates, so neither attack always runs right after the other's
            # allocations (or in the other's turbo/thermal state).
            if i % 2 == 0:
                t_o, adv_ours = timed(ours, device)
                t_t, adv_theirs = timed(theirs, device)
            else:
                t_t, adv_theirs = timed(theirs, device)
                t_o, adv_ours = timed(ours, device)
            t_ours.append(t_o)
            t_theirs.append(t_t)
            t_grad.append(timed(grad, device)[0])
        m_ours, m_theirs, m_grad = map(statistics.median, (t_ours, t_theirs, t_grad))
        floor = args.steps * m_grad
        # Each run of ours is timed right next to one of theirs, so the ratio within a pair cancels the
        # slow drift of a shared machine better than the ratio of two medians does.
        paired = [a / b for a, b in zip(t_ours, t_theirs)]
        print(f"| {n} | {m_ours:.3f} ({min(t_ours):.3f}–{max(t_ours):.3f}) | {m_theirs:.3f} ({min(t_theirs):.3f}–{max(t_theirs):.3f}) "
              f"| {m_ours / m_theirs:.3f} | {statistics.median(paired):.3f} ({min(paired):.2f}–{max(paired):.2f}) "
              f"| {floor:.3f} | {m_ours / floor:.3f} "
              f"| {accuracy(model, adv_ours, y):.1%} | {accuracy(model, adv_theirs, y):.1%} |", flush=True)


if __name__ == "__main__":
    main()
