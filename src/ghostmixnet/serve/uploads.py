"""What a request may bring and how it is read: size limits, the multipart body parsed in memory, each
upload decoded as prediction reads images. Every refusal is a :class:`BadInput` with its HTTP status."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..checks import count
from ..data.images import MAX_PIXELS, ImageError, read_image


@dataclass(frozen=True)
class Limits:
    """What one request may bring."""

    max_bytes: int = 20 * 2**20
    """Request body size (413 above it)."""
    max_files: int = 32
    """Images per request."""
    max_pixels: int = MAX_PIXELS
    """Pixels per image (width x height), checked before decoding: a decompression bomb is refused unread."""
    top_k: int = 5

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_files", "max_pixels", "top_k"):
            count(getattr(self, name), name)


DEFAULT_LIMITS = Limits()


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


def decode_image(name: str, data: bytes, limits: Limits, size: int = 32) -> tuple[np.ndarray, dict[str, Any]]:
    """One upload as the ``size``-pixel image the model sees and its description; a :class:`BadInput` otherwise."""
    try:
        image, info = read_image(io.BytesIO(data), name, limits.max_pixels, size)
        return image, {"file": name, "size": list(info.original_size), "mode": info.mode}
    except ImageError as e:
        raise BadInput({"too_large": 413, "not_an_image": 415}.get(e.reason, 400), str(e)) from None
    except Exception as e:  # noqa: BLE001 - a stranger's file must never take the server down
        raise BadInput(400, f"{name} could not be read: {type(e).__name__}") from None


def png_data_url(image: np.ndarray) -> str:
    """An (S, S, 3) uint8 image as a PNG data URL, for the page to show what the model saw."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


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
