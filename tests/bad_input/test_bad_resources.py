"""Resources running out while a command writes, for real, each command in a process of its own: a file-size
limit (``RLIMIT_FSIZE``), a full disk (a small tmpfs, where one can be mounted), file descriptors exhausted
(``RLIMIT_NOFILE``), and the process killed (SIGKILL) at the worst moment of a write. In each case: one line
naming the resource and the file, or for the kill no line at all; and the previous file intact."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from harness import OUTCOMES, png_bytes, run_process, snapshot, unchanged

WRITERS = ("a checkpoint", "a calibrated checkpoint", "predict's CSV", "an ONNX export", "a packed weights file")


def prepare(what: str, inputs: Path, out: Path, files: dict[str, Path]) -> tuple[list[str], Path | None]:
    """The command that writes ``what`` into ``out``, and the file there that it replaces (its previous
    version put in place first), if any. Inputs under ``inputs``."""
    model = shutil.copy(files["model"], inputs / "model.pt")
    if what == "a checkpoint":  # the run resumed writes the next epoch's last.pt over the first's
        run = shutil.copytree(files["run"], out / "run")
        return ["train", "--resume", str(run)], run / "last.pt"
    if what == "a calibrated checkpoint":
        previous = shutil.copy(model, out / "calibrated.pt")
        return ["calibrate", str(model), "--data-dir", str(files["cifar"]), "--out", str(previous)], previous
    if what == "predict's CSV":
        images = inputs / "images"
        images.mkdir()
        for i in range(40):
            (images / f"{i:03d}.png").write_bytes(png_bytes(i))
        (out / "answers.csv").write_text("the previous answers\n")
        return ["predict", str(model), str(images), "--out", str(out / "answers.csv")], out / "answers.csv"
    if what == "an ONNX export":
        (out / "m.onnx").write_bytes(b"the previous export")
        return ["export", str(model), "--out", str(out / "m.onnx"), "--verify-images", "0"], out / "m.onnx"
    assert what == "a packed weights file", what
    return ["pack", str(model), "--out", str(out / "packed")], None


@pytest.fixture
def files(tiny_checkpoint, stopped_run, cifar_dir) -> dict[str, Path]:
    return {"model": tiny_checkpoint, "run": stopped_run, "cifar": cifar_dir}


def folders(root: Path) -> tuple[Path, Path]:
    (root / "in").mkdir()
    (root / "out").mkdir(exist_ok=True)
    return root / "in", root / "out"


def kept(what: str, out: Path) -> dict[str, str]:
    """What must survive the failed write: every file in ``out``; of a run, its checkpoints and metrics (its log
    and run.json record the attempt, as they should)."""
    files = snapshot(out)
    if what == "a checkpoint":
        files = {p: h for p, h in files.items()
                 if Path(p).name in ("last.pt", "last.prev.pt", "best.pt", "metrics.csv")}
    return files


def no_partial_files(out: Path) -> bool:
    return not [p for p in snapshot(out) if Path(p).name.endswith((".tmp", ".partial"))]


def held(what: str, out: Path, before: dict[str, str], err: str, resource_words: str, status: int) -> None:
    """The rule for a write that ran out of something: one line naming the resource and a file in ``out``, and
    what was there intact (:func:`kept`), with no partial file beside it."""
    assert status == 1, err
    line = next(line for line in err.splitlines() if line.startswith("error:"))
    assert resource_words in line and str(out) in line, line
    assert unchanged(before, snapshot(out)) and no_partial_files(out), (line, sorted(snapshot(out)))


@pytest.mark.parametrize("what", WRITERS)
def test_a_file_size_limit_while_writing(tmp_path, files, what):
    """``RLIMIT_FSIZE``, set after Python has started: the writes the command makes are over it."""
    inputs, out = folders(tmp_path)
    argv, _ = prepare(what, inputs, out, files)
    before = kept(what, out)
    limit = 4_000 if what == "predict's CSV" else 20_000
    prelude = f"import resource; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))"
    status, err = run_process(argv, f"resources: file-size limit, {what}", inputs, prelude)
    held(what, out, before, err, "the file-size limit (ulimit -f", status)


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs mounted at tmp_path/disk (root, with the right to mount, as on the CI machines); else skip."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip() or done.returncode}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.parametrize("what", WRITERS)
def test_a_full_disk_while_writing(tmp_path, small_disk, files, what):
    """The outputs on a small filesystem, filled but for 2 KiB once the previous outputs are in place. Among them
    a case issue 41 named: a checkpoint written as the disk fills, which said only PyTorch's internal
    "unexpected pos"."""
    inputs, _ = folders(tmp_path)
    out = small_disk
    argv, _ = prepare(what, inputs, out, files)
    before = kept(what, out)
    stat = os.statvfs(out)
    filler = out / ".filler"
    filler.write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - 2048))
    before[str(filler)] = snapshot(out)[str(filler)]
    status, err = run_process(argv, f"resources: full disk, {what}", inputs)
    held(what, out, before, err, "no space left on the disk holding", status)


def exhaust_descriptors(spare: int) -> str:
    """A prelude that lowers the descriptor limit to just above the highest open one, opens /dev/null until none
    is left, then closes ``spare`` of those: the command has exactly ``spare`` descriptors to work with."""
    return ("import os, resource\n"
            "top = max(int(fd) for fd in os.listdir('/proc/self/fd'))\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (top + 16, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
            "held = []\n"
            "while True:\n"
            "    try:\n"
            "        held.append(os.open('/dev/null', os.O_RDONLY))\n"
            "    except OSError:\n"
            "        break\n"
            f"for fd in held[:{spare}]:\n"
            "    os.close(fd)\n")


@pytest.mark.parametrize(("what", "spare"), [("predict's CSV", 0), ("predict's CSV", 2), ("a packed weights file", 2),
                                             ("a checkpoint", 2)])
def test_file_descriptors_exhausted(tmp_path, files, what, spare):
    """With none to spare, the first file a command opens fails; with two, the writes do where they need more.
    Either way: one line naming the resource, and never an image skipped as corrupt for it."""
    inputs, out = folders(tmp_path)
    argv, _ = prepare(what, inputs, out, files)
    before = snapshot(out)
    status, err = run_process(argv, f"resources: file descriptors, {spare} to spare, {what}", inputs,
                              exhaust_descriptors(spare))
    if status == 0:  # a command that needed no more than that at once finished correctly
        return
    line = next(line for line in err.splitlines() if line.startswith("error:"))
    assert "too many files are open" in line and "ulimit -n" in line, line
    if " while writing " in line:  # the file it was writing intact (writes finished before it, e.g. last.pt, stand)
        failed = Path(line.split(" while writing ", 1)[1].split("; ", 1)[0])
        assert snapshot(out).get(str(failed)) == before.get(str(failed)), line
    assert no_partial_files(out), line


# Killed with SIGKILL after the new file's bytes are written and before it replaces the old: the moment that
# would leave a half-written or missing file if the write were not atomic.
KILL_AT_FSYNC = """
import os, signal
_fsync = os.fsync
def fsync(fd):
    _fsync(fd)
    os.kill(os.getpid(), signal.SIGKILL)
os.fsync = fsync
"""


@pytest.mark.parametrize("what", WRITERS)
def test_killed_mid_write_keeps_the_previous_file_and_runs_again(tmp_path, files, what):
    inputs, out = folders(tmp_path)
    argv, replaced = prepare(what, inputs, out, files)
    before = kept(what, out)
    code = f"import sys; from ghostmixnet.cli import main\n{KILL_AT_FSYNC}\nsys.exit(main({argv!r}))"
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=inputs)
    assert killed.returncode == -9, killed.stderr
    assert unchanged(before, snapshot(out)), "a previous file changed"
    left = [p for p in snapshot(out) if Path(p).name.endswith(".tmp")]
    assert all(Path(p).name.startswith(".") for p in left), left
    status, err = run_process(argv, f"resources: killed, then run again, {what}", inputs)
    assert status == 0, err
    if replaced is not None:  # the second run replaced it
        assert snapshot(out)[str(replaced)] != before[str(replaced)]
    OUTCOMES[f"resources: SIGKILL mid-write, {what}"][
        f"killed; previous intact; {len(left)} hidden temporary file(s) left"] += 1
