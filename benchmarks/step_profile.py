"""Where a training step's time goes: a per-operation profile of the trainer's own step, beside its arithmetic.

Builds a recipe's training parts as a run does (compiled unless ``--no-compile``), trains ``--warmup`` untimed
steps (compilation happens there), then profiles ``--steps`` steps with ``torch.profiler`` and prints:

- the step's time split into forward and backward convolutions, BatchNorm, the fused elementwise kernels that
  ``torch.compile`` generates (or eager's elementwise operations), the optimizer and the rest;
- the step's floating-point operations (PyTorch's FLOP counter over one forward and backward), its achieved
  rate, and that rate as a share of this machine's measured matrix-multiply peak at the step's precision;
- the most expensive operations by their own time.

    python benchmarks/step_profile.py --data-dir ../shared/data --recipe fast
    python benchmarks/step_profile.py --data-dir ../shared/data --recipe fast --resolution 16
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ghostmixnet.config import RECIPES, make_config
from ghostmixnet.data.cifar import load_cifar10
from ghostmixnet.data.loading import ResumableSampler
from ghostmixnet.deploy.bench import matmul_peak_gflops
from ghostmixnet.model.factory import build_model
from ghostmixnet.train.distributed import DistEnv
from ghostmixnet.train.loop import EpochControl, EpochTotals, train_one_epoch
from ghostmixnet.train.parts import build_loader, build_training, epoch_batches

GROUPS = (
    ("convolution, backward", ("convolution_backward", "mkldnn_convolution_backward")),
    ("convolution, forward", ("convolution", "mkldnn_convolution", "_convolution")),
    ("batch norm", ("batch_norm", "native_batch_norm")),
    ("optimizer", ("adam", "_foreach", "lerp")),
    ("compiled kernels (BatchNorm, activations, SE, concatenation)", ("compiledfxgraph", "cpp_fused")),
)
"""Operation groups by name fragment, first match wins (backward names first: they contain the forward's)."""


def group_of(name: str) -> str:
    lowered = name.lower()
    return next((group for group, parts in GROUPS if any(p in lowered for p in parts)), "other")


def step_flops(cfg, size: int) -> int:
    """Floating-point operations of one training step's forward and backward (eager, the same arithmetic)."""
    model = build_model(cfg.model, cfg.num_classes, cfg.width, cfg.dropout)
    x = torch.randn(cfg.batch_size, 3, size, size)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x).float().square().mean().backward()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data", help="folder holding cifar-10-batches-py")
    parser.add_argument("--recipe", default="fast", choices=list(RECIPES), help="[fast]")
    parser.add_argument("--steps", type=int, default=6, help="profiled steps [6]")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation) [3]")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--resolution", type=int, default=32, help="train every step at this image size [32]")
    parser.add_argument("--top", type=int, default=15, help="operations listed [15]")
    args = parser.parse_args()
    resolutions = "" if args.resolution == 32 else f"{args.resolution}:0.999"
    cfg = make_config(args.recipe, compile=args.compile, precision=args.precision, channels_last=args.channels_last,
                      resolutions=resolutions)
    total = args.warmup + args.steps
    data = load_cifar10(args.data_dir, train=True)
    data = data.subset(np.arange(total * cfg.batch_size))
    device = torch.device("cpu")
    t = build_training(cfg, device, steps_per_epoch=10**6)  # a long plan: every step at --resolution
    sampler = ResumableSampler(len(data), seed=cfg.seed)
    sampler.set_epoch(0)
    batches = epoch_batches(t, build_loader(t, data, sampler, cfg.batch_size), 0, 1)
    env, totals = DistEnv(0, 1, 0, device), EpochTotals()
    control = EpochControl(steps_per_epoch=total + 1, sync_every=10**9, max_steps=args.warmup)
    began = time.perf_counter()
    train_one_epoch(t, batches, 0, 0, totals, control, env)
    warm = time.perf_counter() - began
    control.max_steps = args.steps
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        began = time.perf_counter()
        train_one_epoch(t, batches, 0, args.warmup, totals, control, env)
        seconds = (time.perf_counter() - began) / args.steps
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    by_group: dict[str, float] = defaultdict(float)
    for e in events:
        by_group[group_of(e.key)] += e.self_cpu_time_total / 1e3 / args.steps
    profiled = sum(by_group.values())
    flops = step_flops(cfg, args.resolution)
    peak_dtype = "bf16" if t.compute.precision == "bf16" else "fp32"
    peak = matmul_peak_gflops(torch.get_num_threads(), peak_dtype)
    rate = flops / seconds / 1e9
    print(f"{args.recipe} step, batch {cfg.batch_size}, {args.resolution}x{args.resolution}, {t.compute.precision}"
          f"{', compiled' if args.compile else ', eager'}{', channels-last' if args.channels_last else ''}, "
          f"{torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}; first {args.warmup} steps "
          f"{warm:.0f} s")
    print(f"step: {1e3 * seconds:.0f} ms ({cfg.batch_size / seconds:.1f} images/s) under the profiler; "
          f"{flops / 1e9:.1f} GFLOP forward and backward -> {rate:.1f} GFLOP/s, "
          f"{100 * rate / peak:.0f}% of the measured {peak_dtype} matmul peak ({peak:.0f} GFLOP/s)")
    print("\n| part | ms per step | share |\n|---|---:|---:|")
    for group, ms in sorted(by_group.items(), key=lambda kv: -kv[1]):
        print(f"| {group} | {ms:.1f} | {100 * ms / profiled:.1f}% |")
    print("\n| operation | calls per step | ms per step | share |\n|---|---:|---:|---:|")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:args.top]:
        ms = e.self_cpu_time_total / 1e3 / args.steps
        print(f"| `{e.key[:70]}` | {e.count / args.steps:g} | {ms:.1f} | {100 * ms / profiled:.1f}% |")


if __name__ == "__main__":
    main()
