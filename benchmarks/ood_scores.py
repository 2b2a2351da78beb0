"""Which "none of these" score tells CIFAR-10 images from images of no CIFAR-10 class: chosen on one group of
out-of-distribution sets, reported on another.

Every score of ``ghostmixnet.infer.novelty`` (energy and maximum softmax at the model's temperature; k-nearest
neighbours at several k and bank sizes; Mahalanobis; ViM at several subspace sizes) is fit on training images
(never validation or test ones) and scored by AUROC:

- **selection**, validation images against the *selection* sets: real photos of clothing (``--select-photos``)
  and the training images with their pixels shuffled. Among the settings whose stored arrays fit ``--max-mb``
  (0.8 MB: what the shipped weights file, 6.16 MB, has room for under the project's 7 MB a file), the highest
  mean AUROC over them wins (ties: the smaller arrays);
- **report**, the 10,000 test images against the *report* sets, never used for choosing: real photos
  (``--report-photos``, e.g. fruit and rubbish), scikit-learn's handwritten digits (8x8 grey, upsampled), and
  three generated sets (uniform noise, smooth colour blobs, test images with their 8x8 patches shuffled).

For each score the threshold that keeps 95% of the validation images is set, and the share of every set it
marks "not sure" reported beside AUROC and the false-positive rate at 95% recall. Every score here reads one
view per image. Writes OUT/ood-scores.json and prints a table per phase; the last line names the winner.

    python benchmarks/ood_scores.py pretrained --data-dir ../shared/data --out docs/model-card/ood \\
        --select-photos PHOTOS/clothing --report-photos PHOTOS/fruits360 PHOTOS/trashnet
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from ghostmixnet.data.images import ImageError, load_image
from ghostmixnet.data.splits import load_splits, stratified_subset
from ghostmixnet.infer.calibrate import calibration_of
from ghostmixnet.infer.load import model_from_checkpoint
from ghostmixnet.infer.logits import predict_features
from ghostmixnet.infer.novelty import energy, fit_feature_score, max_softmax
from ghostmixnet.model.checkpoint import resolve_checkpoint
from ghostmixnet.report.ood import auroc, fpr_at_recall, synthetic_ood_sets

# Settings screened per feature score (each one fit and scored on the selection sets).
CANDIDATES: dict[str, list[dict]] = {
    "knn": [{"k": k, "bank_size": b} for b in (1024, 4096) for k in (1, 5, 20, 50)],
    "mahalanobis": [{}],
    "vim": [{"components": p} for p in (16, 64, 256)],
}


def photo_folder(folder: Path, limit: int) -> np.ndarray:
    """Up to ``limit`` readable images of ``folder`` (sorted by name), read as predict reads a photo."""
    images = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file())[:limit]:
        try:
            images.append(load_image(path)[0])
        except ImageError:
            continue
    if not images:
        raise SystemExit(f"{folder}: no readable images")
    return np.stack(images)


def digits() -> np.ndarray:
    """scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels) as 32x32 RGB, dark ink on white."""
    from sklearn.datasets import load_digits  # carried in the package: no download

    grey = 255 - (load_digits().images * 255 / 16).round().astype(np.uint8)
    big = torch.nn.functional.interpolate(torch.from_numpy(grey).float()[:, None], size=32, mode="bilinear",
                                          align_corners=False)
    return big.clamp(0, 255).round().byte()[:, 0, :, :, None].expand(-1, -1, -1, 3).numpy().copy()


def scorers(train: dict, temperature: float) -> dict[str, tuple[callable, int, dict]]:
    """Every candidate as name -> (score of (logits, features), stored bytes, its settings)."""
    out = {"energy": (lambda lg, ft: energy(lg, temperature), 0, {}),
           "msp": (lambda lg, ft: max_softmax(lg, temperature), 0, {})}
    for kind, options in CANDIDATES.items():
        for option in options:
            fitted = fit_feature_score(kind, train["features"], train["labels"], train["logits"], **option)
            name = kind + "".join(f" {k}={v}" for k, v in option.items())
            out[name] = ((lambda s: lambda lg, ft: s(ft, lg))(fitted), fitted.size_bytes(), option)
    return out


def phase(scores: dict, inside: dict, val: dict, sets: dict[str, dict]) -> dict[str, dict]:
    """Per score: AUROC, FPR at 95% recall and the share marked at the validation threshold, per set."""
    table = {}
    for name, (score, size, _) in scores.items():
        ins = score(inside["logits"], inside["features"]).numpy()
        threshold = np.quantile(score(val["logits"], val["features"]).numpy(), 0.05)
        row = {"bytes": size, "inside_marked": float((ins < threshold).mean())}
        for set_name, data in sets.items():
            out = score(data["logits"], data["features"]).numpy()
            row[set_name] = {"auroc": auroc(ins, out), "fpr95": fpr_at_recall(ins, out),
                             "marked": float((out < threshold).mean())}
        row["mean_auroc"] = float(np.mean([row[s]["auroc"] for s in sets]))
        table[name] = row
    return table


def print_table(title: str, table: dict, sets: list[str]) -> None:
    print(f"\n{title}: AUROC % (marked % at the 95%-validation threshold)")
    print("| score | " + " | ".join(sets) + " | mean | stored |")
    print("|---" * (len(sets) + 3) + "|")
    for name, row in table.items():
        cells = [f"{100 * row[s]['auroc']:.2f} ({100 * row[s]['marked']:.1f})" for s in sets]
        print(f"| {name} | " + " | ".join(cells) + f" | {100 * row['mean_auroc']:.2f} | {row['bytes'] / 1e6:.2f} MB |")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="checkpoint, run folder, weights file or 'pretrained'")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--select-photos", type=Path, nargs="*", default=[], help="photo folders for selection")
    parser.add_argument("--report-photos", type=Path, nargs="*", default=[], help="photo folders for the report")
    parser.add_argument("--fit-images", type=int, default=10000, help="training images the scores are fit on")
    parser.add_argument("--photos", type=int, default=600, help="images per photo folder at most [600]")
    parser.add_argument("--generated", type=int, default=1000, help="images per generated set [1000]")
    parser.add_argument("--test-images", type=int, default=None, help="test images (default all)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-mb", type=float, default=0.8, help="largest stored arrays a winner may have [0.8]")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.time()
    path = resolve_checkpoint(Path(args.model))
    model, cfg, ckpt = model_from_checkpoint(path)
    calibration = calibration_of(ckpt, path.name)
    splits = load_splits(args.data_dir, cfg.val_size, cfg.split_seed)
    fit = stratified_subset(splits.train, args.fit_images, seed=cfg.split_seed + 3)
    test = stratified_subset(splits.test, args.test_images, seed=0)
    cpu = torch.device("cpu")

    def run(images: np.ndarray, labels: np.ndarray | None = None) -> dict:
        logits, features = predict_features(model, images, cpu, normalization=cfg.normalization)
        return {"logits": logits, "features": features, "labels": labels}

    train, val, inside = run(fit.images, fit.labels), run(splits.val.images), run(test.images)
    shuffled = synthetic_ood_sets(fit.images, args.generated, seed=1)["pixel-shuffled test images"]
    select = {"pixel-shuffled training images": run(shuffled)}
    select.update({f"photos: {p.name}": run(photo_folder(p, args.photos)) for p in args.select_photos})
    generated = synthetic_ood_sets(test.images, args.generated, seed=0)
    report = {f"photos: {p.name}": run(photo_folder(p, args.photos)) for p in args.report_photos}
    report["digits (scikit-learn)"] = run(digits())
    report.update({name: run(generated[name]) for name in
                   ("uniform noise", "smooth colour blobs", "patch-shuffled test images")})
    scores = scorers(train, calibration.temperature)
    chosen_table = phase(scores, val, val, select)
    fits = [n for n in chosen_table if chosen_table[n]["bytes"] <= args.max_mb * 1e6]
    best = max(fits, key=lambda n: (round(chosen_table[n]["mean_auroc"], 4), -chosen_table[n]["bytes"]))
    report_table = phase(scores, inside, val, report)
    print_table("selection (validation images against the selection sets)", chosen_table, list(select))
    print_table("report (test images against the report sets)", report_table, list(report))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    record = {"model": path.name, "fit_images": len(fit), "val_images": len(splits.val), "test_images": len(test),
              "temperature": calibration.temperature,
              "selection_sets": {k: len(v["logits"]) for k, v in select.items()},
              "report_sets": {k: len(v["logits"]) for k, v in report.items()}, "selection": chosen_table,
              "report": report_table, "max_mb": args.max_mb, "chosen": best, "chosen_settings": scores[best][2],
              "machine": platform.processor() or platform.machine(), "torch": torch.__version__, "commit": commit,
              "date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - started, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ood-scores.json").write_text(json.dumps(record, indent=1))
    row = report_table[best]
    print(f"chosen on the selection sets, among arrays up to {args.max_mb} MB: {best} "
          f"(selection mean AUROC {100 * chosen_table[best]['mean_auroc']:.2f}%); "
          f"report mean AUROC {100 * row['mean_auroc']:.2f}%, test images marked {100 * row['inside_marked']:.1f}%")
    return record


if __name__ == "__main__":
    main()
