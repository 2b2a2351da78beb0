import dataclasses
import json
import time
from pathlib import Path

import pytest
import torch
from test_run import quiet

from ghostmixnet.errors import RunError
from ghostmixnet.model.checkpoint import load_checkpoint
from ghostmixnet.train.run import train


@pytest.mark.parametrize("workers,backend", [(0, "torchvision"), (2, "torchvision"), (0, "batched")])
def test_resume_equals_an_uninterrupted_run(cifar_dir, tmp_path, tiny_config, workers, backend):
    cfg = tiny_config(num_workers=workers, augment_backend=backend)
    train(cfg, cifar_dir, tmp_path / "straight", echo=quiet)
    first = train(cfg, cifar_dir, tmp_path / "resumed", stop_after=1, echo=quiet)
    assert first["epochs_done"] == 1 and "test_acc" not in first
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 1
    train(cfg, cifar_dir, tmp_path / "resumed", resume=True, echo=quiet)
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    assert a["history"][1]["val_loss"] == b["history"][1]["val_loss"]
    assert a["scheduler"] == b["scheduler"]


@pytest.fixture(scope="module")
def straight16(cifar_dir, tmp_path_factory):
    """An uninterrupted run of the batch-16 config (10 steps an epoch), trained once for the tests that compare
    a saved, stopped or killed run with it; they only read it."""
    from ghostmixnet.config import make_config

    cfg = make_config("paper", width=0.125, epochs=2, batch_size=16, val_size=50, num_workers=0, compile=False)
    out = tmp_path_factory.mktemp("straight16") / "run"
    train(cfg, cifar_dir, out, echo=quiet)
    return cfg, out


def test_the_shared_straight_run_has_the_config_of_tiny_config(straight16, tiny_config):
    # The tests below compare their runs of tiny_config(batch_size=16, num_workers=0) with the shared one.
    assert straight16[0] == tiny_config(batch_size=16, num_workers=0)


def _same_weights(a_dir, b_dir):
    a, b = load_checkpoint(a_dir / "last.pt"), load_checkpoint(b_dir / "last.pt")
    assert a["epoch"] == b["epoch"] and a["step"] == b["step"] == 0
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for k, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg_sq"], b["optimizer"]["state"][k]["exp_avg_sq"])
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]


def test_step_checkpoints_keep_the_previous_one(cifar_dir, tmp_path, straight16):
    # 150 training images at batch 16: 10 steps per epoch, step checkpoints after steps 3, 6 and 9.
    cfg, straight = straight16
    run = tmp_path / "run"
    train(cfg, cifar_dir, run, checkpoint_every=3, echo=quiet)
    _same_weights(straight, run)  # saving along the way changes nothing
    previous = load_checkpoint(run / "last.prev.pt")
    assert (previous["epoch"], previous["step"]) == (1, 9)  # epoch 2's step-9 save, kept beside the final one


TRAIN_SCRIPT = """
import sys, time
from pathlib import Path
import ghostmixnet.train.step as engine
from ghostmixnet.config import make_config
from ghostmixnet.train.run import train

real = engine.forward_backward
def slow(*args, **kwargs):  # slow steps, so that the parent can signal in the middle of an epoch
    time.sleep(0.15)
    return real(*args, **kwargs)
import ghostmixnet.train.loop
ghostmixnet.train.loop.forward_backward = slow
cfg = make_config("paper", width=0.125, epochs=2, batch_size=16, val_size=50, num_workers=0, compile=False)
summary = train(cfg, Path(sys.argv[1]), Path(sys.argv[2]), checkpoint_every=2, resume=sys.argv[3] == "resume",
                echo=lambda line: print(line, flush=True))
sys.exit(128 + summary["signal"] if summary.get("signal") else 0)
"""


def _start(cifar_dir, run, mode="new"):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, str(cifar_dir), str(run), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_step(proc, text):
    for line in proc.stdout:
        if text in line:
            return
    raise AssertionError(f"the run ended before {text!r}")


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_killed_mid_epoch_then_resumed_equals_uninterrupted(cifar_dir, tmp_path, straight16, how):
    import signal

    run = tmp_path / "cut"
    proc = _start(cifar_dir, run)
    _wait_for_step(proc, "epoch 1/2 lr")  # epoch 1 done; epoch 2 is under way
    time.sleep(1.2)  # a few steps into epoch 2, past at least one step checkpoint
    proc.send_signal(getattr(signal, how))
    out = proc.communicate(timeout=120)[0]
    if how == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
        saved = load_checkpoint(run / "last.pt")
        assert saved["epoch"] == 1 and saved["step"] in (0, 2, 4, 6, 8)
    else:
        assert proc.returncode == 128 + signal.SIGTERM, out
        assert "SIGTERM received: saved step" in out
        saved = load_checkpoint(run / "last.pt")
        assert saved["epoch"] == 1 and 0 < saved["step"] < 10  # saved on the way out, mid-epoch
    resumed = _start(cifar_dir, run, "resume")
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    _same_weights(straight16[1], run)


def test_truncated_checkpoint_falls_back_to_the_previous(cifar_dir, tmp_path, straight16):
    cfg, straight = straight16
    run = tmp_path / "run"
    train(cfg, cifar_dir, run, stop_after=1, echo=quiet)
    # One epoch means one save, so no previous copy yet: make it, then damage the newest.
    data = (run / "last.pt").read_bytes()
    (run / "last.prev.pt").write_bytes(data)
    (run / "last.pt").write_bytes(data[: len(data) // 2])  # a kill during a copy, a full disk, ...
    lines = []
    train(cfg, cifar_dir, run, resume=True, echo=lines.append)
    assert any("truncated" in line and "resuming from the previous checkpoint" in line for line in lines)
    _same_weights(straight, run)


def test_fast_recipe_runs_and_resumes_exactly(cifar_dir, tmp_path, tiny_config):
    # The fast recipe's parts (one-cycle per step, weight average, fused BatchNorm, mirror TTA, sparse
    # validation) all carry across a resume; compile is left out only to keep the test short.
    cfg = tiny_config(recipe="fast", epochs=3, batch_size=32, val_every=2, compile=False, fused_bn=True)
    summary = train(cfg, cifar_dir, tmp_path / "straight", echo=quiet)
    train(cfg, cifar_dir, tmp_path / "resumed", stop_after=1, echo=quiet)
    train(cfg, cifar_dir, tmp_path / "resumed", resume=True, echo=quiet)
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "last.pt")
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    for key, tensor in a["ema"].items():
        assert torch.equal(tensor, b["ema"][key]), key
    assert a["scheduler"] == b["scheduler"] and a["scheduler"]["last_epoch"] == 3 * 5  # 150 images / 32
    rows = (tmp_path / "straight" / "metrics.csv").read_text().splitlines()
    assert rows[0] == "epoch,val_split,lr,train_loss,val_loss,val_acc,weights,images_per_s,seconds,steps"
    assert rows[1].split(",")[4:7] == ["", "", ""]  # epoch 1 was not validated
    assert rows[2].split(",")[6] in ("trained", "average") and rows[3].split(",")[6] in ("trained", "average")
    best = load_checkpoint(tmp_path / "straight" / "best.pt")
    assert best["weights"] in ("trained", "average") and best["epoch"] in (2, 3)
    test = json.loads((tmp_path / "straight" / "test.json").read_text())
    assert test["tta"] is True and summary["test_acc"] == test["accuracy"]


def test_the_trainer_refuses_to_resume_under_another_recipe_whoever_calls(cifar_dir, tmp_path, tiny_config):
    cfg = tiny_config()
    train(cfg, cifar_dir, tmp_path / "run", stop_after=1, echo=quiet)
    with pytest.raises(RunError, match=r"keeps the recipe it started with.*lr \(was 0.001\)"):
        train(dataclasses.replace(cfg, lr=0.5), cifar_dir, tmp_path / "run", resume=True, echo=quiet)
    summary = train(dataclasses.replace(cfg, epochs=3), cifar_dir, tmp_path / "run", resume=True, echo=quiet)
    assert summary["epochs_done"] == 3  # what a resumed run may change, it may


def test_a_resumed_run_may_change_any_compute_setting(cifar_dir, tmp_path, tiny_config):
    # fp32 -> fp16 (a gradient scaler appears) -> bf16 with channels-last: the run goes on and records what it uses.
    cfg = tiny_config(precision="fp32", epochs=3)
    train(cfg, cifar_dir, tmp_path / "run", stop_after=1, echo=quiet)
    changed = dataclasses.replace(cfg, precision="fp16", channels_last=True, augment_chunk=2)
    assert train(changed, cifar_dir, tmp_path / "run", resume=True, stop_after=1, echo=quiet)["epochs_done"] == 2
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == "fp16"
    summary = train(dataclasses.replace(cfg, precision="bf16"), cifar_dir, tmp_path / "run", resume=True, echo=quiet)
    assert summary["epochs_done"] == 3 and "test_acc" in summary


def test_resume_config_keeps_the_recipe_and_takes_the_compute_settings(cifar_dir, tmp_path, tiny_config):
    from ghostmixnet.config import COMPUTE_FIELDS
    from ghostmixnet.train.resume import resume_config

    cfg = tiny_config(epochs=2)
    train(cfg, cifar_dir, tmp_path / "run", stop_after=1, echo=quiet)
    resumed, data_dir = resume_config(tmp_path / "run", {"precision": "bf16", "compile": True, "epochs": 5})
    assert resumed.recipe_config() == dataclasses.replace(cfg.recipe_config(), epochs=5)
    assert (resumed.precision, resumed.compile) == ("bf16", True) and data_dir == Path(cifar_dir).resolve()
    assert set(COMPUTE_FIELDS) >= {"precision", "compile", "channels_last", "augment_backend", "num_workers"}
    with pytest.raises(RunError, match=r"keeps the recipe it started with.*mix_prob \(was 1.0\)"):
        resume_config(tmp_path / "run", {"mix_prob": 0.5, "precision": "fp32"})


def test_a_resolution_schedule_trains_its_sizes_and_resumes_bit_exactly_mid_schedule(cifar_dir, tmp_path,
                                                                                       tiny_config, monkeypatch):
    # 150 training images at batch 16: 10 steps an epoch, 20 in all; 16 pixels for steps 0-5, 24 for 6-11, 32 after.
    import contextlib
    import signal

    import ghostmixnet.train.loop as loop
    import ghostmixnet.train.parts as parts
    import ghostmixnet.train.run as run_module

    cfg = tiny_config(recipe="fast", batch_size=16, resolutions="16:0.3,24:0.6", val_every=1)
    sizes, real_resize = [], parts.resize_batch
    monkeypatch.setattr(parts, "resize_batch", lambda images, size: sizes.append(size) or real_resize(images, size))
    train(cfg, cifar_dir, tmp_path / "straight", echo=quiet)
    assert sizes == [16] * 6 + [24] * 6 + [32] * 8
    # The second run is stopped after step 13 (step 3 of epoch 2, in the 32-pixel stage's first steps) as SIGTERM
    # would stop it, then resumed.
    steps, real_step = [0], loop.forward_backward

    def counting(*args, **kwargs):
        steps[0] += 1
        return real_step(*args, **kwargs)

    class StopAfter13(dict):
        def __getitem__(self, key):
            return int(signal.SIGTERM) if steps[0] >= 13 else 0

    monkeypatch.setattr(loop, "forward_backward", counting)
    monkeypatch.setattr(run_module, "stop_requests", lambda: contextlib.nullcontext(StopAfter13()))
    stopped = train(cfg, cifar_dir, tmp_path / "resumed", echo=quiet)
    assert stopped["signal"] == signal.SIGTERM and stopped["step"] == 3
    monkeypatch.undo()
    sizes.clear()
    monkeypatch.setattr(parts, "resize_batch", lambda images, size: sizes.append(size) or real_resize(images, size))
    train(cfg, cifar_dir, tmp_path / "resumed", resume=True, echo=quiet)
    assert sizes == [32] * 7
    _same_weights(tmp_path / "straight", tmp_path / "resumed")


def test_an_edited_config_json_is_reported_kept_aside_and_not_used(cifar_dir, tmp_path, tiny_config):
    from ghostmixnet.train.resume import resume_config

    cfg = tiny_config(epochs=2)
    train(cfg, cifar_dir, tmp_path / "run", stop_after=1, echo=quiet)
    config_json = tmp_path / "run" / "config.json"
    lines = []
    resume_config(tmp_path / "run", {}, log=lines.append)
    assert lines == []  # the file as the run wrote it: nothing to say
    edited = json.loads(config_json.read_text()) | {"lr": 0.5, "label_smoothing": 0.3}
    config_json.write_text(json.dumps(edited))
    resumed, _ = resume_config(tmp_path / "run", {}, log=lines.append)
    assert resumed.lr == cfg.lr and resumed.label_smoothing == cfg.label_smoothing  # the run's own settings
    assert len(lines) == 1 and "was edited since the run wrote it" in lines[0]
    assert f"label_smoothing (0.3 there, {cfg.label_smoothing!r} in the run), lr (0.5 there, {cfg.lr!r} in the run)" \
        in lines[0]
    assert json.loads((tmp_path / "run" / "config.edited.json").read_text()) == edited  # not lost
    config_json.write_text("{not json")
    lines.clear()
    resume_config(tmp_path / "run", {}, log=lines.append)
    assert "is no longer a JSON object of settings" in lines[0]
    assert (tmp_path / "run" / "config.edited.json").read_text() == "{not json"
