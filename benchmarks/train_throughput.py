"""End-to-end training throughput: the reference configuration, an earlier revision's fast path and this one's.

All train the same model with the same batch size on real CIFAR-10 for the same number of steps, timing
everything a step costs (loading, augmentation, mixing, forward, backward, the optimizer, the weight average);
the paper's recipe by default, ``--recipe fast`` for the fast recipe's step (flip and crop, no mixing, the
weight average):

- reference: torchvision's per-image PIL transforms in DataLoader worker processes, fp32, NCHW, the plain
  Ghost block, eager (``--no-reference`` leaves it out);
- baseline (``--baseline REV``): the fast path of the code at git revision REV, run from a temporary worktree
  in a child process, so that "today's code" and this one are measured in one run on one machine;
- fast: this code's default compute path: batched augmentation on the training device, bf16 autocast where
  the hardware has it natively (fp32 otherwise), ``torch.compile`` (``--no-compile`` to leave it out);
  ``--channels-last`` and ``--fused-bn`` add the two switches that are off by default. Where the recipe (or
  ``--resolutions``) trains early steps on smaller images, each size is timed and the run's mean rate is
  weighted by the steps each size trains: the time a whole schedule takes per image.

The last line is the headline figure.

    python benchmarks/train_throughput.py --data-dir ../shared/data --steps 20
    python benchmarks/train_throughput.py --data-dir ../shared/data --steps 20 --recipe fast --no-reference \\
        --baseline dd5b404
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ghostmixnet.config import RECIPES, REFERENCE_COMPUTE, make_config
from ghostmixnet.data.cifar import load_cifar10
from ghostmixnet.data.resolution import FULL_SIZE, ResolutionSchedule
from ghostmixnet.train.throughput import training_throughput

BASELINE_SCRIPT = """
import json, sys
import numpy as np
from ghostmixnet.config import make_config
from ghostmixnet.data.cifar import load_cifar10
from ghostmixnet.train.throughput import training_throughput
data_dir, recipe, batch, steps, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
data = load_cifar10(data_dir, train=True)
data = data.subset(np.arange(min((steps + warmup) * batch, len(data))))
result = training_throughput(make_config(recipe, batch_size=batch), data, steps, warmup)
print(json.dumps({"images_per_s": result.images_per_s, "warmup_seconds": result.warmup_seconds,
                  "precision": result.precision}))
"""


def baseline_throughput(rev: str, args: argparse.Namespace) -> dict:
    """The default fast path of the code at git revision ``rev``, timed in a child process from a worktree."""
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", "--quiet", str(tree), rev], check=True)
        try:
            env = {**os.environ, "PYTHONPATH": str(tree / "src")}
            out = subprocess.run([sys.executable, "-c", BASELINE_SCRIPT, str(Path(args.data_dir).resolve()),
                                  args.recipe, str(args.batch_size), str(args.steps), str(args.warmup)],
                                 env=env, cwd=tree, check=True, capture_output=True, text=True).stdout
        finally:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)], check=True)
    return json.loads(out.strip().splitlines()[-1])


def schedule_shares(sizes: ResolutionSchedule) -> dict[int, float]:
    """The share of a run's steps each image size trains."""
    shares, start = {}, 0.0
    for size, until in (*sizes.stages, (FULL_SIZE, 1.0)):
        shares[size] = shares.get(size, 0.0) + until - start
        start = until
    return shares


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data", help="folder holding cifar-10-batches-py")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration [20]")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here) [3]")
    parser.add_argument("--batch-size", type=int, default=128, help="[128, the paper's]")
    parser.add_argument("--model", default="ghostmixnet")
    parser.add_argument("--recipe", default="paper", choices=list(RECIPES), help="whose training step to time [paper]")
    parser.add_argument("--augment", default=None, choices=["paper", "basic"], help="[the recipe's]")
    parser.add_argument("--resolutions", default=None, help="progressive resizing to time, e.g. 16:0.3,24:0.6 "
                        "[the recipe's]")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference [2]")
    parser.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                        help="time the reference path [on]")
    parser.add_argument("--baseline", default=None, metavar="REV",
                        help="also time the fast path of the code at this git revision (e.g. a commit before a change)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="torch.compile the fast path's model [on]")
    parser.add_argument("--fused-bn", action=argparse.BooleanOptionalAction, default=False,
                        help="the fast path with the fused double BatchNorm [off]")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=False,
                        help="the fast path in the channels-last memory format [off]")
    args = parser.parse_args(argv)
    data = load_cifar10(args.data_dir, train=True)
    needed = (args.steps + args.warmup) * args.batch_size
    data = data.subset(np.arange(min(needed, len(data))))
    common = {"model": args.model, "batch_size": args.batch_size, "augment": args.augment}
    fast_cfg = make_config(args.recipe, **common, compile=args.compile, fused_bn=args.fused_bn,
                           channels_last=args.channels_last, resolutions=args.resolutions)
    baseline = reference = None
    if args.reference:
        reference_cfg = make_config(args.recipe, **common, **REFERENCE_COMPUTE | {"num_workers": args.workers})
        reference = training_throughput(reference_cfg, data, args.steps, args.warmup).images_per_s
        print(f"reference (per-image PIL in {args.workers} workers, fp32, NCHW, eager): {reference:.1f} images/s",
              flush=True)
    if args.baseline:
        baseline = baseline_throughput(args.baseline, args)["images_per_s"]
        print(f"baseline (the default fast path at {args.baseline}): {baseline:.1f} images/s", flush=True)
    shares = schedule_shares(ResolutionSchedule.parse(fast_cfg.resolutions))
    seconds_per_image = 0.0
    for size, share in shares.items():
        # Every step at this size: a one-stage schedule that ends just before the run does.
        sized = dataclasses.replace(fast_cfg, resolutions="" if size == FULL_SIZE else f"{size}:0.999")
        fast = training_throughput(sized, data, args.steps, args.warmup)
        seconds_per_image += share / fast.images_per_s
        print(f"fast (batched augmentation, {fast.precision}{', compiled' if args.compile else ''}"
              f"{', fused BN' if args.fused_bn else ''}{', channels-last' if args.channels_last else ''}) at "
              f"{size}x{size}: {fast.images_per_s:.1f} images/s (first {args.warmup} steps, untimed: "
              f"{fast.warmup_seconds:.0f} s), {100 * share:.0f}% of the run's steps", flush=True)
    rate = 1 / seconds_per_image
    if len(shares) > 1:
        print(f"fast, the run's mean over its resolution schedule {fast_cfg.resolutions}: {rate:.1f} images/s")
    print(f"{args.recipe} recipe's step: {args.steps} timed steps of {args.batch_size} images each, after "
          f"{args.warmup} untimed")
    if reference is not None:
        print(f"speedup over the reference: {rate / reference:.2f}")
    if baseline is not None:
        print(f"speedup over {args.baseline}: {rate / baseline:.2f}")


if __name__ == "__main__":
    main()
