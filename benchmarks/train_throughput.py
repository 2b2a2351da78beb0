"""End-to-end training throughput: the reference configuration against the fast path, side by side.

Both train the same model with the same batch size on real CIFAR-10 for the same number of steps,
timing everything a step costs (loading, augmentation, mixing, forward, backward, AdamW):

- reference: torchvision's per-image PIL transforms in DataLoader worker processes, fp32, NCHW;
- fast: batched augmentation on the training device, bf16 autocast where the hardware has it
  natively (fp32 otherwise), optionally ``torch.compile``.

The last line is the headline figure.

    python benchmarks/train_throughput.py --data-dir ../shared/data --steps 20
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

from ghostmixnet.augment import train_transform
from ghostmixnet.batch_augment import BatchPipeline, normalize
from ghostmixnet.data import MEAN, STD, ImageDataset, ResumableSampler, load_cifar10
from ghostmixnet.engine import forward_backward, optimizer_step, slow_precision_warning
from ghostmixnet.mix import BatchMixer
from ghostmixnet.models import build_model


def measure(name: str, data, args, batched: bool, precision: str, compile: bool) -> float:
    torch.manual_seed(0)
    model = build_model(args.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    runner = torch.compile(model) if compile else model
    dataset = ImageDataset(data, None if batched else train_transform(args.augment))
    sampler = ResumableSampler(len(data), seed=0)
    sampler.set_epoch(0)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler,
                        num_workers=0 if batched else args.workers, drop_last=True)
    pipeline = BatchPipeline(args.augment) if batched else None
    generator = torch.Generator().manual_seed(0)
    mixer = BatchMixer(seed=0)
    runner.train()
    seen, start = 0, None
    for step, (images, targets) in enumerate(loader):
        if step == args.warmup:
            seen, start = 0, time.perf_counter()
        if pipeline is not None:
            images = normalize(pipeline(images, generator), MEAN, STD)
        forward_backward(runner, images, targets, mixer, scaler, torch.device("cpu"), precision, 0.1)
        optimizer_step(optimizer, scaler)
        seen += images.shape[0]
        if step + 1 == args.warmup + args.steps:
            break
    rate = seen / (time.perf_counter() - start)
    print(f"{name}: {rate:.1f} images/s ({args.steps} steps of {args.batch_size} after {args.warmup} warm-up)")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data", help="folder holding cifar-10-batches-py")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--model", default="ghostmixnet")
    parser.add_argument("--augment", default="paper", choices=["paper", "basic"])
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                        help="torch.compile the fast path's model")
    args = parser.parse_args()
    data = load_cifar10(args.data_dir, train=True)
    needed = (args.steps + args.warmup) * args.batch_size
    data = data.subset(torch.arange(min(needed, len(data))).numpy())
    fast_precision = "bf16" if slow_precision_warning(torch.device("cpu"), "bf16") is None else "fp32"
    reference = measure("reference (per-image PIL in workers, fp32, NCHW)", data, args, False, "fp32", False)
    fast = measure(f"fast (batched augmentation, {fast_precision}{', compiled' if args.compile else ''})", data,
                   args, True, fast_precision, args.compile)
    print(f"speedup: {fast / reference:.2f}")


if __name__ == "__main__":
    main()
