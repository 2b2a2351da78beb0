"""``torch.compile`` for training: the mode for the device, the CPU's vector width, CUDA-graph step marks, and
a clear error when compilation fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..device import quiet_cpu_compiler
from ..errors import RunError


def resolve_compile_mode(mode: str, device: torch.device, distributed: bool = False) -> str:
    """``auto`` becomes ``reduce-overhead`` (CUDA graphs) for a single process on a CUDA GPU, else ``default``."""
    if mode != "auto":
        return mode
    return "reduce-overhead" if device.type == "cuda" and not distributed else "default"


CPU_SIMD_BITS = 256
"""Vector width of the CPU code torch.compile generates. Its 512-bit (AVX-512) kernels compute non-finite
gradients for the Ghost module under bf16 autocast (torch 2.14.1: a NaN loss from the second step on;
``tests/train/test_compile.py`` pins it); its 256-bit ones are correct. Convolutions run in oneDNN either way."""


def compile_model(model: nn.Module | Callable, mode: str, device: torch.device, distributed: bool = False) -> Any:
    """``torch.compile`` of a model (or a function calling one) in ``mode`` (:attr:`TrainConfig.compile_mode`,
    ``auto`` resolved for ``device``). Call
    :func:`mark_step` before each training step: with CUDA graphs, it tells the replayed graphs that the
    last step's outputs are done with. On the CPU the generated code is held to :data:`CPU_SIMD_BITS`."""
    if device.type == "cpu":
        # Imported here, not at the top: torch's compiler packages take over a second to import, which
        # every command of the tool would pay, also those that never compile.
        import torch._inductor.config as inductor_config

        inductor_config.cpp.simdlen = CPU_SIMD_BITS
        quiet_cpu_compiler()
    mode = resolve_compile_mode(mode, device, distributed)
    return torch.compile(model, mode=None if mode == "default" else mode)


def mark_step() -> None:
    """A new training step begins (needed by compiled models that replay CUDA graphs; harmless otherwise)."""
    torch.compiler.cudagraph_mark_step_begin()


def compile_failure(error: Exception) -> bool:
    """Whether ``error`` came from torch.compile (e.g. no C++ compiler, or no Triton for the GPU)."""
    # Heavy imports kept off the start-up path, as in compile_model.
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor.exc import InductorError

    return isinstance(error, (TorchDynamoException, InductorError))


def compile_error(error: Exception) -> RunError:
    """The clear error for a torch.compile failure: what failed, and to train without it."""
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return RunError(f"torch.compile failed ({type(error).__name__}: {first_line[:300]}); train without it: add "
                    "--no-compile (same results, slower)")
