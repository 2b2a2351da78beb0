"""Bad input by kind, generated: every kind of file-system entry wherever a command reads a path, every field of
a data batch, every name `pack --name` accepts, driven through the command line as a user would.

Each case runs ``ghostmixnet.cli.main`` in this process under an alarm, and holds the outcome to one rule:
the command finishes (exit 0), or it exits 1 with exactly one line on standard error, starting ``error:``, with
no traceback; within ``SECONDS``; and no input file changed. Hypothesis draws the cases (derandomized, so CI
runs the same ones each time); ``OUTCOMES`` counts what each kind gave, printed on standard error after the
module, for the record.
"""

import collections
import hashlib
import os
import pickle
import re
import signal
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ghostmixnet.cli import main
from ghostmixnet.config import make_config
from ghostmixnet.model.checkpoint import save_atomic
from ghostmixnet.model.factory import build_model

SECONDS = 30
"""The time bound of one command: nothing may block (a FIFO opened for reading waits for a writer forever)."""
OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

ENTRY_KINDS = ("regular", "empty", "folder", "fifo", "socket", "device", "dangling link", "link loop", "unreadable",
               "missing")


class Blocked(BaseException):  # not an Exception: the command line must not turn it into its one line
    pass


def _alarm(*_):
    raise Blocked(f"the command did not finish in {SECONDS} s")


def snapshot(folder: Path) -> dict[str, str]:
    """The hash of every regular file under ``folder`` (links not followed)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if path.is_file() and not path.is_symlink() and os.access(path, os.R_OK):
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def run(argv: list[str], capsys, kind: str, inputs: Path, writes_inputs: bool = False) -> tuple[int, str]:
    """``main(argv)`` held to the rule above; returns its exit status and what it printed. ``writes_inputs``:
    the command's job is to change ``inputs`` when it succeeds (a resumed run), so they are held only on failure."""
    before = snapshot(inputs)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(SECONDS)
    try:
        status = main(argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    captured = capsys.readouterr()
    err = captured.err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    if status != 0:
        errors = [line for line in lines if line.startswith("error:")]
        assert status == 1 and len(errors) == 1, (argv, err)
        assert len(errors[0]) < 600, errors[0]
    assert (writes_inputs and status == 0) or snapshot(inputs) == before, "an input file changed"
    said = re.sub(r"\S*pytest-of-\S*?(?=[:;,)]|\s|$)", "PATH", errors[0][7:]) if status else ""
    OUTCOMES[kind][f"exit {status}" + (f": {said[:90]}" if status else "")] += 1
    return status, captured.out + err


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
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
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


@pytest.fixture(scope="module", autouse=True)
def outcomes_for_the_record(request):
    """After the module: the counts of what each kind gave, on standard error (the CI log keeps them)."""
    yield
    with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        for kind, counts in sorted(OUTCOMES.items()):
            print(f"\n{kind}: " + "; ".join(f"{n} x {what}" for what, n in counts.most_common()), file=sys.stderr)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "best.pt"
    save_atomic({"model": build_model("ghostmixnet", width=0.125).state_dict(),
                 "config": make_config("paper", width=0.125, val_size=50).to_dict(), "epoch": 1}, path)
    return path


def png_bytes(seed: int = 0) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def course_pickle() -> bytes:
    return pickle.dumps({b"data": np.zeros((3, 3072), np.uint8), b"ids": [1, 2, 3]})


SLOTS = {
    # slot: (what fills it when regular, how the command reads it)
    "image named": (png_bytes(), lambda m, e, d: ["predict", str(m), str(e)]),
    "entry in an image folder": (png_bytes(), lambda m, e, d: ["predict", str(m), str(e.parent)]),
    "entry in an image folder, --skip-bad": (png_bytes(),
                                             lambda m, e, d: ["predict", str(m), str(e.parent), "--skip-bad"]),
    "course pickle": (course_pickle(), lambda m, e, d: ["predict", str(m), str(e)]),
    "model file": (None, lambda m, e, d: ["predict", str(e), str(d / "ok.png")]),
    "data batch": (None, lambda m, e, d: ["eval", str(m), "--data-dir", str(d), "--batch-size", "64"]),
    "weights file": ("weights", lambda m, e, d: ["predict", str(e), str(d / "ok.png")]),
    "ONNX file": ("onnx", lambda m, e, d: ["predict", str(e), str(d / "ok.png")]),
    "run folder's last.pt": ("run", lambda m, e, d: ["train", "--resume", str(e.parent), "--stop-after", "1"]),
}


def need_unreadable(kind: str) -> None:
    if kind == "unreadable" and os.geteuid() == 0:
        pytest.skip("root reads any file: an unreadable file cannot be made")


def copy_run(run: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(run, to)
    return to


_made: dict[str, tuple[bytes, object]] = {}


def _weights(tmp_path_factory, model, _data) -> tuple[bytes, str]:
    if "weights" not in _made:
        from ghostmixnet.deploy.pack import pack_checkpoint

        written = pack_checkpoint(model, tmp_path_factory.mktemp("packed"))
        _made["weights"] = (written.read_bytes(), written.name)  # its name holds its hash
    return _made["weights"]


def _onnx(tmp_path_factory, model, _data) -> tuple[bytes, str]:
    if "onnx" not in _made:
        from ghostmixnet.deploy.export import export_onnx
        from ghostmixnet.infer.load import model_from_checkpoint

        net, cfg, _ = model_from_checkpoint(model)
        path = export_onnx(net, cfg, tmp_path_factory.mktemp("onnx") / "model.onnx")
        _made["onnx"] = (path.read_bytes(), "model.onnx")
    return _made["onnx"]


def _run(tmp_path_factory, model, data) -> tuple[bytes, Path]:
    """A run folder stopped after one epoch (on the tiny synthetic CIFAR-10), made once."""
    if "run" not in _made:
        from ghostmixnet.train.run import train

        run = tmp_path_factory.mktemp("run") / "run"
        cfg = make_config("paper", width=0.125, epochs=2, batch_size=32, val_size=50, num_workers=0, compile=False)
        train(cfg, data, run, stop_after=1, echo=lambda _: None)
        _made["run"] = ((run / "last.pt").read_bytes(), run)
    return _made["run"]


FILES = {"weights": _weights, "onnx": _onnx, "run": _run}


@pytest.mark.parametrize("kind", ENTRY_KINDS)
@pytest.mark.parametrize("slot", sorted(SLOTS))
def test_every_kind_of_entry_where_a_path_is_read(tmp_path_factory, model, cifar_dir, capsys, slot, kind):
    """Every slot with every kind of entry: the whole product, not a sample (60 cases)."""
    if kind == "unreadable" and os.geteuid() == 0:
        OUTCOMES[f"entries: {slot}"]["not made: root reads any file"] += 1
        return
    folder = tmp_path_factory.mktemp("entries")
    (folder / "ok.png").write_bytes(png_bytes(1))
    content, argv_of = SLOTS[slot]
    if slot == "model file":
        content = model.read_bytes()
    if content in ("weights", "onnx", "run"):
        content, name = FILES[content](tmp_path_factory, model, cifar_dir)
    data = folder
    if slot == "data batch":  # a copy of the tiny CIFAR-10 folder whose test batch is the entry
        data = folder / "data"
        (data / "cifar-10-batches-py").mkdir(parents=True)
        for f in (cifar_dir / "cifar-10-batches-py").iterdir():
            (data / "cifar-10-batches-py" / f.name).write_bytes(f.read_bytes())
        entry = data / "cifar-10-batches-py" / "test_batch"
        content = entry.read_bytes()
        entry.unlink()
    else:
        sub = folder / "images"
        sub.mkdir()
        (sub / "first.png").write_bytes(png_bytes(2))
        suffix = {"course pickle": ".pkl", "model file": ".pt"}.get(slot, ".png")
        entry = sub / f"entry{suffix}"
        if slot in ("weights file", "ONNX file"):
            entry = sub / name
        if slot == "run folder's last.pt":
            entry = copy_run(FILES["run"](tmp_path_factory, model, cifar_dir)[1], folder / "run") / "last.pt"
            entry.unlink()
    make_entry(entry, kind, content)
    try:
        status, err = run(argv_of(model, entry, data), capsys, f"entries: {slot}", folder,
                          writes_inputs=slot == "run folder's last.pt")
    finally:
        if kind == "unreadable" and entry.exists():
            entry.chmod(0o600)
    walked = slot.startswith("entry in an image folder") and kind in ("folder", "missing")  # a subfolder is walked
    if kind == "regular" or walked:
        assert status == 0, err
    elif slot.endswith("--skip-bad"):
        assert status == 0 and f"skipped {entry}" in err, err  # named, and the other images classified
    else:
        assert status == 1, err


LABELS = st.one_of(
    st.lists(st.integers(0, 9), min_size=100, max_size=100),  # fine
    st.lists(st.integers(-5, 20), min_size=100, max_size=100),  # out of range, maybe
    st.lists(st.integers(0, 9), min_size=0, max_size=150),  # a length that disagrees, maybe
    st.lists(st.floats(allow_nan=True), min_size=100, max_size=100),
    st.lists(st.booleans(), min_size=100, max_size=100),
    st.lists(st.text(max_size=2), min_size=100, max_size=100),
    st.just(np.arange(100) % 10), st.just((np.arange(100) % 10).astype(np.float32)),
    st.just(None), st.just("0123456789"), st.just({0: 1}),
)
DATA = st.sampled_from(["uint8 (100, 3072)", "float32 (100, 3072)", "uint8 (100, 3071)", "uint8 (99, 3072)",
                        "int64 (100, 3072)", "missing"])


def eval_batch(tmp_path_factory, model, capsys, batch: dict, kind: str) -> tuple[int, str]:
    """``eval`` on a data folder whose test batch is ``batch`` (its training batches good)."""
    folder = tmp_path_factory.mktemp("fields") / "data"
    (folder / "cifar-10-batches-py").mkdir(parents=True)
    good = {b"data": np.random.default_rng(0).integers(0, 256, (20, 3072)).astype(np.uint8),
            b"labels": list(range(10)) * 2}
    for i in range(1, 6):
        (folder / "cifar-10-batches-py" / f"data_batch_{i}").write_bytes(pickle.dumps(good))
    (folder / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(batch))
    (folder / "cifar-10-batches-py" / "batches.meta").write_bytes(pickle.dumps({b"label_names": []}))
    return run(["eval", str(model), "--data-dir", str(folder), "--batch-size", "64"], capsys, kind, folder)


IMAGES = np.random.default_rng(1).integers(0, 256, (100, 3072)).astype(np.uint8)


@SETTINGS
@given(labels=LABELS)
def test_every_kind_of_labels_in_a_data_batch(tmp_path_factory, model, capsys, labels):
    status, err = eval_batch(tmp_path_factory, model, capsys, {b"data": IMAGES, b"labels": labels},
                             "fields: a test batch's labels")
    fine = (isinstance(labels, (list, np.ndarray)) and len(labels) == 100
            and (labels.dtype.kind in "iu" if isinstance(labels, np.ndarray) else
                 all(isinstance(v, int) and not isinstance(v, bool) for v in labels))
            and all(0 <= v <= 9 for v in labels))
    assert (status == 0) == fine, (labels, err)
    if not fine:
        assert "test_batch: field 'labels'" in err, err  # the file and the field named


@SETTINGS
@given(data=DATA)
def test_every_kind_of_image_data_in_a_data_batch(tmp_path_factory, model, capsys, data):
    batch = {b"labels": list(range(10)) * 10}
    if data != "missing":
        dtype, shape = data.split(" ", 1)
        batch[b"data"] = np.zeros(eval(shape), dtype)  # noqa: S307 - our own literal shapes
    status, err = eval_batch(tmp_path_factory, model, capsys, batch, "fields: a test batch's images")
    assert (status == 0) == (data == "uint8 (100, 3072)"), (data, err)
    if status:
        assert "test_batch" in err and ("'data'" in err or "100 labels for 99 images" in err), err


@SETTINGS
@given(name=st.one_of(st.text(min_size=0, max_size=30), st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True)))
def test_every_name_pack_accepts_is_read_back_by_predict(tmp_path_factory, model, capsys, name):
    folder = tmp_path_factory.mktemp("pack")
    (folder / "in.png").write_bytes(png_bytes(3))
    if "\0" in name:  # the command line cannot carry a NUL
        return
    status, err = run(["pack", str(model), "--out", str(folder / "out"), "--name", name], capsys, "own files: pack",
                      model.parent)
    if status != 0:
        assert "--name" in err and "cannot name a weights file" in err, err
        return
    written = list((folder / "out").glob("*.safetensors"))
    assert len(written) == 1 and written[0].name.startswith(name + "-")
    capsys.readouterr()
    status, err = run(["predict", str(written[0]), str(folder / "in.png")], capsys, "own files: predict the packed",
                      folder)
    assert status == 0, (name, err)



def _limited(kind: int, value: int):
    import resource

    def apply():
        resource.setrlimit(kind, (value, resource.getrlimit(kind)[1]))
    return apply


@pytest.mark.parametrize("what", ["predict's CSV", "an ONNX export", "a packed weights file"])
def test_a_file_size_limit_while_writing_says_so_and_keeps_the_previous_file(model, tmp_path, what):
    """Resources running out, for real: each command run in a process under ``RLIMIT_FSIZE`` (a full disk
    behaves alike: the same error path, tested with a faked one in test_hostile.py) over a previous output."""
    import resource
    import subprocess

    images = tmp_path / "images"
    images.mkdir()
    for i in range(40):
        (images / f"{i:03d}.png").write_bytes(png_bytes(i))
    out, argv, limit = {
        "predict's CSV": (tmp_path / "answers.csv", ["predict", str(model), str(images), "--out",
                                                     str(tmp_path / "answers.csv")], 2_000),
        "an ONNX export": (tmp_path / "m.onnx", ["export", str(model), "--out", str(tmp_path / "m.onnx"),
                                                  "--verify-images", "0"], 20_000),
        "a packed weights file": (tmp_path / "packed", ["pack", str(model), "--out", str(tmp_path / "packed")],
                                  20_000),
    }[what]
    previous = b"the previous output"
    if out.suffix:
        out.write_bytes(previous)
    before = snapshot(tmp_path)
    result = subprocess.run([sys.executable, "-m", "ghostmixnet", *argv], capture_output=True, text=True, timeout=300,
                            preexec_fn=_limited(resource.RLIMIT_FSIZE, limit))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "the file-size limit (ulimit -f" in errors[0], result.stderr
    assert "was reached while writing" in errors[0] and str(tmp_path) in errors[0], errors[0]
    assert snapshot(tmp_path) == before  # the previous output intact, no partial file left
    OUTCOMES[f"resources: file-size limit, {what}"][f"exit 1: {errors[0][7:100]}..."] += 1


@pytest.mark.parametrize("kind", ["empty", "folder", "fifo", "device", "dangling link", "link loop"])
@pytest.mark.parametrize("cache", ["serving measurements", "compile costs"])
def test_every_kind_of_entry_in_a_cache_is_measured_again_never_waited_on(tmp_path, monkeypatch, model, cache, kind):
    """Caches are the package's own, but anything can be put there: such an entry counts as no measurement."""
    monkeypatch.setenv("GHOSTMIXNET_CACHE", str(tmp_path / "cache"))
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(SECONDS)
    try:
        if cache == "compile costs":
            from ghostmixnet.train.compile_auto import cost_file, read_costs

            cost_file().parent.mkdir(parents=True, exist_ok=True)
            make_entry(cost_file(), kind, b"")
            assert read_costs(cost_file()) == {}
        else:
            from ghostmixnet.serve.served import load_served_model

            load_served_model(model, runtime="torch", views=1, log=lambda _: None)  # measures, keeps
            kept = list((tmp_path / "cache" / "serve").glob("speed-*.json"))
            assert len(kept) == 1
            kept[0].unlink()
            make_entry(kept[0], kind, b"")
            lines = []
            served = load_served_model(model, runtime="torch", views=1, log=lines.append)
            assert served.info["speed"]["images_per_s"] > 0 and any("timing torch" in line for line in lines)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    OUTCOMES[f"entries: cache of {cache}"][f"{kind}: measured again"] += 1


@SETTINGS
@given(name=st.one_of(st.from_regex(r"[A-Za-z0-9_ .-]{1,12}(\.(onnx|ONNX|onnx\.bak|pt|png|txt))?", fullmatch=True),
                      st.sampled_from(["model", "model.onnx", "model.ONNX", "m.onnx.bak", ".onnx", "a b.onnx"])))
def test_every_name_export_accepts_is_read_back_by_predict(tmp_path_factory, model, capsys, name):
    folder = tmp_path_factory.mktemp("export")
    (folder / "in.png").write_bytes(png_bytes(4))
    if name in (".", "..") or "/" in name:
        return
    out = folder / "out" / name
    out.parent.mkdir()
    status, err = run(["export", str(model), "--out", str(out), "--verify-images", "0"], capsys, "own files: export",
                      model.parent)
    if status != 0:
        assert "files must end in .onnx" in err, err
        return
    status, err = run(["predict", str(out), str(folder / "in.png")], capsys, "own files: predict the exported", folder)
    assert status == 0, (name, err)
