"""The figures of a model card, measured: a weights file (by default the shipped one) on CIFAR-10.

- size and cost: parameters, multiply-accumulates per image, file size and sha256;
- accuracy on the validation split and on the 10,000 test images, with the test-time augmentation its
  config names (as `ghostmixnet eval` scores) and without; per-class test accuracy;
- calibration: expected calibration error (15 equal-width confidence bins) and a reliability plot;
- the same weights exported to ONNX, fp32 and int8 (static quantization calibrated on 512 training
  images), scored with ONNX Runtime on the same test images;
- with ``--checkpoint`` (the run's full-precision best.pt), its test accuracy beside the fp16 file's.

Writes OUT/model-card.json and OUT/reliability.png and prints the figures; the last line is the headline.

    python benchmarks/model_card.py --data-dir ../shared/data --out docs/model-card
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from ghostmixnet.checkpoint import model_from_checkpoint, resolve_checkpoint
from ghostmixnet.cost import stage_costs
from ghostmixnet.data import CLASSES, load_splits
from ghostmixnet.engine import evaluate, predict_logits
from ghostmixnet.export import OnnxClassifier, export_onnx
from ghostmixnet.models import count_parameters
from ghostmixnet.pretrained import PRETRAINED, sha256_of
from ghostmixnet.quantize import calibration_images, quantize_onnx
from ghostmixnet.report import calibration_bins, plot_reliability


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=PRETRAINED, help="weights file or checkpoint [the shipped weights]")
    parser.add_argument("--checkpoint", type=Path, default=None, help="the full-precision checkpoint to compare")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--out", type=Path, default=Path("model-card"))
    parser.add_argument("--skip-onnx", action="store_true", help="leave out the ONNX fp32 and int8 figures")
    args = parser.parse_args()
    cpu = torch.device("cpu")
    path = resolve_checkpoint(Path(args.weights))
    model, cfg, _ = model_from_checkpoint(path)
    splits = load_splits(args.data_dir, cfg.val_size, cfg.split_seed)
    test, val = splits.test, splits.val
    card: dict = {"weights": path.name, "bytes": path.stat().st_size, "sha256": sha256_of(path),
                  "parameters": count_parameters(model), "macs_per_image": sum(r.macs for r in stage_costs(model)),
                  "tta": cfg.tta, "tta_shift": cfg.tta_shift}

    def score(classifier, images, labels, tta=cfg.tta):
        return evaluate(classifier, images, labels, cpu, tta=tta, tta_shift=cfg.tta_shift)

    result = score(model, test.images, test.labels)
    card["test_accuracy"] = result.accuracy
    card["test_accuracy_no_tta"] = score(model, test.images, test.labels, tta=False).accuracy
    card["val_accuracy"] = score(model, val.images, val.labels).accuracy
    card["per_class_test_accuracy"] = {c: float(a) for c, a in zip(CLASSES, result.per_class_accuracy)}
    probs = predict_logits(model, test.images, cpu, tta=cfg.tta, tta_shift=cfg.tta_shift).softmax(1).numpy()
    card["calibration"] = calibration_bins(probs, test.labels)
    args.out.mkdir(parents=True, exist_ok=True)
    plot_reliability(card["calibration"], args.out / "reliability.png", f"{cfg.model}, CIFAR-10 test")
    if args.checkpoint is not None:
        full, _, _ = model_from_checkpoint(args.checkpoint)
        card["checkpoint_test_accuracy"] = score(full, test.images, test.labels).accuracy
    if not args.skip_onnx:
        with tempfile.TemporaryDirectory() as tmp:
            float_path = export_onnx(model, cfg, Path(tmp) / "float.onnx")
            int8_path = quantize_onnx(float_path, Path(tmp) / "int8.onnx",
                                      calibration_images(splits.train, 512, seed=cfg.split_seed + 2))
            card["onnx_fp32_test_accuracy"] = score(OnnxClassifier(float_path), test.images, test.labels).accuracy
            card["onnx_int8_test_accuracy"] = score(OnnxClassifier(int8_path), test.images, test.labels).accuracy
            card["onnx_fp32_bytes"], card["onnx_int8_bytes"] = float_path.stat().st_size, int8_path.stat().st_size
    (args.out / "model-card.json").write_text(json.dumps(card, indent=2) + "\n")
    for key, value in card.items():
        if key not in ("calibration", "per_class_test_accuracy"):
            print(f"{key}: {value}")
    print("per-class test accuracy: " + ", ".join(f"{c} {100 * a:.1f}%"
                                                 for c, a in card["per_class_test_accuracy"].items()))
    print(f"expected calibration error: {100 * card['calibration']['ece']:.2f}%")
    print(f"model_card_test_accuracy: {100 * card['test_accuracy']:.2f}")


if __name__ == "__main__":
    main()
