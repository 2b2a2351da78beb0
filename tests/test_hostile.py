"""Every place a file from a stranger enters: random and mutated bytes give a clear error, never code
execution, never a crash from deep inside a library, never a hang."""

import io
import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ghostmixnet.cli import main
from ghostmixnet.data.cifar import read_batch
from ghostmixnet.data.course import read_course_pickle
from ghostmixnet.data.images import load_image
from ghostmixnet.errors import CheckpointError, DataError
from ghostmixnet.model.checkpoint import load_checkpoint, save_atomic

# A fixed number of examples, derandomized: the same inputs in every CI run, within the time budget.
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _valid_batch() -> bytes:
    rng = np.random.default_rng(0)
    return pickle.dumps({b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3],
                         b"batch_label": b"x"}, protocol=2)


def _valid_course() -> bytes:
    return pickle.dumps({b"data": np.zeros((3, 32, 32, 3), np.uint8)}, protocol=4)


def mutations(valid: bytes):
    """Truncations, byte flips and insertions of a valid file, and random bytes."""
    n = len(valid)
    cut = st.integers(0, n - 1).map(lambda i: valid[:i])
    flip = st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 255)), min_size=1, max_size=8).map(
        lambda edits: _flip(valid, edits))
    insert = st.tuples(st.integers(0, n), st.binary(min_size=1, max_size=16)).map(
        lambda e: valid[:e[0]] + e[1] + valid[e[0]:])
    return st.one_of(cut, flip, insert, st.binary(max_size=512))


def _flip(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for i, x in edits:
        out[i] ^= x
    return bytes(out)


def _valid_checkpoint() -> bytes:
    import io

    from ghostmixnet.config import make_config
    from ghostmixnet.model.factory import build_model

    buf = io.BytesIO()
    torch.save({"model": build_model("ghostmixnet", width=0.125).state_dict(),
                "config": make_config("paper", width=0.125).to_dict()}, buf)
    return buf.getvalue()


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 12, 3), 100, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def read_or_refuse(tmp_path, name, data, reader, error):
    """``reader`` on ``data`` written to a file: its result, or None if it raised ``error`` (anything
    else fails the test)."""
    path = tmp_path / name
    path.write_bytes(data)
    try:
        return reader(path)
    except error:
        return None


@FUZZ
@given(data=mutations(_valid_batch()))
def test_dataset_batches_fail_cleanly(tmp_path, data):
    result = read_or_refuse(tmp_path, "data_batch_1", data, read_batch, DataError)
    if result is not None:
        images, labels = result
        assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3) and len(labels) == len(images)
        assert labels.min(initial=0) >= 0 and labels.max(initial=0) < 10


@FUZZ
@given(data=mutations(_valid_course()))
def test_course_pickles_fail_cleanly(tmp_path, data):
    images = read_or_refuse(tmp_path, "test.pkl", data, read_course_pickle, DataError)
    assert images is None or (images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3))


@FUZZ
@given(data=mutations(_valid_checkpoint()))
def test_checkpoints_fail_cleanly(tmp_path, data):
    ckpt = read_or_refuse(tmp_path, "c.pt", data, load_checkpoint, CheckpointError)
    assert ckpt is None or ("model" in ckpt and "config" in ckpt)  # a flip in zip padding can leave it readable


@FUZZ
@given(data=mutations(_png()))
def test_images_fail_cleanly(tmp_path, data):
    result = read_or_refuse(tmp_path, "x.png", data, load_image, DataError)
    assert result is None or (result[0].shape == (32, 32, 3) and result[0].dtype == np.uint8)


def test_a_pickle_that_would_create_a_file_is_refused_everywhere(cifar_dir, tmp_path, capsys, exploit_pickle,
                                                                   trained_like):
    """Dataset batches (train, eval, export, quantize), course pickles (predict) and checkpoints
    (every command that takes one): the payload never runs and each error names the file."""
    import shutil

    evil, target = exploit_pickle
    poisoned = tmp_path / "poisoned"
    shutil.copytree(cifar_dir, poisoned)
    shutil.copy(evil, poisoned / "cifar-10-batches-py" / "data_batch_3")
    shutil.copy(evil, poisoned / "cifar-10-batches-py" / "test_batch")
    from ghostmixnet.config import make_config

    good = tmp_path / "good.pt"
    save_atomic({"model": trained_like().state_dict(), "config": make_config("paper", width=0.125).to_dict()}, good)
    bad_ckpt = tmp_path / "evil.pt"
    torch.save({"model": {}, "config": {}, "x": _Payload(target)}, bad_ckpt)
    calls = [
        (["train", "--data-dir", str(poisoned), "--out", str(tmp_path / "r"), "--width", "0.125", "--epochs", "1",
          "--no-compile"],
         "not a safe data pickle"),
        (["eval", str(good), "--data-dir", str(poisoned)], "not a safe data pickle"),
        (["export", str(good), "--data-dir", str(poisoned), "--out", str(tmp_path / "m.onnx")],
         "not a safe data pickle"),
        (["predict", str(good), str(evil)], "not a safe data pickle"),
    ]
    pytest.importorskip("onnxruntime")
    calls.append((["quantize", str(good), "--data-dir", str(poisoned), "--out", str(tmp_path / "q.onnx")],
                  "not a safe data pickle"))
    for command in ("eval", "predict", "export", "quantize", "bench"):
        extra = {"eval": ["--data-dir", str(cifar_dir)], "predict": [str(evil)], "export": ["--verify-images", "0"],
                 "quantize": ["--data-dir", str(cifar_dir)], "bench": []}[command]
        calls.append(([command, str(bad_ckpt), *extra], "was refused"))
    for argv, message in calls:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
        assert not target.exists(), argv
    resume_dir = tmp_path / "run"
    resume_dir.mkdir()
    shutil.copy(bad_ckpt, resume_dir / "last.pt")
    assert main(["train", "--resume", str(resume_dir), "--data-dir", str(cifar_dir)]) == 1
    assert "was refused" in capsys.readouterr().err and not target.exists()


class _Payload:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


# ---- 2. Never overwrite what the user did not ask to overwrite ----

def test_a_new_run_refuses_a_folder_that_holds_other_files(cifar_dir, tmp_path, capsys, tiny_config):
    from ghostmixnet.errors import RunError
    from ghostmixnet.train.run import train

    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text('{"mine": true}')
    with pytest.raises(RunError, match=r"is not empty: it holds files that are not a ghostmixnet run \(config.json\)"):
        train(tiny_config(epochs=1), cifar_dir, project, echo=lambda _: None)
    assert (project / "config.json").read_text() == '{"mine": true}' and len(list(project.iterdir())) == 1
    assert main(["train", "--data-dir", str(cifar_dir), "--out", str(project), "--epochs", "1", "--width", "0.125",
                 "--no-compile", "--val-size", "50"]) == 1
    assert "is not empty" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty folder is fine
    train(tiny_config(epochs=1), cifar_dir, empty, echo=lambda _: None)
    assert (empty / "last.pt").is_file()


@pytest.mark.parametrize("command", ["predict-pickle", "predict-image", "export", "quantize", "predict-model",
                                     "predict-weights", "predict-folder", "export-data"])
def test_an_output_that_is_an_input_is_refused(cifar_dir, tmp_path, capsys, trained_like, command):
    from ghostmixnet.config import make_config

    ckpt = tmp_path / "ck.pt"
    save_atomic({"model": trained_like().state_dict(), "config": make_config("paper", width=0.125).to_dict(),
                 "epoch": 1}, ckpt)
    pkl, png = tmp_path / "x.pkl", tmp_path / "a.png"
    pkl.write_bytes(_valid_course())
    from PIL import Image

    Image.new("RGB", (40, 30), "red").save(png)
    argv, victim = {"predict-pickle": (["predict", str(ckpt), str(pkl), "--out", str(pkl)], pkl),
                    "predict-image": (["predict", str(ckpt), str(png), "--out", str(png)], png),
                    "export": (["export", str(ckpt), "--out", str(ckpt), "--verify-images", "0"], ckpt),
                    "quantize": (["quantize", str(ckpt), "--out", str(ckpt), "--data-dir", str(cifar_dir)], ckpt),
                    "predict-model": (["predict", str(ckpt), str(png), "--out", str(ckpt)], ckpt),
                    "predict-weights": (["predict", str(png), "--weights", str(ckpt), "--out", str(ckpt)], ckpt),
                    "predict-folder": (["predict", str(tmp_path), "--weights", str(ckpt), "--out", str(png)], png),
                    "export-data": (["export", str(ckpt), "--data-dir", str(cifar_dir), "--out",
                                     str(cifar_dir / "cifar-10-batches-py" / "test_batch")],
                                    cifar_dir / "cifar-10-batches-py" / "test_batch"),
                    }[command]
    before = victim.read_bytes()
    assert main(argv) == 1
    assert "is also an input" in capsys.readouterr().err and victim.read_bytes() == before


def test_an_output_that_cannot_be_written_is_refused_before_the_work(tmp_path, capsys, trained_like, monkeypatch):
    import ghostmixnet.report.evaluation as evaluation
    from ghostmixnet.config import make_config

    ckpt = tmp_path / "ck.pt"
    save_atomic({"model": trained_like().state_dict(), "config": make_config("paper", width=0.125).to_dict()}, ckpt)
    (tmp_path / "file.txt").write_text("x")
    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: pytest.fail("evaluated before checking --out"))
    assert main(["eval", str(ckpt), "--out", str(tmp_path / "file.txt" / "results")]) == 1
    err = capsys.readouterr().err
    assert "--out" in err and "cannot be written" in err and "Errno" not in err and "Traceback" not in err


def test_two_runs_into_one_folder_the_second_is_refused_naming_the_first(cifar_dir, tmp_path, tiny_config):
    from ghostmixnet.errors import RunError
    from ghostmixnet.files import exclusive_lock
    from ghostmixnet.train.run import train

    def quiet(_):
        return None

    cfg, run, empty = tiny_config(epochs=2), tmp_path / "run", tmp_path / "empty"
    train(cfg, cifar_dir, run, stop_after=1, echo=quiet)
    empty.mkdir()
    in_use = r"is in use by another run or resume: process {} holds it; wait for it to end, or choose another --out"
    with exclusive_lock(run / ".lock", "test"), exclusive_lock(empty / ".lock", "test"):  # as other runs hold them
        with pytest.raises(RunError, match=in_use.format(os.getpid())):
            train(cfg, cifar_dir, run, resume=True, echo=quiet)
        with pytest.raises(RunError, match=in_use.format(os.getpid())):
            train(cfg, cifar_dir, empty, echo=quiet)
    summary = train(cfg, cifar_dir, run, resume=True, echo=quiet)  # released: the resume goes ahead
    assert summary["epochs_done"] == 2 and not (run / ".lock").exists()


def test_resume_with_another_out_is_refused(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "run"), "--out", str(tmp_path / "other")]) == 1
    assert "--out" in capsys.readouterr().err


# ---- 1. A foreign file must not exhaust the machine ----

def test_a_small_checkpoint_claiming_a_huge_model_is_refused_before_allocating(tmp_path, trained_like, monkeypatch):
    import ghostmixnet.model.checkpoint as checkpoint
    from ghostmixnet.config import make_config
    from ghostmixnet.infer.load import model_from_checkpoint

    path = tmp_path / "tiny.pt"
    save_atomic({"model": trained_like().state_dict(), "config": make_config("paper", width=40.0).to_dict()}, path)
    assert path.stat().st_size < 400_000
    real, built = checkpoint.build_architecture, []

    def watched(*args, **kwargs):
        model = real(*args, **kwargs)
        built.append(next(model.parameters()).device.type)
        return model

    monkeypatch.setattr(checkpoint, "build_architecture", watched)
    with pytest.raises(CheckpointError, match="tiny.pt holds weights for a different model"):
        model_from_checkpoint(path)
    assert built == ["meta"]  # the 19-GB model was only ever described, never allocated


def test_models_of_another_output_width_are_refused_at_load(tmp_path, trained_like, capsys):
    from ghostmixnet.config import make_config
    from ghostmixnet.errors import ExportError
    from ghostmixnet.infer.onnx import OnnxClassifier

    wide = tmp_path / "wide.pt"
    model = trained_like()
    model.fc = torch.nn.Linear(model.fc.in_features, 1000)
    # Its config names CIFAR-10's ten classes; its classifier gives 1000 logits.
    save_atomic({"model": model.state_dict(), "config": make_config("paper", width=0.125).to_dict()}, wide)
    assert main(["predict", str(wide), str(tmp_path / "x.pkl")]) == 1
    assert "wide.pt holds weights for a different model" in capsys.readouterr().err
    onnx_path = tmp_path / "wide.onnx"
    torch.onnx.export(model.eval(), torch.zeros(1, 3, 32, 32), str(onnx_path), input_names=["images"],
                      output_names=["logits"], dynamo=False)
    with pytest.raises(ExportError, match="width 1000, not one of 10"):
        OnnxClassifier(onnx_path)


# ---- 3. No silent wrong answers on real images ----

def test_phone_orientation_16_bit_and_float_images(tmp_path):
    from PIL import Image

    from ghostmixnet.data.images import load_image

    sideways = Image.new("RGB", (60, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    sideways.save(tmp_path / "phone.jpg", exif=exif)
    _, info = load_image(tmp_path / "phone.jpg")
    assert info.original_size == (20, 60)
    gradient16 = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    Image.fromarray(gradient16).save(tmp_path / "g16.png")
    image16, _ = load_image(tmp_path / "g16.png")
    assert 100 < image16.mean() < 155 and image16.min() < 10 and image16.max() > 245  # scaled, not clipped white
    unit = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))
    Image.fromarray(unit, mode="F").save(tmp_path / "f.tif")
    imagef, _ = load_image(tmp_path / "f.tif")
    assert 100 < imagef.mean() < 155  # [0, 1] floats scaled, not all black
    Image.fromarray(unit * 1e6, mode="F").save(tmp_path / "huge.tif")
    with pytest.raises(DataError, match="float pixels outside"):
        load_image(tmp_path / "huge.tif")


def test_a_checkpoint_with_nan_weights_is_refused(tmp_path, trained_like, capsys):
    from ghostmixnet.config import make_config

    state = trained_like().state_dict()
    state["fc.weight"][0, 0] = float("nan")
    save_atomic({"model": state, "config": make_config("paper", width=0.125).to_dict()}, tmp_path / "nan.pt")
    (tmp_path / "x.pkl").write_bytes(_valid_course())
    assert main(["predict", str(tmp_path / "nan.pt"), str(tmp_path / "x.pkl"), "--out", str(tmp_path / "s.csv")]) == 1
    assert "NaN or infinite weights" in capsys.readouterr().err and not (tmp_path / "s.csv").exists()


def test_bad_files_and_linked_folders_are_reported_and_skippable(tmp_path, trained_like, capsys):
    from PIL import Image

    from ghostmixnet.config import make_config

    save_atomic({"model": trained_like().state_dict(), "config": make_config("paper", width=0.125).to_dict()},
                tmp_path / "ck.pt")
    folder, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    Image.new("RGB", (40, 40), "blue").save(folder / "good.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    Image.new("RGB", (40, 40), "green").save(elsewhere / "linked.png")
    (folder / "more").symlink_to(elsewhere, target_is_directory=True)
    assert main(["predict", str(tmp_path / "ck.pt"), str(folder)]) == 1
    assert "broken.jpg" in capsys.readouterr().err  # stops, and says how to go on
    out = tmp_path / "p.csv"
    assert main(["predict", str(tmp_path / "ck.pt"), str(folder), "--skip-bad", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped" in printed and "more: a linked folder is not followed" in printed
    rows = out.read_text().splitlines()
    assert rows[0] == "file,label,probability,score,sure,error" and len(rows) == 3
    assert any(r.startswith(str(folder / "broken.jpg")) and "cannot read image" in r for r in rows)


def test_course_ids_are_used_in_the_submission(tmp_path, trained_like, capsys):
    from ghostmixnet.config import make_config

    save_atomic({"model": trained_like().state_dict(), "config": make_config("paper", width=0.125).to_dict()},
                tmp_path / "ck.pt")
    images = np.zeros((3, 32, 32, 3), np.uint8)
    (tmp_path / "t.pkl").write_bytes(pickle.dumps({b"data": images, b"ids": [17, 4, 99]}))
    assert main(["predict", str(tmp_path / "ck.pt"), str(tmp_path / "t.pkl"), "--out", str(tmp_path / "s.csv")]) == 0
    assert "IDs from its 'ids' entry" in capsys.readouterr().out
    assert [r.split(",")[0] for r in (tmp_path / "s.csv").read_text().splitlines()[1:]] == ["17", "4", "99"]
    (tmp_path / "empty.pkl").write_bytes(pickle.dumps({b"data": np.zeros((0, 32, 32, 3), np.uint8)}))
    empty = ["predict", str(tmp_path / "ck.pt"), str(tmp_path / "empty.pkl"), "--out", str(tmp_path / "e.csv")]
    assert main(empty) == 1
    assert "holds no images" in capsys.readouterr().err


# ---- 4. Every error a line that names the problem and the fix ----

def test_a_full_disk_says_so_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic({"model": {}, "config": {}}, path)
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match=r"the write stopped part-way \(\[enforce fail.*the previous last.pt is intact"):
        save_atomic({"model": {}, "config": {}}, path)  # the disk has room: PyTorch's words, said as a failed write
    import os

    class Full:
        f_bavail, f_frsize = 3, 4096

    monkeypatch.setattr(os, "statvfs", lambda _: Full)
    with pytest.raises(OSError, match=r"no space left on the disk holding .* while writing .*last.pt; the previous "
                                      r"last.pt is intact: free some space"):
        save_atomic({"model": {}, "config": {}}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_file_size_limit_reached_mid_checkpoint_says_so_and_keeps_the_previous_one(tmp_path):
    """The real thing, not a mock: a process under RLIMIT_FSIZE saves a checkpoint larger than its limit."""
    import subprocess
    import sys

    path = tmp_path / "last.pt"
    save_atomic({"model": {"w": torch.zeros(4)}, "config": {}}, path)
    before = path.read_bytes()
    script = ("import resource, torch; from ghostmixnet.model.checkpoint import save_atomic; "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY)); "
              f"save_atomic({{'model': {{'w': torch.zeros(500_000)}}, 'config': {{}}}}, {str(path)!r})")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and "enforce fail" not in last, result.stderr
    assert last.startswith("OSError: [Errno 27] the file-size limit (ulimit -f, 200,000 bytes) was reached while "
                           f"writing {path}; the previous last.pt is intact"), last
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.parametrize("argv, message", [
    (["train", "--log-every", "0"], "argument --log-every: must be an integer of at least 1, got '0'"),
    (["train", "--width", "inf"], "argument --width: must be a finite number, got 'inf'"),
    (["train", "--stop-after", "-1"], "argument --stop-after: must be an integer of at least 1, got '-1'"),
    (["train", "--time-limit", "-5"], "argument --time-limit: must be a positive finite number, got '-5'"),
    (["bench", "ghostmixnet", "--warmup", "-1"], "argument --warmup: must be an integer of at least 0, got '-1'"),
    (["eval", "pretrained", "--batch-size", "-1"], "argument --batch-size: must be an integer of at least 1"),
    (["predict", "course.pkl", "--batch-size", "-4"], "argument --batch-size: must be an integer of at least 1"),
    (["predict", "course.pkl", "--batch-size", "0"], "argument --batch-size: must be an integer of at least 1"),
    (["quantize", "pretrained", "--percentile", "nan"], "--percentile: must be a positive finite number at most 100"),
    (["info", "ghostmixnet", "--width", "1e400"], "argument --width: must be a positive finite number"),
    (["serve", "pretrained", "--port", "70000"], "argument --port: must be an integer of at least 0 and at most 65535"),
    (["serve", "pretrained", "--max-files", "2.5"], "argument --max-files: must be an integer of at least 1"),
])
def test_bad_numbers_are_refused_when_parsed_naming_the_option(cifar_dir, tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    extra = ["--data-dir", str(cifar_dir), "--out", str(out), "--no-compile"] if argv[0] == "train" else []
    assert main(argv + extra) == 2  # a usage error, as argparse reports any other
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_the_library_refuses_impossible_numbers_too(trained_like, tmp_path):
    from ghostmixnet.infer.evaluate import evaluate
    from ghostmixnet.infer.logits import predict_logits
    from ghostmixnet.predict.classify import predict_inputs
    from ghostmixnet.serve.uploads import Limits

    images, labels = np.zeros((4, 32, 32, 3), np.uint8), np.arange(4)
    for batch_size in (-1, 0, 2.5):
        with pytest.raises(ValueError, match="batch_size must be an integer of at least 1"):
            evaluate(trained_like(), images, labels, torch.device("cpu"), batch_size=batch_size)
        with pytest.raises(ValueError, match="batch_size must be an integer of at least 1"):
            predict_logits(trained_like(), images, torch.device("cpu"), batch_size=batch_size)
    (tmp_path / "course.pkl").write_bytes(pickle.dumps({b"data": images}))
    with pytest.raises(ValueError, match="batch_size must be an integer of at least 1"):
        predict_inputs(trained_like(), [tmp_path / "course.pkl"], torch.device("cpu"), tmp_path / "s.csv", -4)
    assert not (tmp_path / "s.csv").exists()
    with pytest.raises(ValueError, match="max_files must be an integer of at least 1"):
        Limits(max_files=0)


def test_an_evaluation_scores_exactly_the_images_it_read(trained_like, monkeypatch):
    import ghostmixnet.infer.evaluate as evaluation

    real = evaluation.predict_logits
    monkeypatch.setattr(evaluation, "predict_logits", lambda *a, **k: real(*a, **k)[:-1])  # one image lost
    with pytest.raises(RuntimeError, match="scored 3 images of the 4 it read"):
        evaluation.evaluate(trained_like(), np.zeros((4, 32, 32, 3), np.uint8), np.arange(4), torch.device("cpu"))


def test_a_submission_has_one_row_per_image_or_is_not_written(trained_like, tmp_path, monkeypatch):
    import ghostmixnet.predict.classify as classify

    images = np.zeros((5, 32, 32, 3), np.uint8)
    (tmp_path / "course.pkl").write_bytes(pickle.dumps({b"data": images}))
    real = classify.predict_logits
    monkeypatch.setattr(classify, "predict_logits", lambda *a, **k: real(*a, **k)[:-1])
    with pytest.raises(RuntimeError, match=r"classified \d of the 5 images; .*s.csv was not written"):
        classify.predict_inputs(trained_like(), [tmp_path / "course.pkl"], torch.device("cpu"), tmp_path / "s.csv",
                                batch_size=2)
    assert not (tmp_path / "s.csv").exists()


def test_a_run_folder_stands_for_its_best_checkpoint(cifar_dir, tmp_path, capsys, trained_like):
    from ghostmixnet.config import make_config

    run = tmp_path / "run"
    run.mkdir()
    save_atomic({"model": trained_like().state_dict(), "config": make_config("paper", width=0.125,
                 val_size=50).to_dict(), "epoch": 3}, run / "best.pt")
    assert main(["eval", str(run), "--data-dir", str(cifar_dir)]) == 0
    assert "best.pt: ghostmixnet (epoch 3)" in capsys.readouterr().out
    assert main(["eval", str(tmp_path), "--data-dir", str(cifar_dir)]) == 1
    assert "is a folder without best.pt" in capsys.readouterr().err


def test_messages_give_only_advice_that_applies(tmp_path, capsys, trained_like, exploit_pickle):
    from ghostmixnet.config import make_config

    save_atomic({"model": trained_like().state_dict(), "config": make_config("paper", width=0.125).to_dict()},
                tmp_path / "ck.pt")
    assert main(["eval", str(tmp_path / "ck.pt"), "--data-dir", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert "CIFAR-10 not found" in err and "--data-dir" in err and "pass --download" not in err
    evil, _ = exploit_pickle
    torch.save({"x": 1}, tmp_path / "plain.pt")  # a zip checkpoint around a hostile pickle
    import zipfile

    with zipfile.ZipFile(tmp_path / "plain.pt") as z:
        names = z.namelist()
        data = {n: z.read(n) for n in names}
    pkl = next(n for n in names if n.endswith("data.pkl"))
    data[pkl] = evil.read_bytes()
    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as z:
        for n, b in data.items():
            z.writestr(n, b)
    assert main(["eval", str(tmp_path / "evil.pt")]) == 1
    err = capsys.readouterr().err
    assert "was refused" in err and "weights_only" not in err


def test_bad_onnx_metadata_names_the_file(tmp_path, trained_like):
    import onnx

    from ghostmixnet.config import make_config
    from ghostmixnet.deploy.export import export_onnx
    from ghostmixnet.errors import ExportError
    from ghostmixnet.infer.onnx import OnnxClassifier

    path = export_onnx(trained_like(), make_config("paper", width=0.125), tmp_path / "m.onnx")
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == "ghostmixnet_config":
            prop.value = '{"width": -3}'
    onnx.save(model, str(path))
    with pytest.raises(ExportError, match=r"m.onnx: its ghostmixnet_config metadata is invalid"):
        OnnxClassifier(path).config()


def test_help_shows_the_chosen_recipes_values_and_what_each_recipe_is(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--recipe", "fast", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Training epochs. [fast: 10]" in text and "trains 200 epochs" in text
    assert "fast: short budgets" in text and "paper-nomix: the paper's recipe without Mixup/CutMix" in text


def test_foreign_files_are_refused_within_a_memory_limit(tmp_path, trained_like):
    """The same two files through the command line in a process limited to 2 GB of data: a clear line in
    seconds, not an allocator error (the width-40 model alone would need about 19 GB)."""
    import os
    import subprocess
    import sys
    import time

    from ghostmixnet.config import make_config

    huge = tmp_path / "huge.pt"
    save_atomic({"model": trained_like().state_dict(), "config": make_config("paper", width=40.0).to_dict()}, huge)
    wide = trained_like()
    wide.fc = torch.nn.Linear(wide.fc.in_features, 1000)
    torch.onnx.export(wide.eval(), torch.zeros(1, 3, 32, 32), str(tmp_path / "wide.onnx"), dynamo=False)
    script = ("import resource, sys; resource.setrlimit(resource.RLIMIT_DATA, (2 << 30, 2 << 30)); "
              "from ghostmixnet.cli import main; sys.exit(main(sys.argv[1:]))")
    for path, message in ((huge, "holds weights for a different model"), (tmp_path / "wide.onnx", "width 1000")):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", script, "eval", str(path), "--data-dir", str(tmp_path)],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        assert done.returncode == 1 and message in done.stderr, done.stderr[-500:]
        assert "alloc" not in done.stderr and time.perf_counter() - started < 60


def _huge_png(path: Path, side: int = 13000) -> Path:
    """A PNG of a few hundred bytes whose header claims side x side pixels (no decoder gets to its data)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(bytes(4096))) + chunk(b"IEND", b""))
    return path


def _zipped_zeros(path: Path, megabytes: int) -> Path:
    """A checkpoint whose tensor record is ``megabytes`` of deflate-compressed zeros (PyTorch stores records
    uncompressed)."""
    buffer = io.BytesIO()
    torch.save({"model": {"w": torch.zeros(4)}, "config": {}}, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for record in source.infolist():
            with archive.open(record.filename, "w", force_zip64=True) as out:
                if record.filename.endswith("data/0"):
                    for _ in range(megabytes):
                        out.write(bytes(1 << 20))
                else:
                    out.write(source.read(record.filename))
    return path


def test_what_would_take_gigabytes_is_refused_in_seconds_under_a_memory_limit(cifar_dir, tmp_path, trained_like):
    """Each in a process limited to 2 GB of data: one clear line in seconds, never an allocator error: a
    checkpoint of compressed zeros, a PNG that claims 169 million pixels, a resume whose config claims a
    19-GB model, a run whose model does not fit."""
    import subprocess
    import sys
    import time

    from ghostmixnet.config import make_config

    bomb = _zipped_zeros(tmp_path / "zeros.pt", 2500)
    assert bomb.stat().st_size < 4_000_000
    photo = _huge_png(tmp_path / "huge.png")
    run = tmp_path / "run"
    run.mkdir()
    claims = make_config("paper", width=40.0, val_size=50, compile=False)  # about 19 GB of weights
    save_atomic({"model": trained_like().state_dict(), "config": claims.to_dict(), "optimizer": {}, "epoch": 1,
                 "step": 0}, run / "last.pt")
    script = ("import resource, sys; resource.setrlimit(resource.RLIMIT_DATA, (2 << 30, 2 << 30)); "
              "from ghostmixnet.cli import main; sys.exit(main(sys.argv[1:]))")
    cases = [(["eval", str(bomb), "--data-dir", str(cifar_dir)], 1, "is compressed, which PyTorch never writes"),
             (["predict", str(photo)], 1, "13000x13000 pixels is over the limit of 40,000,000"),
             (["predict", str(photo), "--skip-bad"], 0, "skipped"),
             (["train", "--resume", str(run), "--data-dir", str(cifar_dir), "--no-compile"], 1,
              "holds weights for a different model"),
             (["train", "--width", "20", "--data-dir", str(cifar_dir), "--out", str(tmp_path / "wide"),
               "--val-size", "50", "--no-compile"], 1, "GB is available; lower --width or --batch-size")]
    for argv, code, message in cases:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        assert done.returncode == code and message in done.stderr + done.stdout, (argv, done.stderr[-800:])
        assert "alloc" not in done.stderr and "Traceback" not in done.stderr and "Warning" not in done.stderr
        assert time.perf_counter() - started < 60


@FUZZ
@given(st.integers(1, 8), st.integers(1, 8), st.data())
def test_16_bit_and_float_pixels_are_scaled_not_clipped(height, width, data):
    from PIL import Image

    from ghostmixnet.data.images import to_8bit

    raw = np.array(data.draw(st.lists(st.integers(0, 65535), min_size=height * width, max_size=height * width)),
                   dtype=np.uint16).reshape(height, width)
    scaled = np.asarray(to_8bit(Image.fromarray(raw)))
    assert scaled.dtype == np.uint8 and np.array_equal(scaled, np.rint(raw / 257.0).astype(np.uint8))
    unit = (raw / 65535.0).astype(np.float32)
    assert np.abs(np.asarray(to_8bit(Image.fromarray(unit, mode="F"))).astype(int) - np.rint(unit * 255)).max() <= 1
