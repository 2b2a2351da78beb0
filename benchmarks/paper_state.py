"""A paper run's resumable state, packed to come back from a GPU machine and be committed, and unpacked there in a
later window to continue the run exactly.

``export RUN --to DIR`` packs every file at the top of the run folder but the previous checkpoint (``last.pt``
with the weights, AdamW's moments, the schedule and the step; ``best.pt``, the validation-selected weights so
far; ``config.json``, ``metrics.csv``, ``train.log``, ``curve.csv``, ...) into one xz-compressed tar cut into parts
of at most 15 MiB (``state.000``, ``state.001``, ...: the GPU machine returns files of up to 16 MiB) and writes
``state.json`` with every part's and file's sha256, the epochs done and the sizes. ``import DIR --to RUN`` checks
and unpacks them into a new run folder, refusing a missing or altered part and a folder that already holds a
run. The state of the full-width paper model is about 40 MiB (docs/gpu.md).

    python benchmarks/paper_state.py export /tmp/paper-run --to benchmarks/paper-run
    python benchmarks/paper_state.py import .paper-state --to /tmp/paper-run
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import sys
import tarfile
from pathlib import Path

from ghostmixnet.train.resume import LAST, PREVIOUS

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script, also when loaded by path
from cifar_parts import read_json_manifest, read_parts, sha256_bytes, write_parts  # noqa: E402

MANIFEST = "state.json"
PART_MIB = 15.0
FORMAT = "paper-state/1"


def state_files(run: Path) -> list[Path]:
    """The run folder's files that continuing it needs (all at its top but the previous checkpoint)."""
    return sorted(p for p in run.iterdir() if p.is_file() and not p.is_symlink() and p.name != PREVIOUS)


def export_state(run: Path, to: Path, part_mib: float = PART_MIB, epochs_done: int | None = None) -> list[Path]:
    """Pack ``run``'s resumable state into ``to`` (parts and :data:`MANIFEST`); the paths written."""
    if not (run / LAST).is_file():
        raise SystemExit(f"{run} holds no {LAST}: nothing to continue")
    files = state_files(run)
    buffer = io.BytesIO()
    digests = {}
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in files:
            data = path.read_bytes()
            digests[path.name] = sha256_bytes(data)
            info = tarfile.TarInfo(path.name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    packed = lzma.compress(buffer.getvalue(), preset=1)  # floats barely compress; the faster preset loses ~1%
    parts = write_parts(packed, to, "state", int(part_mib * 2**20))
    manifest = {"format": FORMAT, "epochs_done": epochs_done, "unpacked_bytes": len(buffer.getvalue()),
                "packed_bytes": len(packed), "parts": parts, "files": digests}
    (to / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return [*(to / name for name in parts), to / MANIFEST]


def import_state(source: Path, run: Path) -> list[Path]:
    """Check and unpack the state in ``source`` into the new run folder ``run``; the files written."""
    path = source / MANIFEST
    manifest = read_json_manifest(path, FORMAT, f"name the folder holding the exported state ({MANIFEST}, "
                                  "state.000, ...) or export it again")
    if (run / LAST).exists() or (run / PREVIOUS).exists():
        raise SystemExit(f"{run} already holds a run: continue that one, or name an empty folder")
    packed = read_parts(source, manifest["parts"], path)
    run.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(fileobj=io.BytesIO(lzma.decompress(packed)), mode="r") as tar:
        for member in tar.getmembers():
            if member.name not in manifest["files"] or not member.isfile() or "/" in member.name:
                raise SystemExit(f"unexpected entry {member.name!r} in the state: export it again")
            data = tar.extractfile(member).read()
            if sha256_bytes(data) != manifest["files"][member.name]:
                raise SystemExit(f"{member.name} does not match its sha256 in {path}: export the state again")
            (run / member.name).write_bytes(data)
            written.append(run / member.name)
    if set(manifest["files"]) - {p.name for p in written}:
        raise SystemExit(f"the state lacks {', '.join(sorted(set(manifest['files']) - {p.name for p in written}))}")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="a run folder's resumable state into checked parts")
    p.add_argument("run", type=Path)
    p.add_argument("--to", type=Path, required=True)
    p.add_argument("--part-mib", type=float, default=PART_MIB, help=f"largest part, MiB [{PART_MIB:g}]")
    p = sub.add_parser("import", help="checked parts back into a new run folder")
    p.add_argument("source", type=Path)
    p.add_argument("--to", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "export":
        for path in export_state(args.run, args.to, args.part_mib):
            print(f"{path} {path.stat().st_size / 2**20:.2f} MiB")
    else:
        print(f"unpacked {len(import_state(args.source, args.to))} files into {args.to}")


if __name__ == "__main__":
    main()
