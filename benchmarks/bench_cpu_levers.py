"""Two CPU levers, measured: the standard model's architecture and glibc's allocator thresholds.

    python benchmarks/bench_cpu_levers.py [--batch 64 100 1000] [--images 4000]

For each architecture (the Kolter–Madry CNN, Wong et al.'s small CNN) and batch size: the time of
one forward + backward pass with respect to the input — the unit of work of every attack and,
with the weight gradients added, of training — per image, and the minor page faults per pass.
Each (architecture, allocator) pair runs in a fresh interpreter, because the allocator setting
(`setup.tune_cpu_allocator`, applied by `get_device()`) cannot be undone inside a process;
COURSE_DEFAULT_MALLOC=1 turns it off. Random inputs: the cost does not depend on the pixels.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch

WORKER = r"""
import json, resource, sys, time, torch
import torch.nn.functional as F
from course_utils.models import build_model
from course_utils.config import get_device, tune_cpu_allocator
get_device()
name, batch, images = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
net = build_model(name).eval()
x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
def pass_():
    xi = x.clone().requires_grad_(True)
    torch.autograd.grad(F.cross_entropy(net(xi), y), xi)
for _ in range(3):
    pass_()
passes = max(5, images // batch)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
start = time.perf_counter()
for _ in range(passes):
    pass_()
seconds = time.perf_counter() - start
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(json.dumps({"us_per_image": 1e6 * seconds / (passes * batch), "faults_per_pass": faults / passes,
                  "tuned": tune_cpu_allocator()}))
"""


def measure(name: str, batch: int, images: int, tuned: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "COURSE_DEFAULT_MALLOC"}
    if not tuned:
        env["COURSE_DEFAULT_MALLOC"] = "1"
    out = subprocess.run([sys.executable, "-c", WORKER, name, str(batch), str(images)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 100, 1000])
    parser.add_argument("--images", type=int, default=4000, help="images per timed run")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| model | batch | µs/image, default malloc | µs/image, tuned | speed-up | page faults/pass, default → tuned |")
    print("|---|---|---|---|---|---|")
    for name in ("mnist_cnn", "small_cnn"):
        for batch in args.batch:
            default, tuned = (measure(name, batch, args.images, t) for t in (False, True))
            if not tuned["tuned"]:
                print(f"(allocator tuning not available here: {name}, batch {batch})")
            print(f"| {name} | {batch} | {default['us_per_image']:.0f} | {tuned['us_per_image']:.0f} "
                  f"| {default['us_per_image'] / tuned['us_per_image']:.2f}× "
                  f"| {default['faults_per_pass']:.0f} → {tuned['faults_per_pass']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
