"""``ghostmixnet serve``: a classification service and its web page (FastAPI, an optional extra).

Requests that arrive together are classified together: each one's images join a queue, and a worker
runs the model on whatever is queued (up to ``max_batch`` images) after waiting at most ``window``
seconds for more, so under concurrent load the service runs at the model's batch throughput. Uploads
are read into memory with a size limit and parsed there: nothing from a request is written to disk.
Every refusal is a JSON ``{"error": ...}`` with a 4xx status, and the server stays up.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations as real types.
import asyncio
import base64
import email.parser
import email.policy
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .data import CLASSES
from .engine import predict_logits
from .predict import to_8bit, to_cifar_image

PAGE = Path(__file__).with_name("static") / "index.html"


@dataclass(frozen=True)
class Limits:
    """What one request may bring."""

    max_bytes: int = 20 * 2**20
    """Request body size (413 above it)."""
    max_files: int = 32
    """Images per request."""
    max_pixels: int = 40_000_000
    """Pixels per image (width x height), checked before decoding: a decompression bomb is refused unread."""
    top_k: int = 5


@dataclass
class ServedModel:
    """A model ready to serve and what ``GET /model`` says of it."""

    model: Any
    device: torch.device
    info: dict[str, Any] = field(default_factory=dict)
    tta: bool = False
    tta_shift: int = 0

    def logits(self, images: np.ndarray) -> torch.Tensor:
        return predict_logits(self.model, images, self.device, tta=self.tta, tta_shift=self.tta_shift)


def load_served_model(path: Path, device: torch.device) -> ServedModel:
    """A checkpoint, run folder or ONNX file (fp32 or int8) as a :class:`ServedModel` (refused at load unless
    it gives 10 CIFAR-10 logits), with its name, size, cost and the test accuracy its run recorded."""
    import json

    from .checkpoint import resolve_checkpoint
    from .cost import stage_costs
    from .export import load_classifier
    from .models import count_parameters

    path = Path(path)
    source = path if path.suffix.lower() == ".onnx" else resolve_checkpoint(path)
    model, cfg, _ = load_classifier(source)
    info: dict[str, Any] = {"name": f"{cfg.model if cfg else 'model'} ({source.name})", "file": str(source),
                            "classes": list(CLASSES), "format": "onnx" if source.suffix == ".onnx" else "pytorch"}
    if isinstance(model, torch.nn.Module):
        info["parameters"] = count_parameters(model)
        info["macs_per_image"] = sum(r.macs for r in stage_costs(model))
        model = model.to(device)
    test = source.parent / "test.json"
    if test.is_file():
        info["test_accuracy"] = json.loads(test.read_text()).get("accuracy")
    return ServedModel(model, device, info, tta=bool(cfg.tta) if cfg else False, tta_shift=cfg.tta_shift if cfg else 0)


class BadInput(Exception):
    """A request the service refuses: ``status`` and a message saying what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_multipart(body: bytes, content_type: str, limits: Limits) -> list[tuple[str, bytes]]:
    """The uploaded files of a ``multipart/form-data`` body, parsed in memory: (filename, bytes) each."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise BadInput(415, f"send images as multipart/form-data (field 'files'), not {content_type or 'nothing'}")
    try:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body)
        files = ([(part.get_filename() or "upload", part.get_payload(decode=True) or b"")
                  for part in message.iter_parts() if part.get_filename() is not None]
                 if message.is_multipart() else None)
    except Exception:  # noqa: BLE001 - any malformed body is the client's error, not the server's
        files = None
    if files is None:
        raise BadInput(400, "the multipart body could not be parsed (boundary missing or malformed)")
    if not files:
        raise BadInput(400, "no files in the request: upload images in the form field 'files'")
    if len(files) > limits.max_files:
        raise BadInput(413, f"{len(files)} files in one request; at most {limits.max_files}")
    return files


def decode_image(name: str, data: bytes, limits: Limits) -> tuple[np.ndarray, dict[str, Any]]:
    """One upload as the 32x32 image the model sees and its description; a :class:`BadInput` otherwise."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > limits.max_pixels:  # before decoding a single pixel
                raise BadInput(413, f"{name}: {width}x{height} pixels is over the limit of {limits.max_pixels:,}")
            img.load()
            shown = ImageOps.exif_transpose(img)
            info = {"file": name, "size": list(shown.size), "mode": img.mode}
            return to_cifar_image(to_8bit(shown, name)), info
    except BadInput:
        raise
    except UnidentifiedImageError:
        raise BadInput(415, f"{name} is not an image PIL can read (PNG, JPEG, WebP, ...)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise BadInput(400, f"{name} could not be decoded (truncated or corrupt?): {e}") from None
    except Exception as e:  # noqa: BLE001 - a stranger's file must never take the server down
        raise BadInput(400, f"{name} could not be read: {type(e).__name__}") from None


class Batcher:
    """Classifies the images of concurrent requests together (one model call per batch)."""

    def __init__(self, served: ServedModel, max_batch: int = 256, window: float = 0.005) -> None:
        self.served, self.max_batch, self.window = served, max_batch, window
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.batches = 0

    async def classify(self, images: np.ndarray) -> np.ndarray:
        """Softmax probabilities of ``images``, computed in a batch with whatever else is queued."""
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
                probs = (await loop.run_in_executor(None, self.served.logits, batch)).softmax(1).numpy()
            except Exception as e:  # noqa: BLE001 - tell the waiting requests, keep serving
                for _, future in items:
                    future.set_exception(e)
                continue
            self.batches += 1
            start = 0
            for images, future in items:
                future.set_result(probs[start:start + len(images)])
                start += len(images)


def png_data_url(image: np.ndarray) -> str:
    """A (32, 32, 3) uint8 image as a PNG data URL, for the page to show what the model saw."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def create_app(served: ServedModel, limits: Limits = Limits(), max_batch: int = 256, window: float = 0.005) -> Any:
    """The FastAPI application: ``/`` (the page), ``GET /health``, ``GET /model``, ``POST /predict``."""
    from fastapi import FastAPI, Request
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
        """The model served: name, file, parameters, MACs per image, recorded test accuracy, classes."""
        return served.info

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        """Classify the images uploaded as multipart/form-data (field ``files``, one or several)."""
        started = time.perf_counter()
        body = await read_limited(request, limits.max_bytes)
        uploads = parse_multipart(body, request.headers.get("content-type", ""), limits)
        decoded = [decode_image(name, data, limits) for name, data in uploads]
        probs = await batcher.classify(np.stack([image for image, _ in decoded]))
        results = []
        for (image, info), p in zip(decoded, probs):
            order = np.argsort(-p)[: limits.top_k]
            results.append({**info, "top": [{"label": CLASSES[i], "probability": float(p[i])} for i in order],
                            "input_32x32": png_data_url(image)})
        return {"model": served.info.get("name"), "results": results,
                "latency_ms": 1000 * (time.perf_counter() - started)}

    return app


async def read_limited(request: Any, max_bytes: int) -> bytes:
    """The request body, refused (413) as soon as it passes ``max_bytes``, whatever Content-Length claims."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BadInput(413, f"the upload is {int(declared):,} bytes; at most {max_bytes:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BadInput(413, f"the upload is over {max_bytes:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def serve(model: Path, host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          limits: Limits = Limits()) -> None:
    """Load ``model`` and serve it with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise RuntimeError("serving needs the optional extra: pip install 'ghostmixnet[serve]'") from None
    from .engine import resolve_device

    served = load_served_model(model, resolve_device(device))
    print(f"serving {served.info['name']} on http://{host}:{port}/ (API docs at /docs)", flush=True)
    uvicorn.run(create_app(served, limits), host=host, port=port, log_level="warning")
