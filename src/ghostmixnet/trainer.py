"""A training run from start to finish: data, model, optimizer, the epoch loop, checkpoints, outputs.

Exact resume rests on one rule: every random generator (shuffling, augmentation in the workers,
mixing, dropout) is reseeded at the start of each epoch from ``(seed, epoch)``. The state at an
epoch boundary is therefore the model, optimizer, scheduler and scaler alone, which ``last.pt``
holds; a resumed run replays the remaining epochs exactly as an uninterrupted one.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import __version__
from .augment import train_transform
from .checkpoint import FORMAT_VERSION, load_checkpoint, load_weights, save_atomic, unwrap
from .config import TrainConfig
from .data import CLASSES, ImageDataset, Splits, load_splits
from .engine import EvalResult, Progress, evaluate, resolve_device, slow_precision_warning, train_one_epoch
from .mix import BatchMixer
from .models import build_model, count_parameters
from .report import plot_curves, write_metrics, write_text_atomic

LAST, BEST = "last.pt", "best.pt"


class RunError(Exception):
    """A run cannot start or continue as asked; the message says why and what to do."""


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 32-bit seed for one epoch of one run."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class RunLog:
    """Prints a line and appends it to the run's ``train.log``."""

    def __init__(self, path: Path, echo: Callable[[str], None] | None = None) -> None:
        self.path, self.echo = path, echo

    def __call__(self, line: str) -> None:
        if self.echo is None:
            print(line, flush=True)  # flushed, so redirected logs of long runs stay current
        else:
            self.echo(line)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def selection_note(splits: Splits) -> str:
    if splits.val_is_test:
        return ("selecting checkpoints on the TEST set (--val-size 0, the paper's habit): "
                "the test accuracy reported is optimistic, not an unbiased estimate")
    return f"selecting checkpoints on a {len(splits.val)}-image validation split of the training set"


def eval_summary(result: EvalResult) -> dict[str, Any]:
    return {
        "accuracy": result.accuracy,
        "loss": result.loss,
        "per_class_accuracy": {c: float(a) for c, a in zip(CLASSES, result.per_class_accuracy)},
        "confusion": result.confusion.tolist(),
    }


def train(cfg: TrainConfig, data_dir: Path, out_dir: Path, *, device: str = "auto", resume: bool = False,
          download: bool = False, stop_after: int | None = None, log_every: int = 50,
          echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train (or, with ``resume``, continue) the run in ``out_dir``; returns the run's summary.

    ``stop_after`` ends this invocation after that many epochs, leaving a resumable run.
    """
    out_dir = Path(out_dir)
    if resume:
        if not (out_dir / LAST).is_file():
            raise RunError(f"cannot resume: {out_dir / LAST} does not exist")
    elif (out_dir / LAST).exists():
        raise RunError(f"{out_dir} already holds a run; continue it with --resume {out_dir} or choose another --out")
    # Data first: a missing or bad data folder should not leave an empty run folder behind.
    splits = load_splits(data_dir, cfg.val_size, cfg.split_seed, cfg.train_subset, download=download)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(out_dir / "train.log", echo)
    dev = resolve_device(device)

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.num_classes, cfg.width, cfg.dropout).to(dev)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=cfg.restart_epochs, T_mult=cfg.restart_mult, eta_min=cfg.min_lr)
    scaler = torch.amp.GradScaler(dev.type, enabled=cfg.precision == "fp16")

    start_epoch, best_acc, best_epoch, history = 0, -1.0, 0, []
    if resume:
        ckpt = load_checkpoint(out_dir / LAST)
        load_weights(model, ckpt["model"], out_dir / LAST)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        start_epoch, best_acc, best_epoch = ckpt["epoch"], ckpt["best_acc"], ckpt["best_epoch"]
        history = list(ckpt["history"])
        log(f"resuming {out_dir} after epoch {start_epoch} of {cfg.epochs}")
    cfg.save(out_dir / "config.json")

    val_name = "test-as-val" if splits.val_is_test else "val"
    write_text_atomic(out_dir / "run.json", json.dumps({
        "ghostmixnet": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": str(dev), "threads": torch.get_num_threads(),
        "data_dir": str(Path(data_dir).resolve()), "train_images": len(splits.train), "val_images": len(splits.val),
        "val_is_test": splits.val_is_test, "parameters": count_parameters(model),
    }, indent=2) + "\n")
    log(f"{cfg.model} (width {cfg.width}, {count_parameters(model):,} parameters), recipe {cfg.recipe}, "
        f"{cfg.epochs} epochs, batch {cfg.batch_size}, {cfg.precision}, on {dev}; "
        f"{len(splits.train):,} training images; {selection_note(splits)}")

    loader_gen = torch.Generator()
    loader = DataLoader(ImageDataset(splits.train, train_transform(cfg.augment)), batch_size=cfg.batch_size,
                        shuffle=True, drop_last=False, num_workers=cfg.num_workers, generator=loader_gen,
                        pin_memory=dev.type == "cuda")
    warning = slow_precision_warning(dev, cfg.precision)
    if warning:
        log(warning)
    train_model = torch.compile(model) if cfg.compile else model

    epoch = start_epoch
    while epoch < cfg.epochs and (stop_after is None or epoch - start_epoch < stop_after):
        seed = epoch_seed(cfg.seed, epoch)
        loader_gen.manual_seed(seed)
        torch.manual_seed(seed)
        mixer = BatchMixer(cfg.mix_prob, cfg.mixup_share, cfg.mixup_alpha, cfg.cutmix_alpha, seed=seed)
        lr = optimizer.param_groups[0]["lr"]
        progress = Progress(len(loader), f"epoch {epoch + 1}/{cfg.epochs}", log, every=log_every)
        stats = train_one_epoch(train_model, loader, optimizer, mixer, scaler, dev, cfg.precision,
                                cfg.label_smoothing, cfg.channels_last, progress)
        scheduler.step()
        val = evaluate(model, splits.val.images, splits.val.labels, dev, cfg.precision,
                       channels_last=cfg.channels_last)
        epoch += 1
        history.append({"epoch": epoch, "val_split": "test" if splits.val_is_test else "val", "lr": lr,
                        "train_loss": stats.loss, "val_loss": val.loss,
                        "val_acc": val.accuracy, "images_per_s": stats.images / stats.seconds,
                        "seconds": stats.seconds})
        state = {"format": FORMAT_VERSION, "model": unwrap(model).state_dict(), "config": cfg.to_dict(),
                 "epoch": epoch, "val_acc": val.accuracy, "val_is_test": splits.val_is_test}
        improved = val.accuracy > best_acc
        if improved:
            best_acc, best_epoch = val.accuracy, epoch
            save_atomic(state, out_dir / BEST)
        save_atomic({**state, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "scaler": scaler.state_dict(), "best_acc": best_acc, "best_epoch": best_epoch,
                     "history": history}, out_dir / LAST)
        write_metrics(out_dir / "metrics.csv", history)
        plot_curves(history, out_dir, "test set (selection)" if splits.val_is_test else "validation")
        log(f"epoch {epoch}/{cfg.epochs} lr {lr:.3g} train_loss {stats.loss:.4f} {val_name}_loss {val.loss:.4f} "
            f"{val_name}_acc {100 * val.accuracy:.2f}%{' (best)' if improved else ''} "
            f"{stats.images / stats.seconds:.1f} img/s {stats.seconds:.0f}s")

    summary: dict[str, Any] = {"run_dir": str(out_dir), "epochs_done": epoch, "epochs": cfg.epochs,
                               "best_val_acc": best_acc, "best_epoch": best_epoch, "val_is_test": splits.val_is_test}
    if epoch < cfg.epochs:
        log(f"stopped after epoch {epoch} of {cfg.epochs}; continue with: ghostmixnet train --resume {out_dir}")
        return summary

    best = load_checkpoint(out_dir / BEST)
    load_weights(model, best["model"], out_dir / BEST)
    t0 = time.perf_counter()
    test = evaluate(model, splits.test.images, splits.test.labels, dev, cfg.precision,
                    channels_last=cfg.channels_last)
    result = {"split": "test", "images": len(splits.test), "checkpoint": BEST, "best_epoch": best_epoch,
              "selected_on": "test set (optimistic: --val-size 0)" if splits.val_is_test
              else f"validation split ({len(splits.val)} training images)",
              "best_val_acc": best_acc, **eval_summary(test), "seconds": time.perf_counter() - t0}
    write_text_atomic(out_dir / "test.json", json.dumps(result, indent=2) + "\n")
    log(f"test accuracy of best.pt (epoch {best_epoch}, {val_name}_acc {100 * best_acc:.2f}%): "
        f"{100 * test.accuracy:.2f}% on {len(splits.test):,} images"
        + (" [selected on the test set itself: optimistic]" if splits.val_is_test else ""))
    summary["test_acc"] = test.accuracy
    return summary
