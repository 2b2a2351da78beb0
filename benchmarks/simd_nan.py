"""Narrow down the 512-bit NaN: which operation of the Ghost module torch.compile's 512-bit CPU code gets wrong.

On a 2-core Xeon with AVX-512 BF16 and AMX (2026-11-26, torch 2.14.1), the compiled ``fast`` step under bf16
autocast computed NaN gradients from its second step, with ``torch._inductor.config.cpp.simdlen = 512`` (that
machine's default) and not with 256 (docs/recipe-search.md). ``train.compile.CPU_SIMD_BITS`` holds every CPU
compile to 256 bits since. This script compiles each piece of the Ghost module on its own, under bf16 autocast,
at each vector width this CPU supports, and compares its input and weight gradients with eager PyTorch's:

    python benchmarks/simd_nan.py
    python benchmarks/simd_nan.py --bits 512 --batch 16 --channels 64 --size 8

A piece whose gradients are not finite, or far from eager's, at 512 bits and right at 256 is the op to report
upstream and to scope the workaround to. On a CPU without AVX-512, inductor cannot generate 512-bit code (it
falls back to scalar code), so the script says so and the 512-bit rows are skipped: the fault cannot be seen.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch import nn

from ghostmixnet.model.layers import GhostModule

Piece = Callable[[int, int], tuple[nn.Module, str]]


class Cat(nn.Module):
    """The Ghost module's concatenation of the primary and cheap halves, and its slice to the output width."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[1] // 2
        return torch.cat([x[:, :half].relu(), (x[:, half:] * 2).relu()], dim=1)[:, : x.shape[1] - 1]


def pieces(channels: int) -> dict[str, nn.Module]:
    """The Ghost module's operations one at a time, then whole."""
    return {
        "pointwise conv": nn.Conv2d(channels, channels, 1, bias=False),
        "BatchNorm (training)": nn.BatchNorm2d(channels),
        "ReLU": nn.ReLU(),
        "pointwise conv, BatchNorm, ReLU": nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False),
                                                         nn.BatchNorm2d(channels), nn.ReLU()),
        "depthwise 3x3 conv, BatchNorm, ReLU": nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU()),
        "concatenate and slice": Cat(),
        "GhostModule (whole)": GhostModule(channels, channels, relu=True),
    }


def gradients(module: nn.Module, x: torch.Tensor, compiled_bits: int | None) -> list[torch.Tensor]:
    """The input's and parameters' gradients of ``mean(out^2)`` under bf16 autocast: eager (``None``) or compiled
    with inductor's CPU vectors held to ``compiled_bits``."""
    import torch._inductor.config as inductor_config

    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    fn: Callable[[torch.Tensor], torch.Tensor] = module
    if compiled_bits is not None:
        torch._dynamo.reset()
        inductor_config.cpp.simdlen = compiled_bits
        fn = torch.compile(module)
    with torch.autocast("cpu", torch.bfloat16):
        out = fn(x)
    out.float().square().mean().backward()
    return [x.grad, *(p.grad for p in module.parameters())]


def compare(module: nn.Module, x: torch.Tensor, bits: int) -> tuple[bool, float]:
    """Whether the compiled gradients at ``bits`` are all finite, and their largest difference from eager's,
    relative to eager's largest magnitude."""
    eager = gradients(module, x, None)
    compiled = gradients(module, x, bits)
    finite = all(bool(torch.isfinite(g).all()) for g in compiled)
    scale = max(float(g.abs().max()) for g in eager) or 1.0
    error = max(float((a.float() - b.float()).abs().max()) for a, b in zip(compiled, eager)) / scale
    return finite, error


def supported_bits() -> list[int]:
    """The vector widths inductor can generate code for on this CPU."""
    from torch._inductor import cpu_vec_isa

    return sorted({isa.bit_width() for isa in cpu_vec_isa.valid_vec_isa_list()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", default="256,512", help="vector widths to compile at [256,512]")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--tolerance", type=float, default=0.05, help="relative gradient error called wrong [0.05]")
    args = parser.parse_args()
    available = supported_bits()
    print(f"torch {torch.__version__}; CPU capability {torch.backends.cpu.get_cpu_capability()}; inductor vector "
          f"widths here: {available or 'none'}")
    widths = [int(b) for b in args.bits.split(",")]
    for bits in widths:
        if bits not in available:
            print(f"{bits}-bit: this CPU cannot run inductor's {bits}-bit code (it needs "
                  f"{'AVX-512' if bits == 512 else 'AVX2'}); the fault cannot be seen here")
    widths = [b for b in widths if b in available]
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.channels, args.size, args.size)
    print("\n| piece | " + " | ".join(f"{b}-bit: finite, rel. error" for b in widths) + " |")
    print("|---|" + "---|" * len(widths))
    for name, module in pieces(args.channels).items():
        cells = []
        for bits in widths:
            finite, error = compare(module, x, bits)
            verdict = "ok" if finite and error <= args.tolerance else "WRONG"
            cells.append(f"{'yes' if finite else 'NO'}, {error:.3g} ({verdict})")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
