"""The bad-input harness's rule and its makers of bad entries, shared by the tests of this folder.

A case runs ``ghostmixnet.cli.main`` (in this process under an alarm, or in a subprocess where the case needs
a process of its own: a resource limit, a kill) and is held to one rule: the command finishes
(exit 0), or it exits 1 with exactly one line on standard error, starting ``error:``, that is neither an
unexpected error nor a bare operating-system message (``[Errno 2] ...`` says neither what the file was to the
command nor what to do); with no traceback; within ``SECONDS``; and no input file changed. ``OUTCOMES``
counts what each kind gave; tests/conftest.py prints the counts after the session, for the record.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import hashlib
import io
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from PIL import Image

from ghostmixnet.cli import main

SECONDS = 30
"""The time bound of one command: nothing may block (a FIFO opened for reading waits for a writer forever)."""
OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
SETTINGS = settings(max_examples=15, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
ENTRY_KINDS = ("regular", "empty", "folder", "fifo", "socket", "device", "dangling link", "link loop", "unreadable",
               "missing")


class Blocked(BaseException):  # not an Exception: the command line must not turn it into its one line
    pass


def _alarm(*_):
    raise Blocked(f"the command did not finish in {SECONDS} s")


@contextmanager
def time_bound() -> Iterator[None]:
    """The block stopped with :class:`Blocked` if it runs over ``SECONDS``."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def snapshot(folder: Path) -> dict[str, str]:
    """The hash of every regular file under ``folder`` (links not followed)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if path.is_file() and not path.is_symlink() and os.access(path, os.R_OK):
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def unchanged(before: dict[str, str], after: dict[str, str]) -> bool:
    """Every file of ``before`` still there, as it was (new files are outputs: a report beside its model)."""
    return all(after.get(path) == digest for path, digest in before.items())


def check_rule(status: int, err: str, argv: list[str]) -> str:
    """Hold one finished command to the rule (the module docstring); returns its error line's text ('' if 0)."""
    assert "Traceback" not in err, err
    if status == 0:
        return ""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert status == 1 and len(errors) == 1, (argv, err)
    assert "(an unexpected error" not in err, (argv, err)
    assert not errors[0].startswith("error: [Errno"), (argv, errors[0])
    assert len(errors[0]) < 600, errors[0]
    return errors[0][7:]


def record(kind: str, status: int, said: str) -> None:
    """Count an outcome of ``kind`` (temporary folders' paths shortened to PATH)."""
    said = re.sub(r"\S*(pytest-of-|ghostmixnet-bad-)\S*?(?=[:;,)'\"]|\s|$)", "PATH", said)
    OUTCOMES[kind][f"exit {status}" + (f": {said[:90]}" if status else "")] += 1


def run(argv: list[str], capsys, kind: str, inputs: Path, writes_inputs: bool = False,
        gone: Path | None = None, unprivileged: bool = False) -> tuple[int, str]:
    """``main(argv)`` in this process, held to the rule; returns its exit status and what it printed.
    ``writes_inputs``: the command's job is to change ``inputs`` when it succeeds (a resumed run), so they are
    held only on failure. ``gone``: an input the case itself removes (a vanishing file). ``unprivileged``: the
    command runs without root's power to read any file (:func:`without_read_override`)."""
    before = snapshot(inputs)
    before.pop(str(gone), None)
    with time_bound(), without_read_override() if unprivileged else contextlib.nullcontext():
        status = main(argv)
    captured = capsys.readouterr()
    said = check_rule(status, captured.err, argv)
    assert (writes_inputs and status == 0) or unchanged(before, snapshot(inputs)), "an input file changed"
    record(kind, status, said)
    return status, captured.out + captured.err


def run_process(argv: list[str], kind: str, inputs: Path, prelude: str = "", timeout: int = 120) -> tuple[int, str]:
    """The command in a process of its own (``python -c``): ``prelude`` runs first, after the package is
    imported (a resource limit set there binds the command, not Python's start). Held to the rule; returns the
    exit status and standard error."""
    before = snapshot(inputs)
    code = f"import sys; from ghostmixnet.cli import main\n{prelude}\nsys.exit(main({argv!r}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                            cwd=inputs)
    said = check_rule(result.returncode, result.stderr, argv)
    assert unchanged(before, snapshot(inputs)), "an input file changed"
    record(kind, result.returncode, said)
    return result.returncode, result.stderr


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_DAC = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH: what lets root read a file of mode 000


@contextmanager
def without_read_override() -> Iterator[None]:
    """This thread without the two capabilities that let root read any file, for the block (Linux's
    ``capset``; they stay permitted, so they are taken back after): an unreadable file can then be made as
    root, as the user who meets one has it. The test is skipped where that cannot be done."""
    if os.geteuid() != 0:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()  # _LINUX_CAPABILITY_VERSION_3
    if libc.capget(ctypes.byref(header), data) != 0:
        pytest.skip(f"root cannot read its own capabilities here (errno {ctypes.get_errno()})")
    kept = data[0].effective
    data[0].effective = kept & ~_DAC
    if libc.capset(ctypes.byref(header), data) != 0:
        pytest.skip(f"root cannot give up its read override here (errno {ctypes.get_errno()})")
    try:
        yield
    finally:
        data[0].effective = kept
        libc.capset(ctypes.byref(header), data)


def make_entry(path: Path, kind: str, content: bytes) -> None:
    """``path`` as an entry of ``kind``."""
    if kind == "regular":
        path.write_bytes(content)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":  # bound in a short folder, then moved: a socket's path is limited to 107 bytes
        with tempfile.TemporaryDirectory() as short:
            s = socket.socket(socket.AF_UNIX)
            s.bind(f"{short}/s")
            s.close()
            os.rename(f"{short}/s", path)
    elif kind == "device":
        path.symlink_to("/dev/zero")  # an endless device: a reader that opened it would never finish
    elif kind == "dangling link":
        path.symlink_to(path.parent / "nothing-here")
    elif kind == "link loop":
        path.symlink_to(path)
    elif kind == "unreadable":
        path.write_bytes(content)
        path.chmod(0)
    # "missing": nothing at all


def png_bytes(seed: int = 0, size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def course_pickle(ids: object = (1, 2, 3)) -> bytes:
    return pickle.dumps({b"data": np.zeros((3, 3072), np.uint8), b"ids": list(ids) if isinstance(ids, tuple) else ids})


def photo_folder(root: Path, per_class: int = 4) -> Path:
    """A folder of two class sub-folders of small PNG photos (``train --dataset folder``)."""
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / name / f"{i}.png").write_bytes(png_bytes(100 * c + i, size=40))
    return root
