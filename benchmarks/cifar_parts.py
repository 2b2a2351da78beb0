"""CIFAR-10 in parts small enough to travel to a GPU machine one at a time, and back together there, checked.

The lent GPU machines take at most 64 MiB of files per command, and CIFAR-10's python batches are 184 MB
(139 MB as xz at its strongest preset: the pixels of natural images compress little). So the data go in
parts of at most ``--part-mib`` each, one part per command while the machine is warm, and the command that
trains joins them: it checks every part's and every file's sha256 against the manifest, so a run never
trains on a truncated or mixed-up copy. Joining costs seconds, not training minutes.

    python benchmarks/cifar_parts.py split ../shared/data --out .cifar-parts --part-mib 45
    python benchmarks/cifar_parts.py join .cifar-parts --out /tmp/data     # on the GPU machine

``split`` writes ``cifar10.tar.xz.000``, ``.001``, ... and ``manifest.json``; ``join`` writes
``OUT/cifar-10-batches-py/``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import tarfile
from pathlib import Path

FOLDER = "cifar-10-batches-py"
FILES = ["batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split(data_dir: Path, out: Path, part_mib: float = 45, preset: int = 9 | lzma.PRESET_EXTREME) -> list[Path]:
    """Pack ``data_dir``'s CIFAR-10 batches into one xz-compressed tar cut into parts of at most ``part_mib``
    MiB in ``out``, with a manifest of every file's and part's sha256; the parts' paths."""
    folder = data_dir / FOLDER if (data_dir / FOLDER).is_dir() else data_dir
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise SystemExit(f"{folder} lacks {', '.join(missing)}: name the folder holding {FOLDER}")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in FILES:
            tar.add(folder / name, arcname=f"{FOLDER}/{name}")
    packed = lzma.compress(buffer.getvalue(), preset=preset)
    size = int(part_mib * 2**20)
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, start in enumerate(range(0, len(packed), size)):
        path = out / f"cifar10.tar.xz.{i:03d}"
        path.write_bytes(packed[start:start + size])
        parts.append(path)
    manifest = {"parts": {p.name: sha256_bytes(p.read_bytes()) for p in parts},
                "files": {name: sha256_bytes((folder / name).read_bytes()) for name in FILES}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return parts


def join(parts_dir: Path, out: Path) -> Path:
    """Check and join the parts in ``parts_dir`` into ``out/cifar-10-batches-py``; that folder. Refuses a
    missing or altered part, and any file whose sha256 is not the manifest's."""
    manifest = json.loads((parts_dir / "manifest.json").read_text())
    chunks = []
    for name, digest in sorted(manifest["parts"].items()):
        path = parts_dir / name
        if not path.is_file():
            raise SystemExit(f"part {path} is missing: send every part listed in {parts_dir / 'manifest.json'}")
        data = path.read_bytes()
        if sha256_bytes(data) != digest:
            raise SystemExit(f"part {path} is altered or truncated (sha256 differs from the manifest)")
        chunks.append(data)
    archive = lzma.decompress(b"".join(chunks))
    folder = out / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r") as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if member.name != f"{FOLDER}/{name}" or name not in manifest["files"] or not member.isfile():
                raise SystemExit(f"unexpected entry {member.name!r} in the parts")
            data = tar.extractfile(member).read()
            if sha256_bytes(data) != manifest["files"][name]:
                raise SystemExit(f"{name} does not match its sha256 in the manifest")
            (folder / name).write_bytes(data)
    absent = set(manifest["files"]) - {p.name for p in folder.iterdir()}
    if absent:
        raise SystemExit(f"the parts lack {', '.join(sorted(absent))}")
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("split", help="CIFAR-10 into checked parts")
    p.add_argument("data_dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--part-mib", type=float, default=45, help="largest part, MiB [45]")
    p = sub.add_parser("join", help="the parts back into cifar-10-batches-py, checked")
    p.add_argument("parts_dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "split":
        for path in split(args.data_dir, args.out, args.part_mib):
            print(f"{path} {path.stat().st_size / 2**20:.1f} MiB")
    else:
        print(f"joined and checked {join(args.parts_dir, args.out)}")


if __name__ == "__main__":
    main()
