"""CIFAR-10 in two parts small enough to travel to a GPU machine one command each, and back together there,
byte for byte, checked.

A lent GPU machine takes at most 64 MiB per command, the repository's own files included, and CIFAR-10's python
batches are 184 MB: 139 MB as xz at its strongest preset, since general-purpose compressors see natural images'
pixels as noise. An image codec does better: the images go as lossless WebP (Pillow's, which the GPU machine
has), 100 to a 10 x 10 mosaic so that the codec's predictors and colour cache have more than 32 x 32 pixels to
learn from, and the rest of each pickle (its header, labels and file names, 0.2 MB) as xz. That is about 54% of
the raw bytes (``docs/gpu.md`` has the measured sizes), so two parts of under 48 MiB each. The pixel block of a
batch file is stored verbatim inside the pickle, so ``join`` rebuilds every file exactly: it checks every part's
sha256, then every rebuilt file's, against the manifest, and refuses a missing or altered part, so a run never
trains on a truncated or mixed-up copy.

    python benchmarks/cifar_parts.py split ../shared/data --out .cifar-parts        # here, once (minutes)
    python benchmarks/cifar_parts.py join .cifar-parts --out /tmp/data               # on the GPU machine (seconds)

``split`` writes ``cifar10.parts.000``, ``.001`` and ``manifest.json``; ``join`` writes
``OUT/cifar-10-batches-py/``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ghostmixnet.data.pickles import safe_unpickle

FOLDER = "cifar-10-batches-py"
FILES = ["batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
FORMAT = "cifar-parts/2"
"""The manifest's format: WebP mosaics and xz frames in one stream, cut into parts."""
SIDE = 32
MOSAIC = 10
"""Images per mosaic side: 10 x 10 images, 320 x 320 pixels (smaller than 20 x 20 and than one image at a time:
``codecs`` compares them)."""
WEBP_METHOD = 5
"""libwebp's effort, 0-6: 5 is 0.6% smaller than 4; 6 is no smaller and several times slower (``codecs``)."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_parts(data: bytes, out: Path, stem: str, size: int) -> dict[str, str]:
    """``data`` cut into ``stem.000``, ``stem.001``, ... of at most ``size`` bytes in ``out`` (earlier parts of that
    stem removed first); each part's sha256 by its name."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{stem}.[0-9][0-9][0-9]"):
        old.unlink()
    digests = {}
    for i, start in enumerate(range(0, len(data), size)):
        path = out / f"{stem}.{i:03d}"
        path.write_bytes(data[start:start + size])
        digests[path.name] = sha256_bytes(data[start:start + size])
    return digests


def read_json_manifest(path: Path, form: str, fix: str, entries: tuple[str, ...] = ("parts", "files")) -> dict:
    """The manifest at ``path`` of format ``form`` with a dict under each of ``entries``; else one line saying
    what is wrong and ``fix``."""
    if not path.is_file():
        raise SystemExit(f"{path} is missing: send it with the parts, or {fix}")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SystemExit(f"{path} is not a readable manifest ({e}): {fix}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != form:
        raise SystemExit(f"{path} is not a {form} manifest: {fix}")
    if not all(isinstance(manifest.get(entry), dict) for entry in entries):
        raise SystemExit(f"{path} is malformed ({' or '.join(entries)} missing): {fix}")
    return manifest


def read_parts(folder: Path, digests: dict[str, str], manifest: Path) -> bytes:
    """The parts named in ``digests`` (from ``manifest``) read from ``folder`` and joined in name order, each
    checked against its sha256: a missing or altered part is refused in one line."""
    chunks = []
    for name, digest in sorted(digests.items()):
        path = folder / name
        if not path.is_file():
            raise SystemExit(f"part {path} is missing: send every part listed in {manifest}")
        data = path.read_bytes()
        if sha256_bytes(data) != digest:
            raise SystemExit(f"part {path} is altered or truncated (sha256 differs from {manifest}): send it again")
        chunks.append(data)
    return b"".join(chunks)


def pixel_block(path: Path, raw: bytes) -> tuple[int, int] | None:
    """Where a batch file's images lie in its pickle, as (offset, count), or None for a file without them.

    A batch holds its images as one uint8 array of (count, 3072) whose bytes the pickle stores verbatim; the
    array is read with the package's restricted unpickler (the only way this project opens a pickle)."""
    entry = safe_unpickle(path)
    data = entry.get(b"data") if isinstance(entry, dict) else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * SIDE ** 2:
        return None
    offset = raw.find(np.ascontiguousarray(data).tobytes())
    return (offset, len(data)) if offset >= 0 else None


def encode_mosaic(images: np.ndarray, method: int = WEBP_METHOD, side: int = MOSAIC) -> bytes:
    """Up to ``side**2`` images of (3, 32, 32), row by row in one lossless WebP (missing ones black)."""
    tiles = np.zeros((side * side, 3, SIDE, SIDE), np.uint8)
    tiles[: len(images)] = images
    mosaic = tiles.reshape(side, side, 3, SIDE, SIDE).transpose(0, 3, 1, 4, 2).reshape(side * SIDE, -1, 3)
    out = io.BytesIO()
    Image.fromarray(mosaic).save(out, "WEBP", lossless=True, quality=100, method=method, exact=True)
    return out.getvalue()


def decode_mosaic(blob: bytes, count: int) -> np.ndarray:
    """The first ``count`` images of a mosaic, (count, 3, 32, 32) uint8."""
    with Image.open(io.BytesIO(blob)) as image:
        if image.format != "WEBP" or image.size != (MOSAIC * SIDE, MOSAIC * SIDE):
            raise SystemExit("a mosaic in the parts is not the expected WebP image: split the data again")
        mosaic = np.asarray(image.convert("RGB"))
    tiles = mosaic.reshape(MOSAIC, SIDE, MOSAIC, SIDE, 3).transpose(0, 2, 4, 1, 3).reshape(-1, 3, SIDE, SIDE)
    return tiles[:count]


def compare_codecs(data_dir: Path, images: int = 1600) -> dict[str, float]:
    """Bits per sub-pixel of the first ``images`` training images under each codec considered (lower is smaller):
    how the format was chosen."""
    folder = data_dir / FOLDER if (data_dir / FOLDER).is_dir() else data_dir
    raw = (folder / "data_batch_1").read_bytes()
    offset, _ = pixel_block(folder / "data_batch_1", raw)
    pixels = np.frombuffer(raw[offset:offset + images * 3 * SIDE ** 2], np.uint8).reshape(-1, 3, SIDE, SIDE)
    images = len(pixels)

    def bits(size: int) -> float:
        return 8 * size / pixels.size

    def webp(image: np.ndarray, method: int) -> int:
        out = io.BytesIO()
        Image.fromarray(image).save(out, "WEBP", lossless=True, quality=100, method=method, exact=True)
        return len(out.getvalue())

    sizes = {"xz -9e": bits(len(lzma.compress(pixels.tobytes(), preset=9 | lzma.PRESET_EXTREME)))}
    for method in (4, 6):
        sizes[f"webp one image, effort {method}"] = bits(sum(webp(im.transpose(1, 2, 0), method) for im in pixels))
    for side, method in ((10, 4), (10, 5), (10, 6), (20, 4), (20, 5)):
        per = side * side
        sizes[f"webp {side}x{side} mosaic, effort {method}"] = bits(sum(
            len(encode_mosaic(pixels[i:i + per], method, side)) for i in range(0, images, per)))
    return sizes


def split(data_dir: Path, out: Path, parts: int = 2, workers: int = 2, method: int = WEBP_METHOD) -> list[Path]:
    """Pack ``data_dir``'s CIFAR-10 batches into ``parts`` equal parts in ``out`` with a manifest of every part's
    and file's sha256 and of the stream's pieces; the parts' paths."""
    folder = data_dir / FOLDER if (data_dir / FOLDER).is_dir() else data_dir
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise SystemExit(f"{folder} lacks {', '.join(missing)}: name the folder holding {FOLDER}")
    stream, pieces, files = bytearray(), [], {}

    def add(kind: str, name: str, blob: bytes, **extra: int) -> None:
        pieces.append({"file": name, "kind": kind, "offset": len(stream), "length": len(blob), **extra})
        stream.extend(blob)

    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    encode = pool.map if pool is not None else map
    try:
        for name in FILES:
            raw = (folder / name).read_bytes()
            files[name] = sha256_bytes(raw)
            block = pixel_block(folder / name, raw)
            if block is None:
                add("xz", name, lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))
                continue
            offset, count = block
            end = offset + count * 3 * SIDE ** 2
            add("xz", name, lzma.compress(raw[:offset] + raw[end:], preset=9 | lzma.PRESET_EXTREME), head=offset)
            images = np.frombuffer(raw[offset:end], np.uint8).reshape(count, 3, SIDE, SIDE)
            per = MOSAIC * MOSAIC
            chunks = [images[i:i + per] for i in range(0, count, per)]
            for chunk, blob in zip(chunks, encode(encode_mosaic, chunks, [method] * len(chunks))):
                add("webp", name, blob, images=len(chunk))
    finally:
        if pool is not None:
            pool.shutdown()
    digests = write_parts(bytes(stream), out, "cifar10.parts", -(-len(stream) // parts))
    manifest = {"format": FORMAT, "parts": digests, "files": files, "pieces": pieces}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return [out / name for name in digests]


def read_manifest(parts_dir: Path) -> dict:
    """The parts' manifest, checked for what :func:`join` reads."""
    manifest = read_json_manifest(parts_dir / "manifest.json", FORMAT, "split the data again with this script")
    pieces = manifest.get("pieces")
    if not isinstance(pieces, list) or not all(isinstance(p, dict) and {"file", "kind", "offset", "length"} <= set(p)
                                               for p in pieces):
        raise SystemExit(f"{parts_dir / 'manifest.json'} is malformed (pieces missing): split the data again")
    return manifest


def join(parts_dir: Path, out: Path) -> Path:
    """Check and join the parts in ``parts_dir`` into ``out/cifar-10-batches-py``; that folder. Refuses a
    missing or altered part, and any rebuilt file whose sha256 is not the manifest's."""
    manifest = read_manifest(parts_dir)
    stream = read_parts(parts_dir, manifest["parts"], parts_dir / "manifest.json")
    folder = out / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for name, digest in manifest["files"].items():
        if name not in FILES:
            raise SystemExit(f"unexpected file {name!r} in the manifest: split the data again")
        mine = [p for p in manifest["pieces"] if p["file"] == name]
        frame = lzma.decompress(stream[mine[0]["offset"]:mine[0]["offset"] + mine[0]["length"]])
        images = [decode_mosaic(stream[p["offset"]:p["offset"] + p["length"]], p["images"]) for p in mine[1:]]
        if images:
            head = mine[0]["head"]
            raw = frame[:head] + np.concatenate(images).tobytes() + frame[head:]
        else:
            raw = frame
        if sha256_bytes(raw) != digest:
            raise SystemExit(f"{name} does not match its sha256 in the manifest: split the data again")
        (folder / name).write_bytes(raw)
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("split", help="CIFAR-10 into checked parts")
    p.add_argument("data_dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--parts", type=int, default=2, help="how many equal parts [2]")
    p.add_argument("--workers", type=int, default=2, help="processes encoding the mosaics [2]")
    p.add_argument("--method", type=int, default=WEBP_METHOD, help=f"libwebp effort 0-6 [{WEBP_METHOD}]")
    p = sub.add_parser("codecs", help="bits per sub-pixel of each codec considered, on the first training images")
    p.add_argument("data_dir", type=Path)
    p.add_argument("--images", type=int, default=1600, help="how many [1600]")
    p = sub.add_parser("join", help="the parts back into cifar-10-batches-py, checked")
    p.add_argument("parts_dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "split":
        for path in split(args.data_dir, args.out, args.parts, args.workers, args.method):
            print(f"{path} {path.stat().st_size / 2**20:.2f} MiB")
    elif args.command == "codecs":
        for name, value in compare_codecs(args.data_dir, args.images).items():
            print(f"{name}: {value:.3f} bits per sub-pixel")
    else:
        print(f"joined and checked {join(args.parts_dir, args.out)}")


if __name__ == "__main__":
    main()
