"""``ghostmixnet serve``: a classification service and its web page (FastAPI, an optional extra).

Requests that arrive together are classified together: each one's images join a queue, and a worker
runs the model on whatever is queued (up to ``max_batch`` images) after waiting at most ``window``
seconds for more, so under concurrent load the service runs at the model's batch throughput. Uploads
are read into memory with a size limit and parsed there: nothing from a request is written to disk.
Every refusal is a JSON ``{"error": ...}`` with a 4xx status, and the server stays up.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations as real types.
import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.cifar import CLASSES
from ..device import resolve_device
from ..infer.calibrate import UNCALIBRATED, UNSURE, Calibration, calibration_of
from ..infer.load import load_classifier, model_classes
from ..infer.logits import Normalization, predict_logits
from ..model.architectures import count_parameters
from ..model.checkpoint import resolve_checkpoint
from ..model.cost import total_macs
from ..model.weights import PRETRAINED
from .uploads import DEFAULT_LIMITS, BadInput, Limits, decode_image, parse_multipart, png_data_url, read_limited

PAGE = Path(__file__).with_name("static") / "index.html"


@dataclass
class ServedModel:
    """A model ready to serve and what ``GET /model`` says of it."""

    model: Any
    device: torch.device
    info: dict[str, Any] = field(default_factory=dict)
    tta: bool = False
    tta_shift: int = 0
    calibration: Calibration = UNCALIBRATED
    classes: tuple[str, ...] = CLASSES
    """The names of the model's classes, in the order of its logits."""
    normalization: Normalization | None = None
    """The model's input normalisation (None: CIFAR-10's)."""

    def logits(self, images: np.ndarray) -> torch.Tensor:
        return predict_logits(self.model, images, self.device, tta=self.tta, tta_shift=self.tta_shift,
                              normalization=self.normalization)


def load_served_model(path: Path, device: torch.device) -> ServedModel:
    """A checkpoint, run folder, weights file (``pretrained``: the shipped weights) or ONNX file (fp32 or int8)
    as a :class:`ServedModel` (refused at load unless it gives one logit per class of its own class list), with
    its class names, name, size, cost,
    calibration, and the test accuracy its run recorded (beside it in ``test.json``, or in a weights file's
    metadata)."""
    path = Path(path)
    source = path if path.suffix.lower() == ".onnx" else resolve_checkpoint(path)
    model, cfg, contents = load_classifier(source)
    classes = model_classes(model, cfg)
    info: dict[str, Any] = {"name": f"{cfg.model if cfg else 'model'} ({source.name})", "file": str(source),
                            "classes": list(classes), "format": "onnx" if source.suffix == ".onnx" else "pytorch"}
    if isinstance(model, torch.nn.Module):
        info["parameters"] = count_parameters(model)
        info["macs_per_image"] = total_macs(model)
        model = model.to(device)
    test, recorded = source.parent / "test.json", contents.get("metadata", {}).get("test_accuracy")
    if test.is_file():
        info["test_accuracy"] = json.loads(test.read_text()).get("accuracy")
    elif recorded is not None:
        info["test_accuracy"] = json.loads(recorded)
    calibration = calibration_of(contents, str(source))
    return ServedModel(model, device, info, tta=bool(cfg.tta) if cfg else False, tta_shift=cfg.tta_shift if cfg else 0,
                       calibration=calibration, classes=classes, normalization=cfg.normalization if cfg else None)


class Batcher:
    """Classifies the images of concurrent requests together (one model call per batch)."""

    def __init__(self, served: ServedModel, max_batch: int = 256, window: float = 0.005) -> None:
        self.served, self.max_batch, self.window = served, max_batch, window
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.batches = 0

    async def classify(self, images: np.ndarray) -> np.ndarray:
        """The logits of ``images``, computed in a batch with whatever else is queued."""
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((images, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            deadline = loop.time() + self.window
            count = len(items[0][0])
            while count < self.max_batch and (left := deadline - loop.time()) > 0:
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), left))
                    count += len(items[-1][0])
                except asyncio.TimeoutError:
                    break
            batch = np.concatenate([images for images, _ in items])
            try:
                logits = (await loop.run_in_executor(None, self.served.logits, batch)).numpy()
            except Exception as e:  # noqa: BLE001 - tell the waiting requests, keep serving
                for _, future in items:
                    future.set_exception(e)
                continue
            self.batches += 1
            start = 0
            for images, future in items:
                future.set_result(logits[start:start + len(images)])
                start += len(images)


def create_app(served: ServedModel, limits: Limits = DEFAULT_LIMITS, max_batch: int = 256,
               window: float = 0.005) -> Any:
    """The FastAPI application: ``/`` (the page), ``GET /health``, ``GET /model``, ``POST /predict``."""
    from fastapi import FastAPI, Request  # optional: the 'serve' extra
    from fastapi.responses import HTMLResponse, JSONResponse

    app = FastAPI(title="GhostMixNet", description="CIFAR-10 classification: upload images, get the top classes.")
    batcher = Batcher(served, max_batch, window)
    app.state.batcher = batcher

    @app.exception_handler(BadInput)
    async def bad_input(_request: Request, error: BadInput) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text())

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Whether the service is up, and how many batches it has run."""
        return {"status": "ok", "batches": batcher.batches}

    @app.get("/model")
    async def model_info() -> dict[str, Any]:
        """The model served: name, file, parameters, MACs per image, recorded test accuracy, classes, and its
        calibration (temperature and "not sure" threshold; null when it has none)."""
        calibration = served.calibration
        return {**served.info, "calibration": calibration.to_dict() if calibration.fitted else None}

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        """Classify the images uploaded as multipart/form-data (field ``files``, one or several): per image the
        top classes with calibrated probabilities, the energy ``score``, and ``sure`` (false, with a ``note``,
        when the score falls below the model's threshold: maybe none of these classes; null without one)."""
        started = time.perf_counter()
        body = await read_limited(request, limits.max_bytes)
        uploads = parse_multipart(body, request.headers.get("content-type", ""), limits)
        decoded = [decode_image(name, data, limits) for name, data in uploads]
        logits = torch.from_numpy(await batcher.classify(np.stack([image for image, _ in decoded])))
        calibration = served.calibration
        probs, scores = calibration.probabilities(logits).numpy(), calibration.scores(logits)
        unsure = calibration.unsure(scores).tolist()
        results = []
        for (image, info), p, score, doubt in zip(decoded, probs, scores.tolist(), unsure):
            order = np.argsort(-p)[: limits.top_k]
            results.append({**info, "top": [{"label": served.classes[i], "probability": float(p[i])}
                                                    for i in order],
                            "score": score, "sure": None if calibration.threshold is None else not doubt,
                            **({"note": UNSURE} if doubt else {}), "input_32x32": png_data_url(image)})
        return {"model": served.info.get("name"), "results": results,
                "latency_ms": 1000 * (time.perf_counter() - started)}

    return app


def serve(model: Path = Path(PRETRAINED), host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          limits: Limits = DEFAULT_LIMITS) -> None:
    """Load ``model`` and serve it with uvicorn until interrupted."""
    try:
        import uvicorn  # optional: the 'serve' extra
    except ImportError:
        raise RuntimeError("serving needs the optional extra: pip install 'ghostmixnet[serve]'") from None
    served = load_served_model(model, resolve_device(device))
    print(f"serving {served.info['name']} on http://{host}:{port}/ (API docs at /docs)", flush=True)
    uvicorn.run(create_app(served, limits), host=host, port=port, log_level="warning")
