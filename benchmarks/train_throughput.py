"""End-to-end training throughput: the reference configuration against the fast path, side by side.

Both train the same model (the paper's recipe by default: all its augmentations and Mixup/CutMix;
``--recipe fast`` times the fast recipe's step: flip and crop, no mixing, the weight average) with the
same batch size on real CIFAR-10 for the same number of steps, timing everything a step costs
(loading, augmentation, mixing, forward, backward, the optimizer, the weight average):

- reference: torchvision's per-image PIL transforms in DataLoader worker processes, fp32, NCHW,
  the plain Ghost block, eager;
- fast: the default compute path: batched augmentation on the training device, bf16 autocast where
  the hardware has it natively (fp32 otherwise), ``torch.compile`` (``--no-compile`` to leave it out);
  ``--channels-last`` and ``--fused-bn`` add the two switches that are off by default.

The last line is the headline figure.

    python benchmarks/train_throughput.py --data-dir ../shared/data --steps 20
    python benchmarks/train_throughput.py --data-dir ../shared/data --steps 20 --recipe fast
"""

from __future__ import annotations

import argparse

import numpy as np

from ghostmixnet.config import RECIPES, REFERENCE_COMPUTE, make_config
from ghostmixnet.data.cifar import load_cifar10
from ghostmixnet.train.throughput import training_throughput


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data", help="folder holding cifar-10-batches-py")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration [20]")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here) [3]")
    parser.add_argument("--batch-size", type=int, default=128, help="[128, the paper's]")
    parser.add_argument("--model", default="ghostmixnet")
    parser.add_argument("--recipe", default="paper", choices=list(RECIPES), help="whose training step to time [paper]")
    parser.add_argument("--augment", default=None, choices=["paper", "basic"], help="[the recipe's]")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference [2]")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="torch.compile the fast path's model [on]")
    parser.add_argument("--fused-bn", action=argparse.BooleanOptionalAction, default=False,
                        help="the fast path with the fused double BatchNorm [off]")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=False,
                        help="the fast path in the channels-last memory format [off]")
    args = parser.parse_args()
    data = load_cifar10(args.data_dir, train=True)
    needed = (args.steps + args.warmup) * args.batch_size
    data = data.subset(np.arange(min(needed, len(data))))
    common = {"model": args.model, "batch_size": args.batch_size, "augment": args.augment}
    reference_cfg = make_config(args.recipe, **common, **REFERENCE_COMPUTE | {"num_workers": args.workers})
    fast_cfg = make_config(args.recipe, **common, compile=args.compile, fused_bn=args.fused_bn,
                           channels_last=args.channels_last)
    reference = training_throughput(reference_cfg, data, args.steps, args.warmup)
    print(f"reference (per-image PIL in {args.workers} workers, fp32, NCHW, eager): "
          f"{reference.images_per_s:.1f} images/s", flush=True)
    fast = training_throughput(fast_cfg, data, args.steps, args.warmup)
    print(f"fast (batched augmentation, {fast.precision}{', compiled' if args.compile else ''}"
          f"{', fused BN' if args.fused_bn else ''}{', channels-last' if args.channels_last else ''}): "
          f"{fast.images_per_s:.1f} images/s "
          f"(first {args.warmup} steps, untimed: {fast.warmup_seconds:.0f} s)")
    print(f"{args.recipe} recipe's step: {args.steps} timed steps of {args.batch_size} images each, after "
          f"{args.warmup} untimed")
    print(f"speedup: {fast.images_per_s / reference.images_per_s:.2f}")


if __name__ == "__main__":
    main()
