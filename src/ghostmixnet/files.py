"""Writing files so that no reader and no crash ever sees half of one: the package's one way to write,
figures included."""

from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import DataError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; exclusive_lock then runs unlocked
    fcntl = None


@contextmanager
def atomic_open(path: Path, mode: str = "w", keep_previous: Path | None = None, **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; when the block ends without an error, flush and
    fsync it and rename it over ``path`` (else delete it), so ``path`` holds the old file or the whole new one.

    With ``keep_previous``, the file being replaced is first renamed there, so one older good copy survives
    even a new file that is later found damaged. ``kwargs`` go to ``open`` (e.g. ``newline=""`` for CSV).
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # no descriptor left, or no room for one more file
        raise_if_exhausted(e, path, path.parent)
        raise
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes it 0600: take the replaced file's mode, or the user's default
            os.fchmod(fd, path.stat().st_mode & 0o7777 if path.is_file() else 0o666 & ~_umask())
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        written = os.path.getsize(tmp) if os.path.exists(tmp) else 0
        Path(tmp).unlink(missing_ok=True)
        raise_if_exhausted(e, path, path.parent, written)
        raise


def raise_if_exhausted(error: BaseException, path: Path, folder: Path, written: int = 0) -> None:
    """If ``error``, raised while ``path`` was being written (through a file in ``folder``, ``written`` bytes so
    far), means a resource ran out (disk, file-size limit, file descriptors), raise an :class:`OSError` in one
    line naming it, the file, whether the previous file is intact, and what to do."""
    exhausted = _exhausted(error, Path(folder), written)
    if exhausted is not None:
        code, what, advice = exhausted
        kept = f"the previous {Path(path).name} is intact" if Path(path).exists() else "nothing was written"
        raise OSError(code, f"{what} while writing {path}; {kept}: {advice}") from None


def exhausted_words(error: BaseException, folder: Path) -> str | None:
    """If ``error`` means a resource ran out while writing in ``folder``: what ran out and what to do, in one
    line (e.g. "no space left on the disk holding X: free some space and try again"); else None."""
    exhausted = _exhausted(error, Path(folder), 0)
    return None if exhausted is None else f"{exhausted[1]}: {exhausted[2]}"


def descriptors_exhausted() -> str | None:
    """If this process holds as many file descriptors as its limit allows (Linux): that, in one line with what to
    do; else None. Running out shows up in other libraries' words ("could not get source code" from a module
    that could not read its own source), so a command that failed asks this before it reports."""
    advice = "close some programs or raise the limit (ulimit -n)"
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        held = len(os.listdir("/proc/self/fd")) - 1  # less the one listing them
    except OSError as e:
        return f"too many files are open (this process has none left): {advice}" if e.errno in (
            errno.EMFILE, errno.ENFILE) else None
    except (ImportError, ValueError):
        return None
    if limit == resource.RLIM_INFINITY or held < limit - 2:
        return None
    return f"too many files are open (this process holds {held}, its limit is {limit}): {advice}"


def _umask() -> int:
    """The process's file-creation mask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _exhausted(error: BaseException, folder: Path, written: int) -> tuple[int, str, str] | None:
    """If a failed write ran out of a resource: its errno, what ran out, and what to do; else None. PyTorch's zip
    writer reports any failed write in its own words ("unexpected pos", "write failed"), so for those the
    resources are looked at: the file-size limit against what was written, and the disk's free space."""
    code = error.errno if isinstance(error, OSError) else None
    if code in (errno.ENOSPC, errno.EDQUOT):
        return code, f"no space left on the disk holding {folder}", "free some space and try again"
    if code == errno.EFBIG:
        return code, "the file-size limit (ulimit -f) was reached", "raise the limit and try again"
    if code in (errno.EMFILE, errno.ENFILE):
        return code, "too many files are open", "close some programs or raise the limit (ulimit -n)"
    if not (isinstance(error, RuntimeError) and any(w in str(error) for w in ("write failed", "unexpected pos",
                                                                               "PytorchStreamWriter"))):
        return None
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        limit = -1
    if 0 <= limit <= written + (1 << 16):
        return errno.EFBIG, f"the file-size limit (ulimit -f, {limit:,} bytes) was reached", \
            "raise the limit and try again"
    try:
        free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    except (AttributeError, OSError):
        free = None
    if free is not None and free < (1 << 20):
        return errno.ENOSPC, f"no space left on the disk holding {folder}", "free some space and try again"
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    return errno.EIO, f"the write stopped part-way ({first})", "check the disk and try again"


def check_output(out: Path, inputs: Iterable[Path], flag: str = "--out") -> None:
    """Refuse, before any work, an output file that is one of the files read (links and ``..`` resolved):
    writing it would replace what is being read; or one that cannot be written (:func:`check_writable`)."""
    target = Path(out).resolve()
    for given in inputs:
        if Path(given).resolve() == target:
            raise ValueError(f"{flag} {out} is also an input: writing it would replace {given}; choose another "
                             f"{flag} file")
    check_writable(out, flag=flag)


def check_writable(out: Path, folder: bool = False, flag: str = "--out") -> None:
    """Refuse, before any work, an output file (or ``folder``) that cannot be written: a folder where a file
    is meant or the other way round, a path through a file, or a place without write permission. Creates
    nothing."""
    out = Path(out)
    if folder and out.exists() and not out.is_dir():
        raise ValueError(f"{flag} {out} is a file; name a folder")
    if not folder and out.is_dir():
        raise ValueError(f"{flag} {out} is a folder; name a file to write")
    place = out if folder else out.parent
    existing = next(p for p in (place, *place.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"{flag} {out} cannot be written: {existing} is a file, not a folder; choose another {flag}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OSError(e.errno, f"{flag} {out} cannot be written ({e.strerror} in {existing}); choose another "
                               f"{flag}") from None


@contextmanager
def exclusive_lock(path: Path, busy: str) -> Iterator[None]:
    """Hold an OS lock on the file ``path`` (created, and removed at the end) for the block; the operating
    system releases it when the process ends, however it ends, so a killed process leaves no stale lock. If
    another process holds it, raise ``OSError`` with ``busy`` and that process's id. Where the platform has
    no ``fcntl`` (Windows) the block runs unlocked."""
    if fcntl is None:
        yield
        return
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise OSError(errno.EBUSY, f"{busy}: process {holder} holds it") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            # Removed while still held: a process that opened it meanwhile is refused as it should be, and
            # one that opens the path afterwards makes a new file and goes ahead.
            Path(path).unlink(missing_ok=True)
            fcntl.flock(f, fcntl.LOCK_UN)


def entry_problem(path: Path) -> str | None:
    """What keeps ``path`` from being read as a regular file, as a predicate ("is a folder"; None: it can be
    read): missing, a dangling link, a link loop, a folder, a FIFO, a socket, a device, unreadable. Decided from
    ``stat`` alone, so it never blocks (opening a FIFO for reading waits for a writer forever)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "is a dangling symbolic link" if path.is_symlink() else "does not exist"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "is a symbolic link that loops"
        return f"cannot be read ({e.strerror or e})"
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return f"is {kind}, not a file"
    if not os.access(path, os.R_OK):
        return "is not readable (permission denied)"
    return None


@contextmanager
def open_regular(path: Path, what: str = "file") -> Iterator[IO[bytes]]:
    """``path`` opened for reading in binary if it is a readable regular file; else a :class:`DataError` in one
    line naming it and what it is. Opened without blocking and checked again on the open descriptor, so an
    entry swapped for a FIFO between the check and the open still cannot hang the process."""
    require_regular(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        words = exhausted_words(e, Path(path).parent)
        if words is not None:  # the process's limit, not the file: an OSError, which --skip-bad does not skip
            raise OSError(e.errno, f"cannot read {what} {path}: {words}") from None
        raise DataError(f"cannot read {what} {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DataError(f"cannot read {what} {path}: it is not a regular file")
        yield f


def read_regular(path: Path, what: str = "file") -> bytes:
    """The bytes of ``path`` (:func:`open_regular`); a read that fails is a :class:`DataError` too."""
    with open_regular(path, what) as f:
        try:
            return f.read()
        except OSError as e:
            raise DataError(f"cannot read {what} {path}: {e.strerror or e}") from None


def require_regular(path: Path, what: str = "file") -> None:
    """A :class:`DataError` in one line unless ``path`` is a readable regular file (:func:`entry_problem`)."""
    problem = entry_problem(path)
    if problem is not None:
        raise DataError(f"cannot read {what} {path}: it {problem}")


def cache_dir(kind: str) -> Path:
    """Where the package keeps what it can rebuild (teacher logits, serving files): ``$GHOSTMIXNET_CACHE``, else
    ``~/.cache/ghostmixnet``, then ``kind``."""
    return Path(os.environ.get("GHOSTMIXNET_CACHE") or Path.home() / ".cache" / "ghostmixnet") / kind


def to_stderr(line: str) -> None:
    """Print ``line`` to standard error: where commands say what they are doing, apart from their results."""
    print(line, file=sys.stderr)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(text)


def _fsync_dir(folder: Path) -> None:
    """Make the renames durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def pyplot() -> Any:
    """matplotlib's pyplot on its file-only backend (no screen needed). Imported on first use: matplotlib
    takes about a second to import, which commands that draw nothing should not pay."""
    import matplotlib  # heavy: imported by the commands that draw, when they draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    """Write a matplotlib figure as PNG atomically (:func:`atomic_open`) and release it."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    pyplot().close(fig)
