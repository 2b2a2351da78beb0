"""Where an int8 program loses accuracy: PyTorch's PT2E flow for ExecuTorch, layer by layer, before lowering.

The model's inference graph (``deploy/fold.py``) is quantized as ``export --format executorch-int8`` does
(XNNPACK's quantizer, calibrated on training images outside the validation split) and run in eager PyTorch
beside the float graph on test images. It prints, for each operation of the graph, the signal-to-noise ratio
of the quantized output against the float one (dB: 10 log10 of signal power over error power; the error is
accumulated from the input on), and then the top-1 accuracy of both and their agreement. A sudden drop at
one operation that the next ones do not recover is where to look; a gap that is already there in eager
PyTorch is quantization's, not the lowering's. ``--bn-affine`` rebuilds the graph as it was before its fix
(each block's affine on bn2's primary half a BatchNorm), which PT2E's preparation folds into a convolution
that the cheap convolution also reads: the drop it shows at the first block's ``conv2d_3`` was the cause.

    python benchmarks/int8_layers.py --data-dir ../shared/data
    python benchmarks/int8_layers.py --data-dir ../shared/data --bn-affine --images 2000
"""

from __future__ import annotations

import argparse
import copy
import math

import numpy as np
import torch
from torch.fx import Interpreter

from ghostmixnet.data.sources import load_data
from ghostmixnet.data.splits import calibration_images
from ghostmixnet.deploy.fold import FoldedGhostBlock, fold_for_inference
from ghostmixnet.deploy.pt2e import calibrate
from ghostmixnet.deploy.pte import capture, prepare_xnnpack
from ghostmixnet.infer.load import model_from_checkpoint
from ghostmixnet.infer.logits import normalize_uint8


class Recorder(Interpreter):
    """Runs a graph module and keeps every operation's tensor output, by node name."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__(module)
        self.outputs: dict[str, torch.Tensor] = {}

    def run_node(self, node):
        result = super().run_node(node)
        if node.op == "call_function" and isinstance(result, torch.Tensor):
            self.outputs[node.name] = result.detach().float()
        return result


def sqnr_db(reference: torch.Tensor, candidate: torch.Tensor) -> float:
    """10 log10(|reference|^2 / |reference - candidate|^2); infinite where they are equal."""
    noise = float((reference - candidate).pow(2).sum())
    return math.inf if noise == 0 else 10 * math.log10(float(reference.pow(2).sum()) / noise)


def as_batchnorms(folded: torch.nn.Module) -> torch.nn.Module:
    """The folded graph's affines as BatchNorms, as they were before PT2E's conv-BatchNorm folding was found."""
    for block in [m for m in folded.modules() if isinstance(m, FoldedGhostBlock)]:
        conv, bn = block.affine2, torch.nn.BatchNorm2d(block.affine2.out_channels, eps=0.0).eval()
        with torch.no_grad():
            bn.weight.copy_(conv.weight.flatten())
            bn.bias.copy_(conv.bias)
        block.affine2 = bn
    return folded


def layer_report(float_graph: torch.nn.Module, quantized: torch.nn.Module, images: torch.Tensor) -> list[str]:
    """One line per operation present in both graphs with the same output shape: name, op, SQNR, float range."""
    expected, got = Recorder(float_graph), Recorder(quantized)
    with torch.no_grad():
        expected.run(images)
        got.run(images)
    lines = []
    for node in float_graph.graph.nodes:
        a, b = expected.outputs.get(node.name), got.outputs.get(node.name)
        if a is not None and b is not None and a.shape == b.shape:
            lines.append(f"{node.name:28s} {str(node.target).split('.')[1]:22s} {sqnr_db(a, b):6.1f} dB   "
                         f"float range [{float(a.min()):7.3f}, {float(a.max()):7.3f}]")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default="pretrained", help="checkpoint or weights [pretrained]")
    parser.add_argument("--data-dir", default="data", help="folder holding the model's data")
    parser.add_argument("--images", type=int, default=1000, help="test images to score [1000]")
    parser.add_argument("--layer-images", type=int, default=200, help="of them, for the per-layer SNR [200]")
    parser.add_argument("--calibration", type=int, default=512, help="training images to calibrate on [512]")
    parser.add_argument("--bn-affine", action="store_true", help="the graph as it was before the fix")
    args = parser.parse_args(argv)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e  # the 'executorch' extra

    model, cfg, _ = model_from_checkpoint(args.checkpoint)
    splits = load_data(cfg.dataset, args.data_dir, **cfg.data_fields())
    cpu = torch.device("cpu")
    calibration = normalize_uint8(calibration_images(splits.train, args.calibration, seed=cfg.split_seed + 2), cpu,
                                  normalization=cfg.normalization)
    test = normalize_uint8(splits.test.images[:args.images], cpu, normalization=cfg.normalization)
    labels = torch.as_tensor(np.asarray(splits.test.labels[:args.images]))
    folded = fold_for_inference(model)[0]
    if args.bn_affine:
        folded = as_batchnorms(folded)
    graph = capture(folded, calibration[:1])
    float_graph = copy.deepcopy(graph)  # before preparation, which may rewrite it (that is what --bn-affine shows)
    prepared = prepare_xnnpack(graph)
    quantized = convert_pt2e(calibrate(prepared, folded, calibration.split(64), tolerance=math.inf))
    for line in layer_report(float_graph, quantized, test[:args.layer_images]):
        print(line)
    with torch.no_grad():
        reference = torch.cat([folded(x) for x in test.split(250)])
        candidate = torch.cat([quantized(x) for x in test.split(250)])
    accuracy = 100 * float((reference.argmax(1) == labels).float().mean())
    int8_accuracy = 100 * float((candidate.argmax(1) == labels).float().mean())
    agreement = 100 * float((reference.argmax(1) == candidate.argmax(1)).float().mean())
    print(f"{len(test)} test images: float {accuracy:.2f}%, int8 in eager PyTorch {int8_accuracy:.2f}%, "
          f"top-1 agreement {agreement:.2f}%")

if __name__ == "__main__":
    main()
