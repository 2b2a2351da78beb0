"""Where and in what arithmetic a model runs: the device, the precision and the memory format, resolved once
(:class:`Compute`) and used alike by training, evaluation, prediction and serving."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but PyTorch sees no CUDA GPU here; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps was asked for but Apple MPS is not available here; use --device cpu")
    return device


def native_cpu_support(precision: str) -> bool | None:
    """Whether this CPU computes ``precision`` (bf16/fp16) natively (AVX512-BF16, AMX, ...); None if unknown."""
    try:
        check = {"bf16": torch.ops.mkldnn._is_mkldnn_bf16_supported, "fp16": torch.ops.mkldnn._is_mkldnn_fp16_supported}
        return bool(check[precision]())
    except (AttributeError, RuntimeError):  # a private probe: it may be gone in another release
        return None


def int8_dot_product(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU has int8 dot-product instructions (x86 VNNI, Arm's dot product); None if unknown.

    Without them, x86 int8 kernels multiply uint8 by int8 into saturating 16-bit sums, which 8-bit weights can
    overflow; 7-bit weights cannot. Read from /proc/cpuinfo's flags (Linux), or from ``cpuinfo`` text.
    """
    try:
        text = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[-1].split())
    if not flags:
        return None
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"})


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` becomes the fastest precision the device computes natively: bf16 on CUDA GPUs that have it
    (fp16 with a gradient scaler on older ones), bf16 on CPUs with native bf16, fp32 otherwise."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and native_cpu_support("bf16"):
        return "bf16"
    return "fp32"


def prepare_device(device: torch.device) -> None:
    """Process-wide switches of the fast path on ``device``: on CUDA, cuDNN times its convolution algorithms
    once per shape and keeps the fastest (a training run's shapes are fixed, so the search pays off)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def slow_precision_warning(device: torch.device, precision: str) -> str | None:
    """A warning when autocast on this CPU would be emulated (no AVX512-BF16/AMX or FP16 units): often 10x slower."""
    if device.type != "cpu" or precision not in AUTOCAST_DTYPES or native_cpu_support(precision) is not False:
        return None
    return (f"warning: this CPU has no native {precision} support (capability "
            f"{torch.backends.cpu.get_cpu_capability()}), so {precision} autocast is emulated and usually far "
            "slower than fp32; consider --precision fp32")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to ``precision`` (bf16/fp16, resolved: not ``auto``) on ``device``, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])


@dataclass(frozen=True)
class Compute:
    """Where and in what arithmetic a model runs, resolved once and passed along: the device, the
    precision (never ``auto``) and the memory format."""

    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False

    @classmethod
    def resolve(cls, device: torch.device, precision: str = "auto", channels_last: bool = False) -> Compute:
        """``precision`` ``auto`` becomes what ``device`` computes natively (:func:`resolve_precision`)."""
        return cls(device, resolve_precision(precision, device), channels_last)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of this precision on this device."""
        return autocast(self.device, self.precision)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def as_compute(compute: Compute | torch.device) -> Compute:
    """A :class:`Compute`; a bare device means fp32 on it."""
    return compute if isinstance(compute, Compute) else Compute(torch.device(compute))


def quiet_cpu_compiler() -> None:
    """Keep torch's C++-extension module from warning, as it is first imported by a CPU compile, that it found no
    CUDA runtime (``No CUDA runtime is found, using CUDA_HOME=...``): true of every CPU, and nothing to act on."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
