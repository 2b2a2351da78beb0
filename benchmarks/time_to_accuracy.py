"""Time to accuracy: test accuracy after a fixed budget of training time, `fast` recipe beside `paper`.

Both recipes train the same model on this machine on the default compute path (batched augmentation,
bf16 where the hardware has it natively, torch.compile) for the same budget of training time
(compilation included, validation excluded); each then scores the checkpoint its validation split
chose, once, on the 10,000 CIFAR-10 test images.

- fast: a one-cycle schedule needs its length up front, so the number of epochs that fits the budget
  is measured first (a short timed run) and saved in OUT/calibration.json; later invocations reuse it,
  so seeds added later train exactly as many epochs. The time limit still applies as a guard.
- paper: the paper's 200-epoch recipe, stopped when the budget runs out.

Runs are resumable folders (OUT/fast/seed-N, OUT/paper/seed-N); finished ones are read back, so seeds
can be added or the paper run made in a later invocation. The last line is the headline figure:
the mean test accuracy of the fast recipe over its seeds (of the paper recipe when the fast one is left out).

    python benchmarks/time_to_accuracy.py --data-dir ../shared/data --minutes 60 --seeds 0,1
    python benchmarks/time_to_accuracy.py --data-dir ../shared/data --minutes 3 --train-subset 5000  # quick
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from ghostmixnet.config import make_config
from ghostmixnet.data import load_cifar10
from ghostmixnet.seeds import run_seeds, seeds_markdown
from ghostmixnet.throughput import training_throughput


def seeds_arg(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def calibrate(args: argparse.Namespace, common: dict) -> dict:
    """The epochs of the fast recipe that fit the budget, from a short timed run of its training step."""
    path = args.out / "calibration.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved["minutes"] == args.minutes and saved["train_subset"] == args.train_subset:
            print(f"calibration read from {path}: {saved['epochs']} epochs")
            return saved
    cfg = make_config("fast", **common)
    data = load_cifar10(args.data_dir, train=True)
    needed = (args.calibration_steps + 3) * cfg.batch_size
    measured = training_throughput(cfg, data.subset(np.arange(min(needed, len(data)))), args.calibration_steps)
    train_images = min(args.train_subset or len(data), len(data) - cfg.val_size)
    # Compilation happens twice in a run (the full batches, then the epoch's last, partial one); the
    # rest of the budget goes to steps at the measured rate, with a small margin.
    seconds_for_steps = 60 * args.minutes - 2 * measured.warmup_seconds
    epochs = max(1, math.floor(args.margin * seconds_for_steps * measured.images_per_s / train_images))
    saved = {"minutes": args.minutes, "train_subset": args.train_subset, "images_per_s": measured.images_per_s,
             "compile_seconds": measured.warmup_seconds, "precision": measured.precision,
             "train_images": train_images, "epochs": epochs}
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=2) + "\n")
    print(f"calibration: {measured.images_per_s:.1f} images/s ({measured.precision}), first steps "
          f"{measured.warmup_seconds:.0f} s -> {epochs} epochs of {train_images:,} images fit {args.minutes:g} min")
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="folder holding cifar-10-batches-py")
    parser.add_argument("--minutes", type=float, default=60.0, help="training time per run [60]")
    parser.add_argument("--seeds", type=seeds_arg, default=[0, 1],
                        help="seeds of the fast recipe; empty (--seeds '') to leave it out [0,1]")
    parser.add_argument("--paper-seeds", type=seeds_arg, default=[0],
                        help="seeds of the paper recipe; empty (--paper-seeds '') to leave it out [0]")
    parser.add_argument("--train-subset", type=int, default=None, help="train on this many images (quick runs)")
    parser.add_argument("--epochs", type=int, default=None, help="fast recipe epochs, instead of calibrating")
    parser.add_argument("--calibration-steps", type=int, default=30, help="timed steps of the calibration [30]")
    parser.add_argument("--margin", type=float, default=0.95, help="share of the budget the steps may fill [0.95]")
    parser.add_argument("--out", type=Path, default=Path("runs/time-to-accuracy"), help="parent folder of the runs")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if not args.seeds and not args.paper_seeds:
        parser.error("give seeds for at least one recipe (--seeds, --paper-seeds)")
    common = {"train_subset": args.train_subset}
    limit = 60 * args.minutes
    fast = paper = None
    if args.seeds:
        epochs = args.epochs or calibrate(args, common)["epochs"]
        fast = run_seeds("fast", args.seeds, args.data_dir, args.out / "fast", {**common, "epochs": epochs},
                         args.device, time_limit=limit)
        print(f"\nfast recipe, {epochs} epochs, {args.minutes:g} min budget:\n{seeds_markdown(fast)}")
    if args.paper_seeds:
        paper = run_seeds("paper", args.paper_seeds, args.data_dir, args.out / "paper", common,
                          args.device, time_limit=limit)
        print(f"paper recipe, stopped at {args.minutes:g} min:\n{seeds_markdown(paper)}")
    if fast is not None:
        print(f"fast_test_accuracy: {100 * fast['test_mean']:.2f}")
    else:
        print(f"paper_test_accuracy: {100 * paper['test_mean']:.2f}")


if __name__ == "__main__":
    main()
