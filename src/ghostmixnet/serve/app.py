"""``ghostmixnet serve``: a classification service and its web page (FastAPI, an optional extra).

Requests that arrive together are classified together: each one's images join a queue, and a worker
runs the model on whatever is queued (up to ``max_batch`` images) after waiting at most ``window``
seconds for more, so under concurrent load the service runs at the model's batch throughput. Uploads
are read into memory with a size limit and parsed there: nothing from a request is written to disk.
Every refusal is a JSON ``{"error": ...}`` with a 4xx status, and the server stays up.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations as real types.
import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..infer.calibrate import UNSURE
from .served import ServedModel
from .uploads import DEFAULT_LIMITS, BadInput, Limits, decode_image, parse_multipart, png_data_url, read_limited

PAGE = Path(__file__).with_name("static") / "index.html"


class Batcher:
    """Classifies the images of concurrent requests together: ``workers`` workers (default: the model's queue)
    each take what is queued, up to ``max_batch`` images, after waiting at most ``window`` seconds for more,
    and run it on their own classifier in their own thread."""

    def __init__(self, served: ServedModel, max_batch: int | None = None, window: float | None = None,
                 workers: int | None = None) -> None:
        queue = served.queue
        self.served = served
        self.max_batch = max_batch if max_batch is not None else queue.max_batch
        self.window = window if window is not None else queue.window
        self.workers = min(workers if workers is not None else queue.workers, len(served.classifiers))
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] = asyncio.Queue()
        self.tasks: list[asyncio.Task] = []
        self.executor = ThreadPoolExecutor(self.workers, thread_name_prefix="classify")
        self.batches = 0

    async def classify(self, images: np.ndarray) -> np.ndarray:
        """The logits of ``images``, computed in a batch with whatever else is queued."""
        if not self.tasks or any(t.done() for t in self.tasks):
            self.tasks = [asyncio.create_task(self._run(w)) for w in range(self.workers)]
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((images, future))
        return await future

    async def warm_up(self) -> None:
        """One call on each worker's classifier, so that the first request does not pay for planning."""
        loop, blank = asyncio.get_running_loop(), np.zeros((1, self.served.image_size, self.served.image_size, 3),
                                                                np.uint8)
        await asyncio.gather(*(loop.run_in_executor(self.executor, self.served.logits, blank, w)
                               for w in range(self.workers)))

    async def _run(self, worker: int) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            deadline = loop.time() + self.window
            count = len(items[0][0])
            while count < self.max_batch:
                try:  # take what is queued now, then wait out the window for more
                    item = self.queue.get_nowait() if self.queue.qsize() else await asyncio.wait_for(
                        self.queue.get(), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    break
                items.append(item)
                count += len(item[0])
            batch = np.concatenate([images for images, _ in items])
            try:
                logits = (await loop.run_in_executor(self.executor, self.served.logits, batch, worker)).numpy()
            except Exception as e:  # noqa: BLE001 - tell the waiting requests, keep serving
                for _, future in items:
                    if not future.done():
                        future.set_exception(e)
                continue
            self.batches += 1
            start = 0
            for images, future in items:
                if not future.done():  # a client that went away leaves a cancelled future
                    future.set_result(logits[start:start + len(images)])
                start += len(images)


def decode_request(body: bytes, content_type: str, limits: Limits,
                   size: int = 32) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """The images of a ``POST /predict`` body, each as the ``size``-pixel array the model sees and its
    description."""
    return [decode_image(name, data, limits, size) for name, data in parse_multipart(body, content_type, limits)]


def answer(served: ServedModel, decoded: list[tuple[np.ndarray, dict[str, Any]]], logits: np.ndarray,
           top_k: int, started: float) -> dict[str, Any]:
    """The JSON answer to ``POST /predict``: per image the top classes with calibrated probabilities, the "not
    sure" score (the calibration's: energy unless it names another) and mark; the model's name and the time
    taken since ``started``."""
    calibration = served.calibration
    tensor, features = served.split(torch.from_numpy(logits))
    probs, scores = calibration.probabilities(tensor).numpy(), calibration.scores(tensor, features)
    unsure = calibration.unsure(scores).tolist()
    results = []
    for (image, info), p, score, doubt in zip(decoded, probs, scores.tolist(), unsure):
        order = np.argsort(-p)[:top_k]
        results.append({**info, "top": [{"label": served.classes[i], "probability": float(p[i])} for i in order],
                        "score": score, "sure": None if calibration.threshold is None else not doubt,
                        **({"note": UNSURE} if doubt else {}), "input_32x32": png_data_url(image)})
    return {"model": served.info.get("name"), "results": results, "latency_ms": 1000 * (time.perf_counter() - started)}


def model_description(served: ServedModel) -> dict[str, Any]:
    """What ``GET /model`` says: the model, its runtime, views, measured accuracy and speed, the queue, and its
    calibration (null without one)."""
    calibration = served.calibration
    return {**served.info, "calibration": calibration.to_dict() if calibration.fitted else None}


def create_app(served: ServedModel, limits: Limits = DEFAULT_LIMITS, max_batch: int | None = None,
               window: float | None = None) -> Any:
    """The FastAPI application: ``/`` (the page), ``GET /health``, ``GET /model``, ``POST /predict``. The queue's
    batch size and window are the model's (:attr:`ServedModel.queue`) unless given."""
    from fastapi import FastAPI, Request  # optional: the 'serve' extra
    from fastapi.responses import HTMLResponse, JSONResponse

    batcher = Batcher(served, max_batch, window)
    ready = asyncio.Event()

    @asynccontextmanager
    async def lifespan(_app: Any):
        await batcher.warm_up()
        ready.set()
        yield
        batcher.executor.shutdown(wait=False)

    app = FastAPI(title="GhostMixNet", description="CIFAR-10 classification: upload images, get the top classes.",
                  lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(BadInput)
    async def bad_input(_request: Request, error: BadInput) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text())

    @app.get("/health")
    async def health() -> JSONResponse:
        """Ready (200, ``"status": "ok"``) once every worker's model has answered; 503 ``"starting"`` before."""
        if not ready.is_set():
            return JSONResponse({"status": "starting", "batches": batcher.batches}, status_code=503)
        return JSONResponse({"status": "ok", "batches": batcher.batches, "runtime": served.info.get("runtime"),
                             "workers": batcher.workers})

    @app.get("/model")
    async def model_info() -> dict[str, Any]:
        """The model served: name, file, parameters, MACs per image, recorded test accuracy, classes; the runtime,
        the views with their measured accuracy and speed, the queue; and its calibration (temperature and "not
        sure" threshold; null when it has none)."""
        return model_description(served)

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        """Classify the images uploaded as multipart/form-data (field ``files``, one or several): per image the
        top classes with calibrated probabilities, the ``score`` (the calibration's: energy unless it names
        another), and ``sure`` (false, with a ``note``, when the score falls below the model's threshold: maybe
        none of these classes; null without one)."""
        started = time.perf_counter()
        body = await read_limited(request, limits.max_bytes)
        decoded = decode_request(body, request.headers.get("content-type", ""), limits, served.image_size)
        logits = await batcher.classify(np.stack([image for image, _ in decoded]))
        return answer(served, decoded, logits, limits.top_k, started)

    return app
