"""Image files into the pixels a model sees: any size and mode PIL decodes, turned upright by its EXIF
orientation, scaled from 16-bit or float pixels, converted to RGB, centre-cropped to a square and resized
to the model's square size (bicubic; 32x32 for CIFAR-10's framing). Prediction, the service and folder
datasets all read images this way."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError
from ..files import exhausted_words, open_regular


@dataclass
class ImageInput:
    """One input file: its path, displayed size and mode, or why it could not be read."""

    path: Path
    original_size: tuple[int, int]
    mode: str
    error: str = ""


def to_8bit(img: Image.Image, path: Path | str = "image") -> Image.Image:
    """An 8-bit image of a 16-bit or float one, scaled by its mode's range: 16-bit by 65535 -> 255, 32-bit
    integers likewise when they fit 16 bits, floats from [0, 1] (or already in [0, 255]). PIL's own
    conversion clips instead (a full-range 16-bit image turns white, a [0, 1] float one black)."""
    if img.mode.startswith("I;16"):
        pixels = np.asarray(img, dtype=np.float64) / 257.0
    elif img.mode == "I":
        pixels = np.asarray(img, dtype=np.float64)
        if pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
            raise DataError(f"{path}: 32-bit integer pixels outside 0..65535; save it as an 8- or 16-bit image")
        pixels = pixels / 257.0
    elif img.mode == "F":
        pixels = np.asarray(img, dtype=np.float64)
        if not np.isfinite(pixels).all() or (pixels.size and (pixels.min() < 0 or pixels.max() > 255)):
            raise DataError(f"{path}: float pixels outside [0, 1] and [0, 255] (or not finite); their range is "
                            "unknown: save it as an 8- or 16-bit image")
        pixels = pixels * 255.0 if pixels.size and pixels.max() <= 1.0 else pixels
    else:
        return img
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="L")


def to_cifar_image(img: Image.Image, size: int = 32) -> np.ndarray:
    """RGB, centre-cropped to a square, resized to ``size`` x ``size``: (size, size, 3) uint8."""
    img = img.convert("RGB")
    w, h = img.size
    side = min(w, h)
    if (w, h) != (side, side):
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
"""The file name endings read as images in folders."""

MAX_PIXELS = 40_000_000
"""Pixels (width x height) an image may have, checked before a pixel is decoded: a small compressed file can
claim a picture of gigabytes. 40 million admits any camera's photo."""


class ImageError(DataError):
    """An image that cannot be used; ``reason`` is ``too_large``, ``not_an_image``, ``corrupt`` or ``not_a_file``."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def read_image(source: Path | BinaryIO, name: Path | str, max_pixels: int = MAX_PIXELS,
               size: int = 32) -> tuple[np.ndarray, ImageInput]:
    """The one way an image is opened (prediction, the service, folders): a file or an upload's bytes as the
    ``size`` x ``size`` RGB array the model sees (:func:`to_cifar_image`), turned as its EXIF orientation says
    (the size reported is the displayed one) and scaled from 16-bit or float pixels. Refused with an
    :class:`ImageError` naming ``name``: over ``max_pixels`` (before decoding), not an image, or undecodable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below speaks, not PIL
            with Image.open(source) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageError(f"cannot read image {name}: {width}x{height} pixels is over the limit of "
                                     f"{max_pixels:,} (--max-pixels)", "too_large")
                img.load()
                shown = ImageOps.exif_transpose(img)  # phones store pictures sideways with an orientation tag
                return to_cifar_image(to_8bit(shown, name), size), ImageInput(Path(name), shown.size, img.mode)
    except ImageError:
        raise
    except DataError as e:  # pixels of an unknown range (to_8bit)
        raise ImageError(str(e), "corrupt") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError, MemoryError):
        raise ImageError(f"cannot read image {name}: its pixels do not fit in memory (over PIL's limit); lower "
                         "its resolution", "too_large") from None
    except UnidentifiedImageError:
        raise ImageError(f"cannot read image {name}: it is not an image PIL can read (PNG, JPEG, WebP, ...)",
                         "not_an_image") from None
    except (OSError, ValueError, SyntaxError) as e:
        words = exhausted_words(e, Path("."))
        if words is not None:  # the process ran out (PIL opens its plugins' files), not the image: never skipped
            raise OSError(e.errno, f"cannot read image {name}: {words}") from None
        raise ImageError(f"cannot read image {name}: it could not be decoded (truncated or corrupt?): {e}",
                         "corrupt") from None


def load_image(path: Path, max_pixels: int = MAX_PIXELS, size: int = 32) -> tuple[np.ndarray, ImageInput]:
    """One image file as :func:`read_image` reads it; an entry that is not a readable file (a folder, a FIFO, a
    dangling link...) is an :class:`ImageError` saying what it is, without blocking."""
    try:
        with open_regular(path, "image") as f:
            return read_image(f, path, max_pixels, size)
    except ImageError:
        raise
    except DataError as e:
        raise ImageError(str(e), "not_a_file") from None


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 images at ``size`` x ``size``, each resized as :func:`to_cifar_image` resizes a square
    photo (PIL, bicubic): what a model of another size is given when handed arrays (a course pickle, CIFAR's
    32-pixel images). Returned as they are when they have that size already."""
    if images.shape[1:3] == (size, size):
        return images
    out = np.empty((len(images), size, size, 3), np.uint8)
    for i, image in enumerate(images):
        out[i] = to_cifar_image(Image.fromarray(image), size)
    return out
