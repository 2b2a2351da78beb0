"""Augmentation throughput: torchvision's per-image pipeline against the batched one, images/s per core.

Both run the paper's training augmentation on the same CIFAR-10 images with one thread (one core):
the per-image pipeline as the DataLoader workers run it (PIL image in, normalized tensor out), the
batched one on uint8 batches (normalization included), as training runs it by default (colour
operations compiled; ``--no-compile`` for all-eager). The last line is the headline figure.

    python benchmarks/augment_throughput.py --data-dir ../shared/data --images 2048
    python benchmarks/augment_throughput.py --data-dir ../shared/data --breakdown   # where the time goes
"""

from __future__ import annotations

import argparse
import time

import torch
from PIL import Image

from ghostmixnet.data import augment, batch_autoaugment
from ghostmixnet.data.augment import BatchPipeline, train_transform
from ghostmixnet.data.batch_ops import normalize
from ghostmixnet.data.cifar import MEAN, STD, load_cifar10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data", help="folder holding cifar-10-batches-py")
    parser.add_argument("--images", type=int, default=2048, help="images per measurement")
    parser.add_argument("--batch-size", type=int, default=256, help="batch size of the batched pipeline")
    parser.add_argument("--augment", default="paper", choices=["paper", "basic"])
    parser.add_argument("--repeats", type=int, default=3, help="measurements; the best is reported")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="the batched pipeline as training runs it by default, its colour operations "
                             "compiled (in the untimed warm-up pass); --no-compile for eager [on]")
    parser.add_argument("--breakdown", action="store_true",
                        help="also print the batched pipeline's time per operation (before the headline)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    images = load_cifar10(args.data_dir, train=True).images[: args.images]
    pil = [Image.fromarray(im) for im in images]
    per_image = train_transform(args.augment)
    batched = BatchPipeline(args.augment, compile=args.compile)
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    generator = torch.Generator().manual_seed(0)

    def run_per_image() -> None:
        for im in pil:
            per_image(im)

    def run_batched() -> None:
        for i in range(0, len(tensor), args.batch_size):
            normalize(batched(tensor[i:i + args.batch_size], generator), MEAN, STD)

    rates = {}
    for name, fn in (("per-image (torchvision, PIL)", run_per_image), ("batched", run_batched)):
        if name == "batched":
            fn()  # warm-up: first calls of PyTorch kernels allocate
        best = min(_timed(fn) for _ in range(args.repeats))
        rates[name] = len(images) / best
        label = f"{name}{', colour ops compiled' if name == 'batched' and args.compile else ''}"
        print(f"{label}: {rates[name]:,.0f} images/s on one core ({len(images)} images, best of {args.repeats})")
    if args.breakdown:
        breakdown(run_batched, batched)
    ratio = rates["batched"] / rates["per-image (torchvision, PIL)"]
    print(f"speedup: {ratio:.2f}")


def breakdown(run, pipeline: BatchPipeline) -> None:
    """Time every operation of the batched pipeline by wrapping the functions it calls."""
    totals: dict[str, float] = {}

    def timer(fn, label: str):
        def timed(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                totals[label] = totals.get(label, 0.0) + time.perf_counter() - start
        return timed

    wrapped = []
    # The pipeline (in ghostmixnet.data.augment) calls these by the names it imported them under.
    for module, name, label in [(augment, n, n) for n in ("pad_crop", "perspective", "posterize", "color_jitter",
                                                          "autoaugment")]:
        wrapped.append((module, name, getattr(module, name)))
        setattr(module, name, timer(getattr(module, name), label))
    colour_ops = pipeline.color_ops
    pipeline.color_ops = tuple(timer(op, f"  colour {name}") for op, name in
                               zip(colour_ops, ("brightness", "contrast", "saturation", "hue")))
    original_apply = batch_autoaugment.apply_op

    def apply_timed(name, images, magnitude):
        return timer(original_apply, f"  autoaugment {name}")(name, images, magnitude)

    batch_autoaugment.apply_op = apply_timed
    global normalize
    plain_normalize = normalize
    normalize = timer(normalize, "normalize")
    try:
        whole = _timed(run)
    finally:
        normalize = plain_normalize
        batch_autoaugment.apply_op = original_apply
        pipeline.color_ops = colour_ops
        for module, name, original in wrapped:
            setattr(module, name, original)
    print(f"batched pipeline, one pass: {whole * 1000:.0f} ms (indented: parts of the line above them)")
    for label, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {label:<28} {seconds * 1000:8.1f} ms  {100 * seconds / whole:5.1f}%")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
