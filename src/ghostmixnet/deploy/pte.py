"""ExecuTorch programs (``.pte``): the on-device format PyTorch ships for Android and iOS, delegated to XNNPACK.

A program has a fixed batch size (1 by default, what a phone classifies at a time): ExecuTorch plans its
memory ahead for one input shape. fp32 programs are the folded inference graph (``fold.py``) lowered as it
is; int8 ones are quantized first with PyTorch's PT2E flow and XNNPACK's quantizer (int8 weights per output
channel, int8 activations calibrated on training images). The config, class names and normalization go
into ``FILE.pte.json`` beside the program, as they go into an ONNX file's metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..config import TrainConfig
from ..errors import ExportError
from ..files import atomic_open, entry_problem, write_text_atomic
from .fold import fold_for_inference
from .pt2e import calibrate
from .runtimes import in_fixed_batches, require


def sidecar(path: Path) -> Path:
    """Where a program's metadata lives: ``FILE.pte.json``."""
    return Path(path).with_name(Path(path).name + ".json")


def capture(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """``model`` as a graph module from ``torch.export``, with a free batch size so that calibration can run in
    batches whatever the program's own."""
    any_batch = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    return torch.export.export(model, (torch.zeros(2, *example.shape[1:]),), dynamic_shapes=any_batch).module()


def prepare_xnnpack(graph: nn.Module) -> nn.Module:
    """A captured graph prepared for XNNPACK's int8 (weights per channel), its observers not yet run."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (  # optional: the 'executorch' extra
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    return prepare_pt2e(graph, XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True)))


def quantize_pt2e(model: nn.Module, example: torch.Tensor, calibration: torch.Tensor, batch: int = 64) -> nn.Module:
    """``model`` quantized for XNNPACK (int8, weights per channel) with activation ranges observed on
    ``calibration`` (normalized images); refused if preparing it changed its function (``pt2e.calibrate``)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e  # optional: the 'executorch' extra

    return convert_pt2e(calibrate(prepare_xnnpack(capture(model, example)), model, calibration.split(batch)))


def export_pte(model: nn.Module, cfg: TrainConfig, path: Path, batch: int = 1,
               calibration: torch.Tensor | None = None) -> Path:
    """Write ``model`` as an XNNPACK-delegated ExecuTorch program for (``batch``, 3, S, S) inputs at the model's
    size S, int8
    when ``calibration`` images (normalized) are given, with its metadata in :func:`sidecar`."""
    require("executorch")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner  # optional
    from executorch.exir import to_edge_transform_and_lower

    folded, _ = fold_for_inference(model)
    example = torch.zeros(batch, 3, model.image_size, model.image_size)
    if calibration is not None:
        folded = quantize_pt2e(folded, example, calibration)
    program = torch.export.export(folded, (example,))
    buffer = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
    with atomic_open(path, "wb") as f:
        f.write(buffer)
    mean, std = cfg.normalization
    write_text_atomic(sidecar(path), json.dumps({
        "ghostmixnet_config": cfg.to_dict(), "classes": list(cfg.class_names), "mean": list(mean), "std": list(std),
        "batch": batch, "int8": calibration is not None}, indent=1))
    return Path(path)


class PteClassifier:
    """An ExecuTorch program run by ExecuTorch's Python runtime, called like a PyTorch model on normalized
    (N, 3, S, S) tensors of any N at its :attr:`image_size` S: they go through the program's fixed batch, the
    last one padded.

    ``threads`` resizes ExecuTorch's process-wide thread pool before the program is loaded: XNNPACK keeps the
    pool it was loaded with, so a program loaded earlier must not run after a resize (it can hang)."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        require("executorch")
        from executorch.runtime import Runtime  # optional: the 'executorch' extra

        path = Path(path)
        problem = entry_problem(path)
        if problem is not None:
            raise ExportError(f"ExecuTorch program {path} {problem}")
        if threads:
            set_threads(threads)
        try:
            self.method = Runtime.get().load_program(path).load_method("forward")
        except Exception as e:  # the runtime raises RuntimeError or ValueError for any unreadable file
            raise ExportError(f"{path} is not a usable ExecuTorch program: {str(e).splitlines()[0]}") from None
        sizes = list(self.method.metadata.input_tensor_meta(0).sizes())
        if len(sizes) != 4 or sizes[1] != 3 or sizes[2] != sizes[3]:
            raise ExportError(f"{path} takes inputs of shape {sizes}, not (N, 3, S, S) images; use a program "
                              "written by `ghostmixnet export --format executorch`")
        self.batch, self.image_size = int(sizes[0]), int(sizes[2])

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.detach().float().cpu().contiguous()
        return in_fixed_batches(images, self.batch, lambda chunk: self.method.execute([chunk])[0])

    def eval(self) -> PteClassifier:
        return self


def set_threads(threads: int) -> None:
    """Size ExecuTorch's process-wide thread pool (XNNPACK's kernels run on it); only before loading a program."""
    from executorch.extension.pybindings import portable_lib  # optional: the 'executorch' extra

    reset = getattr(portable_lib, "_unsafe_reset_threadpool", None)
    if reset is not None:  # a private call: another release may not have it, and then keeps its default
        reset(threads)
