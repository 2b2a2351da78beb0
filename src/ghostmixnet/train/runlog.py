"""What a run tells its user: the log it prints and keeps, and the notes it makes about its data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..config import TrainConfig
from ..data.sources import name_list
from ..data.splits import Splits
from .progress import Progress


class RunLog:
    """Prints a line and appends it to the run's ``train.log`` (on rank 0; other ranks stay silent)."""

    def __init__(self, path: Path | None, echo: Callable[[str], None] | None = None) -> None:
        self.path, self.echo = path, echo

    def __call__(self, line: str) -> None:
        if self.path is None:
            return
        self.show(line)
        self.record(line)

    def show(self, line: str) -> None:
        """Print a line without keeping it in the log (on rank 0)."""
        if self.path is None:
            return
        if self.echo is None:
            print(line, flush=True)  # flushed, so redirected logs of long runs stay current
        else:
            self.echo(line)

    def record(self, line: str) -> None:
        """Append a line to the log without printing it (on rank 0)."""
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(line + "\n")


def selection_note(splits: Splits) -> str:
    """Which images choose the checkpoint and which are reported, in the words of where they came from."""
    if splits.val_is_test:
        return ("selecting checkpoints on the TEST set (--val-size 0, the paper's habit): "
                "the test accuracy reported is optimistic, not an unbiased estimate")
    origin = splits.record.get("origin")
    if not origin:  # CIFAR: a split of the training set, and the official test set
        return f"selecting checkpoints on a {len(splits.val)}-image validation split of the training set"
    return (f"selecting checkpoints on the {len(splits.val)} validation images ({origin['val']}), reporting the "
            f"{len(splits.test)} test images ({origin['test']})")


def data_note(cfg: TrainConfig) -> str:
    if cfg.dataset == "cifar10":
        return ""
    return f" of {cfg.dataset} ({cfg.num_classes} classes: {name_list(cfg.class_names, 5)})"


def reading_progress(log: Callable[[str], None], enabled: bool) -> Callable[[str], Callable[[int, int], None]]:
    """Progress displays for decoding a folder's images (the first read of a folder; later ones hit its cache)."""
    def start(what: str) -> Callable[[int, int], None]:
        bars: list[Progress] = []

        def update(done: int, total: int) -> None:
            if not bars:
                bars.append(Progress(total, f"reading {what}:", log, every=max(1, total // 10), enabled=enabled,
                                     unit="image"))
            bars[0].update(done)
            if done == total:
                bars[0].close()
        return update
    return start
