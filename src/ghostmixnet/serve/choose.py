"""How a model is served: its test-time views, each runtime's accuracy and speed, ``auto``'s pick, and the
queue's settings.

Accuracy is measured once per runtime file on validation images (never test images: choosing on them would
tune on the test set) and kept in the cache; speed is measured on this machine for two worker layouts (one
worker using every core, or one single-threaded worker per core) and kept too, keyed by the CPU. ``auto``
takes the fastest runtime whose single-view accuracy is within :data:`TOLERANCE` of PyTorch fp32's on the
same images; without images to measure on, only the fp32 runtimes, whose arithmetic is PyTorch's up to
rounding, are admitted.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..files import read_regular, write_text_atomic
from ..infer.logits import Normalization, normalize_uint8, tta_views
from .runtime import CPU, INT8, Classifier

VIEWS = (1, 2, 6)
"""Test-time views ``serve --views`` accepts: the image; it and its mirror; both also shifted both ways."""
DEFAULT_SHIFT = 2
"""The shift (pixels) of the six views when the model's config names none (the paper recipe's)."""
TOLERANCE = 0.003
"""How far below PyTorch fp32's single-view accuracy a runtime ``auto`` takes may score (0.3 points)."""
BATCH_BUDGET_S = 0.1
"""The longest one model call of the queue should take: it bounds the batch size."""
SPEED_BATCH = 32
"""Views per timed call (32 images of one view: what the service sees with 32 clients of one image each)."""


def views_logits(classify: Classifier, images: np.ndarray, views: int, shift: int,
                 normalization: Normalization | None, device: torch.device = CPU) -> torch.Tensor:
    """The mean logits (float32, CPU) of ``views`` views of (N, S, S, 3) uint8 ``images``, in one call."""
    x = normalize_uint8(images, device, normalization=normalization)
    stacked = x if views == 1 else torch.cat(tta_views(x, shift if views == 6 else 0))
    logits = classify(stacked).float().cpu()
    return logits.view(views, len(images), -1).mean(0)


@dataclass(frozen=True)
class Accuracy:
    """A runtime's top-1 accuracy on validation images, beside PyTorch fp32's on the same images."""

    images: int
    split: str
    single_view: float
    """The runtime's accuracy on one view of each image."""
    reference: float | None
    """PyTorch fp32's accuracy on one view (None: not measured, for an ONNX file without its PyTorch model)."""
    agreement: float | None
    """Share of the images on which the runtime's single-view top-1 class is PyTorch fp32's."""
    served: float
    """The runtime's accuracy with the views served."""
    views: int

    def admitted(self) -> bool:
        """Whether ``auto`` may take it: within :data:`TOLERANCE` of PyTorch fp32 (or nothing to compare)."""
        return self.reference is None or self.single_view >= self.reference - TOLERANCE


@dataclass(frozen=True)
class Speed:
    """A runtime's measured speed, with the worker layout that gave it."""

    workers: int
    threads: int
    """Threads per worker."""
    latency_ms: float
    """One image (all its views) alone, median."""
    per_image_ms: float
    """Model time per image (all its views) in a call of :data:`SPEED_BATCH` views, per worker."""
    images_per_s: float
    """All workers together, each calling with :data:`SPEED_BATCH` views."""


@dataclass(frozen=True)
class Queue:
    """How the service batches: ``workers`` each take up to ``max_batch`` images, waiting at most ``window``
    seconds for more when the queue runs short."""

    workers: int
    threads: int
    max_batch: int
    window: float


def queue_for(speed: Speed) -> Queue:
    """The queue a runtime's speed calls for: batches that take at most :data:`BATCH_BUDGET_S`, and a wait
    for companions of at most half of one image's latency (never over 10 ms)."""
    max_batch = int(min(256, max(1, BATCH_BUDGET_S * 1000 // max(speed.per_image_ms, 1e-3))))
    window = min(0.010, speed.latency_ms / 2000)
    return Queue(speed.workers, speed.threads, max_batch, round(window, 4))


def cpu_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def measure_speed(make: Callable[[int], Classifier], views: int, cores: int, repeats: int = 3,
                  size: int = 32) -> Speed:
    """Time the runtime that ``make(threads)`` opens on ``size``-pixel images, one worker of ``cores`` threads
    against ``cores`` workers of one thread (each its own classifier, calling at once), and keep the layout that
    classifies more images/s."""
    layouts = [(1, cores)] + ([(cores, 1)] if cores > 1 else [])
    best = None
    for workers, threads in layouts:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            speed = _time_layout([make(threads) for _ in range(workers)], views, threads, repeats, size)
        finally:
            torch.set_num_threads(before)
        if best is None or speed.images_per_s > best.images_per_s:
            best = speed
    return best


def _time_layout(classifiers: list[Classifier], views: int, threads: int, repeats: int, size: int) -> Speed:
    per_call = max(1, SPEED_BATCH // views)  # images per call: the time measured stays the same for any views
    one = torch.randn(views, 3, size, size)
    batch = torch.randn(views * per_call, 3, size, size)
    first = classifiers[0]
    first(one), first(batch)  # warm-up: first calls allocate and plan
    latency = []
    for _ in range(5):
        start = time.perf_counter()
        first(one)
        latency.append(time.perf_counter() - start)

    def work(classify: Classifier) -> None:
        classify(batch)
        for _ in range(repeats):
            classify(batch)

    start = time.perf_counter()
    runners = [threading.Thread(target=work, args=(c,)) for c in classifiers]
    for t in runners:
        t.start()
    for t in runners:
        t.join()
    seconds = time.perf_counter() - start
    images = len(classifiers) * (repeats + 1) * per_call
    per_image = seconds * len(classifiers) / images
    return Speed(len(classifiers), threads, round(1000 * float(np.median(latency)), 3), round(1000 * per_image, 3),
                 round(images / seconds, 1))


def predictions(classify: Classifier, images: np.ndarray, views: int, shift: int,
                normalization: Normalization | None, batch: int = 256) -> np.ndarray:
    """Top-1 classes of ``images`` with ``views`` views, ``batch`` images per call."""
    return np.concatenate([views_logits(classify, images[i:i + batch], views, shift, normalization).argmax(1).numpy()
                           for i in range(0, len(images), batch)])


def measure_accuracy(classify: Classifier, reference: np.ndarray | None, images: np.ndarray, labels: np.ndarray,
                     split: str, views: int, shift: int, normalization: Normalization | None,
                     single: np.ndarray | None = None) -> Accuracy:
    """``classify``'s accuracy on ``images`` with one view and with ``views`` views, and its agreement with
    ``reference``, PyTorch fp32's single-view predictions on them (None: none to compare with). ``single``:
    ``classify``'s single-view predictions where they are known already (PyTorch's are the reference)."""
    single = predictions(classify, images, 1, shift, normalization) if single is None else single
    served = single if views == 1 else predictions(classify, images, views, shift, normalization)
    return Accuracy(len(images), split, float((single == labels).mean()),
                    None if reference is None else float((reference == labels).mean()),
                    None if reference is None else float((reference == single).mean()),
                    float((served == labels).mean()), views)


def pick(candidates: dict[str, tuple[Speed, Accuracy | None]], log: Callable[[str], None]) -> str:
    """``auto``'s choice among measured runtimes: the fastest whose accuracy is admitted; a runtime in int8
    whose accuracy was not measured is never taken."""
    admitted = {}
    for name, (speed, accuracy) in candidates.items():
        if accuracy is None and name in INT8:
            log(f"auto: not {name}: its accuracy is unmeasured (give --data-dir)")
        elif accuracy is not None and not accuracy.admitted():
            log(f"auto: not {name}: {100 * accuracy.single_view:.2f}% on {accuracy.images} {accuracy.split} images, "
                f"over {100 * TOLERANCE:.1f} points below PyTorch fp32's {100 * accuracy.reference:.2f}%")
        else:
            admitted[name] = speed.images_per_s
    if not admitted:
        raise RuntimeError("auto: no runtime qualifies; name one with --runtime")
    choice = max(admitted, key=admitted.get)
    others = ", ".join(f"{n} {v:.0f}" for n, v in sorted(admitted.items(), key=lambda kv: -kv[1]) if n != choice)
    log(f"auto: {choice}, the fastest admitted ({admitted[choice]:.0f} images/s"
        + (f"; {others}" if others else "") + ")")
    return choice


class Record:
    """Measurements kept as JSON files in the cache folder, one per key (the runtime file, views, images or
    CPU): a damaged or foreign file is measured again."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, kind: str, *parts: str) -> Path:
        key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
        return self.folder / f"{kind}-{key}.json"

    def get(self, kind: str, cls: type, *parts: str):
        try:  # read_regular: a FIFO or device put in the cache is refused, not waited on
            return cls(**json.loads(read_regular(self.path(kind, *parts), "measurement")))
        except (OSError, ValueError, TypeError, DataError):
            return None

    def put(self, kind: str, value: object, *parts: str) -> None:
        """Keep ``value``; where it cannot be kept (a read-only cache, a folder in the way) it is measured again
        next time, which costs time, not correctness."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.path(kind, *parts), json.dumps(asdict(value)))
        except OSError:
            pass


def machine() -> str:
    """This CPU, for keying speed measurements: its model name, its instruction sets and the cores available."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    flags = hashlib.sha256(fields.get("flags", "").encode()).hexdigest()[:8]
    return f"{name}, flags {flags}, {cpu_cores()} cores"
