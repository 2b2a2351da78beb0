"""Every place a file from a stranger enters: random and mutated bytes give a clear error, never code
execution, never a crash from deep inside a library, never a hang."""

import pickle

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ghostmixnet.checkpoint import CheckpointError, load_checkpoint, save_atomic
from ghostmixnet.cli import main
from ghostmixnet.data import DataError, read_batch, read_course_pickle
from ghostmixnet.predict import load_image

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
    from ghostmixnet.models import build_model

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
    from ghostmixnet.trainer import RunError, train

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


@pytest.mark.parametrize("command", ["predict-pickle", "predict-image", "export", "quantize"])
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
                    }[command]
    before = victim.read_bytes()
    assert main(argv) == 1
    assert "is also an input" in capsys.readouterr().err and victim.read_bytes() == before


def test_resume_with_another_out_is_refused(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "run"), "--out", str(tmp_path / "other")]) == 1
    assert "--out" in capsys.readouterr().err
