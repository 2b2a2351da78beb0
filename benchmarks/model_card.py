"""The figures of a model card, measured: a weights file (by default the shipped one) on CIFAR-10.

- size and cost: parameters, multiply-accumulates per image, file size and sha256;
- accuracy on the validation split and on the 10,000 test images, with the test-time augmentation its
  config names (as `ghostmixnet eval` scores) and without; per-class test accuracy;
- calibration: expected calibration error (15 equal-width confidence bins) and reliability plots, with the
  plain softmax and with the temperature the weights carry (fit on the validation split; one is fit here
  when they carry none);
- "none of these": how well the score the weights' threshold is set on (energy unless their calibration names
  another) tells the test images from four generated sets of images of no CIFAR-10 class
  (``ghostmixnet.report.ood.synthetic_ood_sets``: no download), as AUROC and the false-positive rate at 95%
  recall, beside the same figures for the maximum softmax probability, and the share of each set the threshold
  marks "not sure";
- the same weights exported to ONNX, fp32 and int8 (static quantization calibrated on 512 training
  images), scored with ONNX Runtime on the same test images, one view per image as a device would run them;
- with ``--checkpoint`` (the run's full-precision best.pt), its test accuracy beside the fp16 file's.

Each comparison (fp32 checkpoint, ONNX fp32, ONNX int8) is made on plain, single-view predictions against the
weights file's, with the number of test images on which the answer differs. The test-time views are left out
of them to keep the card to a few CPU-minutes: on two cores six views of 10,000 images take about 7 minutes.

Writes OUT/model-card.json, OUT/reliability.png (calibrated) and OUT/reliability-uncalibrated.png and prints
the figures; the last line is the headline.

    python benchmarks/model_card.py --data-dir ../shared/data --out docs/model-card
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from ghostmixnet.data.cifar import CLASSES
from ghostmixnet.data.splits import calibration_images, load_splits
from ghostmixnet.deploy.export import export_onnx
from ghostmixnet.deploy.quantize import quantize_onnx
from ghostmixnet.infer.calibrate import calibration_bins, calibration_of, fit_calibration, predict_for
from ghostmixnet.infer.evaluate import evaluate
from ghostmixnet.infer.load import model_from_checkpoint
from ghostmixnet.infer.logits import predict_logits
from ghostmixnet.infer.onnx import OnnxClassifier
from ghostmixnet.model.architectures import count_parameters
from ghostmixnet.model.checkpoint import resolve_checkpoint
from ghostmixnet.model.cost import total_macs
from ghostmixnet.model.weights import PRETRAINED, sha256_of
from ghostmixnet.report.calibration import plot_reliability
from ghostmixnet.report.ood import auroc, fpr_at_recall, synthetic_ood_sets


def accuracy(logits: torch.Tensor, labels: np.ndarray) -> float:
    return float((logits.argmax(1).numpy() == labels).mean())


def compare(logits: torch.Tensor, reference: torch.Tensor, labels: np.ndarray, name: str) -> dict:
    """``name``'s plain test accuracy and on how many test images its answer differs from ``reference``'s."""
    return {f"{name}_test_accuracy_no_tta": accuracy(logits, labels),
            f"{name}_disagreements": int((logits.argmax(1) != reference.argmax(1)).sum())}


def ood_figures(model, test_logits: torch.Tensor, test_features, sets: dict[str, np.ndarray], calibration,
                tta: bool, tta_shift: int) -> dict:
    """Per generated set: AUROC and FPR at 95% recall of the calibration's score (energy unless it names another)
    and of the plain maximum softmax probability against the test images, and the share the threshold marks not
    sure."""
    def msp(logits):
        return logits.softmax(1).max(1).values.numpy()

    inside, inside_msp = calibration.scores(test_logits, test_features).numpy(), msp(test_logits)
    figures = {"test_not_sure": float((inside < calibration.threshold).mean())}
    for name, images in sets.items():
        logits, features = predict_for(calibration, model, images, torch.device("cpu"), tta=tta, tta_shift=tta_shift)
        score = calibration.scores(logits, features)
        figures[name] = {"images": len(images),
                         "score_auroc": auroc(inside, score.numpy()),
                         "score_fpr_at_95": fpr_at_recall(inside, score.numpy()),
                         "msp_auroc": auroc(inside_msp, msp(logits)),
                         "msp_fpr_at_95": fpr_at_recall(inside_msp, msp(logits)),
                         "not_sure": float(calibration.unsure(score).float().mean())}
    return figures


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=PRETRAINED, help="weights file or checkpoint [the shipped weights]")
    parser.add_argument("--checkpoint", type=Path, default=None, help="the full-precision checkpoint to compare")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--out", type=Path, default=Path("model-card"))
    parser.add_argument("--skip-onnx", action="store_true", help="leave out the ONNX fp32 and int8 figures")
    parser.add_argument("--ood-images", type=int, default=2000, help="images per generated set [2000]")
    args = parser.parse_args(argv)
    cpu = torch.device("cpu")
    path = resolve_checkpoint(Path(args.weights))
    model, cfg, ckpt = model_from_checkpoint(path)
    splits = load_splits(args.data_dir, cfg.val_size, cfg.split_seed)
    test, val = splits.test, splits.val
    card: dict = {"weights": path.name, "bytes": path.stat().st_size, "sha256": sha256_of(path),
                  "parameters": count_parameters(model), "macs_per_image": total_macs(model),
                  "tta": cfg.tta, "tta_shift": cfg.tta_shift, "recorded": ckpt.get("metadata", {})}

    def plain(classifier):  # one view per image, as a device would run it
        return predict_logits(classifier, test.images, cpu)

    # One pass over the test set with the config's views gives the accuracy (what `ghostmixnet eval` prints),
    # per class, calibration and the in-distribution scores; the plain pass is the baseline of the fp32 and
    # ONNX comparisons.
    labels = np.asarray(test.labels)
    calibration = calibration_of(ckpt, path.name)
    logits, features = predict_for(calibration, model, test.images, cpu, tta=cfg.tta, tta_shift=cfg.tta_shift)
    hit = logits.argmax(1).numpy() == labels
    card["test_accuracy"] = float(hit.mean())
    card["per_class_test_accuracy"] = {c: float(hit[labels == k].mean()) for k, c in enumerate(CLASSES)}
    val_result = evaluate(model, val.images, val.labels, cpu, tta=cfg.tta, tta_shift=cfg.tta_shift)
    card["val_accuracy"] = val_result.accuracy
    card["calibration_source"] = "the weights file" if calibration.fitted else "fit here on the validation split"
    if not calibration.fitted:
        calibration = fit_calibration(val_result.logits, val.labels, fitted_on="validation split")
    card["temperature"], card["threshold"] = calibration.temperature, calibration.threshold
    card["calibration_uncalibrated"] = calibration_bins(logits.softmax(1).numpy(), labels)
    card["calibration"] = calibration_bins(calibration.probabilities(logits).numpy(), labels)
    fp16_plain = plain(model)
    card["test_accuracy_no_tta"] = accuracy(fp16_plain, labels)
    args.out.mkdir(parents=True, exist_ok=True)
    plot_reliability(card["calibration_uncalibrated"], args.out / "reliability-uncalibrated.png",
                     f"{cfg.model}, CIFAR-10 test, plain softmax")
    plot_reliability(card["calibration"], args.out / "reliability.png",
                     f"{cfg.model}, CIFAR-10 test, T={calibration.temperature:.2f}")
    card["ood_score"] = calibration.score
    card["ood"] = ood_figures(model, logits, features, synthetic_ood_sets(test.images, args.ood_images, seed=0),
                              calibration, cfg.tta, cfg.tta_shift)
    if args.checkpoint is not None:
        full, _, _ = model_from_checkpoint(args.checkpoint)
        card.update(compare(plain(full), fp16_plain, labels, "checkpoint"))
    if not args.skip_onnx:
        with tempfile.TemporaryDirectory() as tmp:
            float_path = export_onnx(model, cfg, Path(tmp) / "float.onnx")
            int8_path = quantize_onnx(float_path, Path(tmp) / "int8.onnx",
                                      calibration_images(splits.train, 512, seed=cfg.split_seed + 2))
            card.update(compare(plain(OnnxClassifier(float_path)), fp16_plain, labels, "onnx_fp32"))
            card.update(compare(plain(OnnxClassifier(int8_path)), fp16_plain, labels, "onnx_int8"))
            card["onnx_fp32_bytes"], card["onnx_int8_bytes"] = float_path.stat().st_size, int8_path.stat().st_size
    (args.out / "model-card.json").write_text(json.dumps(card, indent=2) + "\n")
    for key, value in card.items():
        if key not in ("calibration", "calibration_uncalibrated", "per_class_test_accuracy", "recorded", "ood"):
            print(f"{key}: {value}")
    print("per-class test accuracy: " + ", ".join(f"{c} {100 * a:.1f}%"
                                                 for c, a in card["per_class_test_accuracy"].items()))
    print(f"expected calibration error: {100 * card['calibration_uncalibrated']['ece']:.2f}% plain softmax, "
          f"{100 * card['calibration']['ece']:.2f}% at temperature {card['temperature']:.4f}")
    print(f"test images marked not sure: {100 * card['ood']['test_not_sure']:.2f}%")
    for name, f in card["ood"].items():
        if name != "test_not_sure":
            print(f"{name}: {card['ood_score']} AUROC {100 * f['score_auroc']:.2f}% "
                  f"FPR@95 {100 * f['score_fpr_at_95']:.2f}%; "
                  f"max softmax AUROC {100 * f['msp_auroc']:.2f}% FPR@95 {100 * f['msp_fpr_at_95']:.2f}%; "
                  f"marked not sure {100 * f['not_sure']:.2f}%")
    print(f"model_card_test_accuracy: {100 * card['test_accuracy']:.2f}")
    return card


if __name__ == "__main__":
    main()
