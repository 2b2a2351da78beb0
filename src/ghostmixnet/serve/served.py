"""A model made ready to serve: loaded once, put on the runtime asked for (or the one ``auto`` picks), with the
views, the queue's settings and what ``GET /model`` says of it."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import TrainConfig
from ..data.cifar import CLASSES
from ..data.sources import load_data
from ..data.splits import calibration_images
from ..errors import DataError, ServeError
from ..files import atomic_open, cache_dir, read_regular, to_stderr
from ..infer.calibrate import UNCALIBRATED, Calibration, calibration_of
from ..infer.load import load_classifier, model_classes
from ..infer.logits import Normalization, input_size
from ..infer.onnx import OnnxClassifier
from ..model.architectures import count_parameters
from ..model.checkpoint import resolve_checkpoint
from ..model.cost import total_macs
from ..version import __version__
from .choose import (
    DEFAULT_SHIFT,
    VIEWS,
    Accuracy,
    Queue,
    Record,
    Speed,
    cpu_cores,
    machine,
    measure_accuracy,
    measure_speed,
    pick,
    predictions,
    queue_for,
    views_logits,
)
from .runtime import (
    CALIBRATION_IMAGES,
    CPU,
    INT8,
    RUNTIMES,
    Classifier,
    Source,
    available,
    open_classifier,
    runtime_file,
)

CHECK_IMAGES = 2000
"""Validation images each runtime's accuracy is measured on (once; kept in the cache)."""


@dataclass
class ServedModel:
    """A model ready to serve: one classifier per worker of the queue, and what ``GET /model`` says of it."""

    classifiers: list[Classifier]
    info: dict[str, Any] = field(default_factory=dict)
    views: int = 1
    """Test-time views per image (:data:`~ghostmixnet.serve.choose.VIEWS`), their logits averaged."""
    shift: int = DEFAULT_SHIFT
    calibration: Calibration = UNCALIBRATED
    classes: tuple[str, ...] = CLASSES
    """The names of the model's classes, in the order of its logits."""
    normalization: Normalization | None = None
    """The model's input normalisation (None: CIFAR-10's)."""
    queue: Queue = Queue(1, 1, 256, 0.005)
    device: torch.device = CPU
    image_size: int = 32
    """The side of the images the model takes; uploads are read at it."""

    def logits(self, images: np.ndarray, worker: int = 0) -> torch.Tensor:
        """The logits (float32, CPU) of (N, S, S, 3) uint8 images of the model's size S, on worker ``worker``'s
        classifier; followed in each row by the image's features when the calibration's score reads them
        (:meth:`split`)."""
        return views_logits(self.classifiers[worker], images, self.views, self.shift, self.normalization, self.device)


    def split(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What :meth:`logits` gave, as logits and features (None when the calibration reads none)."""
        if not self.calibration.needs_features:
            return outputs, None
        return outputs[:, :len(self.classes)], outputs[:, len(self.classes):]


@dataclass(frozen=True)
class CheckData:
    """The model's own data as serving uses it: training images to calibrate int8 on, and validation images
    (test images only where the model's run kept none) to measure each runtime's accuracy on."""

    calibration: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    split: str

    @property
    def key(self) -> str:
        return hashlib.sha256(self.images.tobytes() + self.labels.astype(np.int64).tobytes()).hexdigest()[:16]


def check_data(cfg: TrainConfig | None, data_dir: Path | None, count: int) -> CheckData | None:
    """:class:`CheckData` from ``data_dir`` (None without one): ``count`` images of the validation split."""
    if data_dir is None:
        return None
    cfg = cfg or TrainConfig()
    splits = load_data(cfg.dataset, Path(data_dir), **cfg.data_fields())
    held = splits.test if splits.val_is_test else splits.val
    n = min(count, len(held))
    return CheckData(calibration_images(splits.train, CALIBRATION_IMAGES, seed=cfg.split_seed + 2),
                     held.images[:n], np.asarray(held.labels[:n]), "test" if splits.val_is_test else "validation")


def default_views(cfg: TrainConfig | None) -> int:
    """The views a model's run evaluated with: six with shifts, two without, else one."""
    if cfg is None or not cfg.tta:
        return 1
    return 6 if cfg.tta_shift else 2


def load_served_model(path: Path, device: torch.device = CPU, runtime: str | None = None,
                      views: int | None = None, data_dir: Path | None = None, check_images: int = CHECK_IMAGES,
                      cache: Path | None = None, cores: int | None = None,
                      log: Callable[[str], None] = to_stderr) -> ServedModel:
    """A checkpoint, run folder, weights file (``pretrained``: the shipped weights) or ONNX file ready to serve on
    ``runtime`` (``auto``: the fastest admitted, :func:`~ghostmixnet.serve.choose.pick`; None: the model's own,
    PyTorch for a checkpoint and ONNX Runtime for an ONNX file) with ``views`` views
    (None: those its run evaluated with). With ``data_dir`` (the model's data), int8 runtimes are calibrated on
    its training images and every runtime's accuracy is measured on ``check_images`` validation images.
    Files and measurements are kept in ``cache`` (default: the package's cache folder). ``cores``: how many cores
    the model may use (default: all this process may run on)."""
    path = Path(path)
    file = path if path.suffix.lower() == ".onnx" else resolve_checkpoint(path)
    model, cfg, contents = load_classifier(file)
    source = Source(model if isinstance(model, torch.nn.Module) else None, cfg, file,
                    calibration_of(contents, str(file)))
    if source.calibration.needs_features and isinstance(model, OnnxClassifier) and not model.has_features:
        raise ServeError(f"{file}: its 'not sure' score ({source.calibration.score}) reads the model's features, which "
                         "this ONNX file does not give; export it again from its checkpoint")
    runtime = runtime or ("torch" if source.model is not None else "onnxruntime")
    size = input_size(model) or 32
    views = default_views(cfg) if views is None else views
    if views not in VIEWS:
        raise ServeError(f"--views must be one of {', '.join(map(str, VIEWS))}, not {views}")
    bench = Measurements(source, views, check_data(cfg, data_dir, check_images),
                         Path(cache) if cache is not None else cache_dir("serve"),
                         (cores or cpu_cores()) if device.type == "cpu" else 1, device, log, size)
    measured = {name: bench.measure(name) for name in bench.candidates(runtime)}
    if not measured:
        raise ServeError("no runtime can serve this model here; install one: pip install 'ghostmixnet[deploy]'")
    chosen = pick({n: (s, a) for n, (s, a, _) in measured.items()}, log) if runtime == "auto" else runtime
    speed, accuracy, run_file = measured[chosen]
    queue = queue_for(speed)
    if chosen == "torch" and device.type == "cpu":
        torch.set_num_threads(queue.threads)  # PyTorch's thread count is per process
    classifiers = [open_classifier(chosen, source, run_file, queue.threads, device, source.calibration.needs_features)
                   for _ in range(queue.workers)]
    classes = model_classes(model, cfg)
    info = _describe(source, classes, file, contents)
    info.update(runtime=chosen, views=views, image_size=size, runtime_file=str(run_file) if run_file else None,
                accuracy=asdict(accuracy) if accuracy else None, speed=asdict(speed), queue=asdict(queue),
                alternatives={n: {"images_per_s": s.images_per_s, "single_view_accuracy": a.single_view if a else None}
                              for n, (s, a, _) in measured.items()})
    return ServedModel(classifiers, info, views, bench.shift, source.calibration, classes, bench.normalization, queue,
                       device, size)


class Measurements:
    """Each runtime's file, speed and accuracy for one model and views: read from the cache folder, or made and
    measured there the first time. PyTorch fp32's single-view predictions, the reference every accuracy is
    compared with, are computed once and kept too."""

    def __init__(self, source: Source, views: int, data: CheckData | None, folder: Path, cores: int,
                 device: torch.device, log: Callable[[str], None], size: int = 32) -> None:
        self.source, self.views, self.data, self.folder, self.size = source, views, data, folder, size
        self.cores, self.device, self.log, self.record = cores, device, log, Record(folder)
        cfg = source.cfg
        self.shift = cfg.tta_shift if cfg is not None and cfg.tta_shift else DEFAULT_SHIFT
        self.normalization = cfg.normalization if cfg is not None else None
        self._reference: np.ndarray | None = None

    def candidates(self, runtime: str) -> list[str]:
        """The runtimes to measure: ``runtime`` itself (refused in one line if it cannot serve here), or for
        ``auto`` every runtime that can, each one left out logged with why."""
        names = []
        for name in RUNTIMES if runtime == "auto" else (runtime,):
            reason = available(name, self.source)
            if reason is None and name in INT8 and self.data is None:
                reason = f"{name}: needs the model's training images to calibrate on: give --data-dir"
            if reason is None:
                names.append(name)
            elif runtime == "auto":
                self.log(f"auto: skipping {reason}")
            else:
                raise ServeError(reason)
        return names

    def measure(self, name: str) -> tuple[Speed, Accuracy | None, Path | None]:
        """``name``'s speed on this machine, its accuracy on the check images (None without them), its file."""
        data = self.data
        run_file = runtime_file(name, self.source, data.calibration if data else None, self.folder, self.log)
        key = (name, run_file.name if run_file else f"{self.source.digest}-{__version__}", str(self.views))
        where = (machine(), str(self.device), str(self.cores))

        def make(threads: int) -> Classifier:
            return open_classifier(name, self.source, run_file, threads, self.device)

        speed = self.record.get("speed", Speed, *key, *where)
        if speed is None:
            self.log(f"timing {name} with {self.views} view(s) on this machine (once; kept in {self.folder})")
            speed = measure_speed(make, self.views, self.cores, size=self.size)
            self.record.put("speed", speed, *key, *where)
        if data is None:
            return speed, None, run_file
        accuracy = self.record.get("accuracy", Accuracy, *key, data.key)
        if accuracy is None:
            reference = self.reference()
            self.log(f"measuring {name}'s accuracy on {len(data.images)} {data.split} images (once)")
            accuracy = measure_accuracy(make(self.cores), reference, data.images, data.labels, data.split, self.views,
                                        self.shift, self.normalization, single=reference if name == "torch" else None)
            self.record.put("accuracy", accuracy, *key, data.key)
        return speed, accuracy, run_file

    def reference(self) -> np.ndarray | None:
        """PyTorch fp32's single-view predictions on the check images (None for an ONNX file given alone)."""
        if self.source.model is None or self.data is None:
            return None
        if self._reference is None:
            kept = self.record.path("reference", self.source.digest, self.data.key).with_suffix(".npy")
            try:
                self._reference = np.load(io.BytesIO(read_regular(kept, "kept predictions")), allow_pickle=False)
            except (OSError, ValueError, DataError):
                self.log(f"measuring PyTorch fp32 on {len(self.data.images)} {self.data.split} images (once; kept "
                         f"in {self.folder})")
                classify = open_classifier("torch", self.source, None, self.cores, self.device)
                self._reference = predictions(classify, self.data.images, 1, self.shift, self.normalization)
                try:  # kept to save time next start; where it cannot be kept, computed again then
                    self.folder.mkdir(parents=True, exist_ok=True)
                    with atomic_open(kept, "wb") as f:
                        np.save(f, self._reference, allow_pickle=False)
                except OSError:
                    pass
        return self._reference


def describe(served: ServedModel) -> str:
    """One line on how the model is served: runtime, views, measured accuracy and speed, the queue."""
    info, queue = served.info, served.queue
    accuracy = info.get("accuracy")
    measured = (f"{100 * accuracy['served']:.2f}% on {accuracy['images']} {accuracy['split']} images"
                if accuracy else "accuracy not measured (give --data-dir)")
    speed = info["speed"]
    return (f"runtime {info['runtime']}, {served.views} view(s): {measured}; {speed['latency_ms']:.1f} ms for one "
            f"image, {speed['images_per_s']:.0f} images/s in batches; queue: {queue.workers} worker(s) of "
            f"{queue.threads} thread(s), batches up to {queue.max_batch} images, window {1000 * queue.window:.1f} ms")


def _describe(source: Source, classes: tuple[str, ...], file: Path, contents: dict[str, Any]) -> dict[str, Any]:
    """Name, file, format, classes, size and cost, and the test accuracy its run recorded."""
    cfg = source.cfg
    info: dict[str, Any] = {"name": f"{cfg.model if cfg else 'model'} ({file.name})", "file": str(file),
                            "classes": list(classes), "format": "onnx" if source.model is None else "pytorch"}
    if source.model is not None:
        info["parameters"] = count_parameters(source.model)
        info["macs_per_image"] = total_macs(source.model)
    test, recorded = file.parent / "test.json", contents.get("metadata", {}).get("test_accuracy")
    if test.is_file():
        info["test_accuracy"] = json.loads(test.read_text()).get("accuracy")
    elif recorded is not None:
        info["test_accuracy"] = json.loads(recorded)
    return info
