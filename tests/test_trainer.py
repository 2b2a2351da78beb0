import dataclasses
import json
import time

import pytest
import torch

from ghostmixnet.errors import RunError
from ghostmixnet.model.checkpoint import load_checkpoint
from ghostmixnet.train.run import train


def quiet(_line):
    pass


def test_run_folder_contents(cifar_dir, tmp_path, tiny_config):
    summary = train(tiny_config(), cifar_dir, tmp_path / "run", echo=quiet)
    run = tmp_path / "run"
    for name in ("config.json", "run.json", "metrics.csv", "last.pt", "best.pt", "loss.png", "accuracy.png",
                 "test.json", "train.log"):
        assert (run / name).is_file(), name
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0] == "epoch,val_split,lr,train_loss,val_loss,val_acc,weights,images_per_s,seconds"
    assert len(rows) == 3
    test = json.loads((run / "test.json").read_text())
    assert test["images"] == 100 and 0 <= test["accuracy"] <= 1 and len(test["confusion"]) == 10
    assert test["selected_on"].startswith("validation split (50")
    assert summary["test_acc"] == test["accuracy"]
    best = load_checkpoint(run / "best.pt")
    assert best["config"] == json.loads((run / "config.json").read_text())
    assert "optimizer" not in best and "optimizer" in load_checkpoint(run / "last.pt")


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


def test_selection_on_test_set_is_said(cifar_dir, tmp_path, tiny_config):
    lines = []
    train(tiny_config(val_size=0, epochs=1), cifar_dir, tmp_path / "run", echo=lines.append)
    assert any("selecting checkpoints on the TEST set" in line for line in lines)
    assert any(line.startswith("epoch 1/1 lr") and "test-as-val_acc" in line for line in lines)
    test = json.loads((tmp_path / "run" / "test.json").read_text())
    assert test["selected_on"].startswith("test set")
    assert (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1].startswith("1,test,")
    assert any("optimistic" in line for line in lines)


def test_refuses_to_overwrite_or_resume_nothing(cifar_dir, tmp_path, tiny_config):
    train(tiny_config(epochs=1), cifar_dir, tmp_path / "run", echo=quiet)
    with pytest.raises(RunError, match="already holds a run.*--resume"):
        train(tiny_config(epochs=1), cifar_dir, tmp_path / "run", echo=quiet)
    with pytest.raises(RunError, match="cannot resume"):
        train(tiny_config(), cifar_dir, tmp_path / "empty", resume=True, echo=quiet)


def test_short_run_on_real_cifar10(real_data_dir, tmp_path, tiny_config):
    summary = train(tiny_config(epochs=1, train_subset=256, val_size=200, batch_size=64), real_data_dir,
                    tmp_path / "real", echo=quiet)
    test = json.loads((tmp_path / "real" / "test.json").read_text())
    assert test["images"] == 10_000 and summary["best_val_acc"] >= 0
    assert json.loads((tmp_path / "real" / "run.json").read_text())["train_images"] == 256


def _same_weights(a_dir, b_dir):
    a, b = load_checkpoint(a_dir / "last.pt"), load_checkpoint(b_dir / "last.pt")
    assert a["epoch"] == b["epoch"] and a["step"] == b["step"] == 0
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for k, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg_sq"], b["optimizer"]["state"][k]["exp_avg_sq"])
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]


def test_step_checkpoints_keep_the_previous_one(cifar_dir, tmp_path, tiny_config):
    # 150 training images at batch 16: 10 steps per epoch, step checkpoints after steps 3, 6 and 9.
    cfg = tiny_config(batch_size=16, num_workers=0)
    train(cfg, cifar_dir, tmp_path / "straight", echo=quiet)
    run = tmp_path / "run"
    train(cfg, cifar_dir, run, checkpoint_every=3, echo=quiet)
    _same_weights(tmp_path / "straight", run)  # saving along the way changes nothing
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
def test_killed_mid_epoch_then_resumed_equals_uninterrupted(cifar_dir, tmp_path, tiny_config, how):
    import signal

    cfg = tiny_config(batch_size=16, num_workers=0)
    train(cfg, cifar_dir, tmp_path / "straight", echo=quiet)
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
    _same_weights(tmp_path / "straight", run)


def test_truncated_checkpoint_falls_back_to_the_previous(cifar_dir, tmp_path, tiny_config):
    cfg = tiny_config(batch_size=16, num_workers=0)
    train(cfg, cifar_dir, tmp_path / "straight", echo=quiet)
    run = tmp_path / "run"
    train(cfg, cifar_dir, run, stop_after=1, echo=quiet)
    # One epoch means one save, so no previous copy yet: make it, then damage the newest.
    data = (run / "last.pt").read_bytes()
    (run / "last.prev.pt").write_bytes(data)
    (run / "last.pt").write_bytes(data[: len(data) // 2])  # a kill during a copy, a full disk, ...
    lines = []
    train(cfg, cifar_dir, run, resume=True, echo=lines.append)
    assert any("truncated" in line and "resuming from the previous checkpoint" in line for line in lines)
    _same_weights(tmp_path / "straight", run)


def test_corrupt_bytes_are_detected(tmp_path, tiny_config):
    from ghostmixnet.errors import CheckpointError
    from ghostmixnet.model.checkpoint import save_atomic

    save_atomic({"model": {"w": torch.randn(256, 256)}, "config": tiny_config().to_dict()}, tmp_path / "a.pt")
    data = bytearray((tmp_path / "a.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF  # torch.load alone would read this without complaint
    (tmp_path / "a.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt|truncated"):
        load_checkpoint(tmp_path / "a.pt")


def test_non_finite_loss_stops_without_saving(cifar_dir, tmp_path, tiny_config, monkeypatch):
    import ghostmixnet.train.loop as training
    from ghostmixnet.errors import NonFiniteLossError

    cfg = tiny_config(batch_size=16, num_workers=0)
    run = tmp_path / "run"
    train(cfg, cifar_dir, run, stop_after=1, echo=quiet)
    good = (run / "last.pt").read_bytes()
    real, calls = training.forward_backward, []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) == 4 else loss

    monkeypatch.setattr(training, "forward_backward", poisoned)
    with pytest.raises(NonFiniteLossError, match="epoch 2 step 4"):
        train(cfg, cifar_dir, run, resume=True, checkpoint_every=2, echo=quiet)
    saved = load_checkpoint(run / "last.pt")
    assert saved["epoch"] == 1 and saved["step"] == 2  # the step-2 save happened, nothing after the NaN
    assert all(torch.isfinite(t).all() for t in saved["model"].values() if t.is_floating_point())
    assert good != (run / "last.pt").read_bytes()


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
    assert rows[0] == "epoch,val_split,lr,train_loss,val_loss,val_acc,weights,images_per_s,seconds"
    assert rows[1].split(",")[4:7] == ["", "", ""]  # epoch 1 was not validated
    assert rows[2].split(",")[6] in ("trained", "average") and rows[3].split(",")[6] in ("trained", "average")
    best = load_checkpoint(tmp_path / "straight" / "best.pt")
    assert best["weights"] in ("trained", "average") and best["epoch"] in (2, 3)
    test = json.loads((tmp_path / "straight" / "test.json").read_text())
    assert test["tta"] is True and summary["test_acc"] == test["accuracy"]


def test_time_limit_stops_and_scores_the_best_so_far(cifar_dir, tmp_path, tiny_config):
    cfg = tiny_config(epochs=3)
    first = train(cfg, cifar_dir, tmp_path / "run", time_limit=1e-9, echo=quiet)
    assert first["time_limit_hit"] and first["epochs_done"] == 0 and "test_acc" not in first
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 1  # saved, so it can be resumed
    train(cfg, cifar_dir, tmp_path / "run2", stop_after=1, echo=quiet)
    lines = []
    second = train(cfg, cifar_dir, tmp_path / "run2", resume=True, time_limit=1e-9, echo=lines.append)
    assert second["time_limit_hit"] and second["best_epoch"] == 1 and 0 <= second["test_acc"] <= 1
    assert any("time limit" in line for line in lines)


@pytest.mark.parametrize("augment", ["paper", "basic"])  # compiled colour operations fail first / the model
def test_a_failing_compile_says_how_to_train_without_it(cifar_dir, tmp_path, tiny_config, monkeypatch, augment):
    from torch._dynamo.exc import BackendCompilerFailed

    def fail(*args, **kwargs):
        raise BackendCompilerFailed(lambda: None, RuntimeError("no C++ compiler found"), None)

    class Uncompilable(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        forward = fail

    def fake_compile(target, **kwargs):  # compiling is lazy: failures come at the first call
        return Uncompilable(target) if isinstance(target, torch.nn.Module) else fail

    monkeypatch.setattr(torch, "compile", fake_compile)
    with pytest.raises(RunError, match="--no-compile"):
        train(tiny_config(compile=True, epochs=1, augment=augment), cifar_dir, tmp_path / "run", echo=quiet)


def test_augmenting_in_chunks_changes_nothing_a_run_learns(cifar_dir, tmp_path, tiny_config):
    alone = tiny_config(augment_backend="batched", augment="paper", augment_chunk=1, epochs=1)
    train(alone, cifar_dir, tmp_path / "alone", echo=quiet)
    chunked = dataclasses.replace(alone, augment_chunk=3)
    train(chunked, cifar_dir, tmp_path / "chunked", stop_after=None, checkpoint_every=2, echo=quiet)
    a = load_checkpoint(tmp_path / "alone" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "chunked" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_test_json_scores_in_fp32_as_eval_does(cifar_dir, tmp_path, tiny_config):
    from ghostmixnet.data.cifar import load_cifar10
    from ghostmixnet.infer.evaluate import evaluate
    from ghostmixnet.infer.load import model_from_checkpoint

    train(tiny_config(precision="bf16", epochs=1), cifar_dir, tmp_path / "run", echo=quiet)
    test = json.loads((tmp_path / "run" / "test.json").read_text())
    assert test["precision"] == "fp32"
    data = load_cifar10(cifar_dir, train=False)
    model, _, _ = model_from_checkpoint(tmp_path / "run" / "best.pt")
    result = evaluate(model, data.images, data.labels, torch.device("cpu"))  # fp32
    assert test["accuracy"] == result.accuracy and test["loss"] == pytest.approx(result.loss, rel=1e-6)


def test_the_trainer_refuses_to_resume_under_another_recipe_whoever_calls(cifar_dir, tmp_path, tiny_config):
    cfg = tiny_config()
    train(cfg, cifar_dir, tmp_path / "run", stop_after=1, echo=quiet)
    with pytest.raises(RunError, match=r"keeps the recipe it started with.*lr \(was 0.001\)"):
        train(dataclasses.replace(cfg, lr=0.5), cifar_dir, tmp_path / "run", resume=True, echo=quiet)
    summary = train(dataclasses.replace(cfg, epochs=3), cifar_dir, tmp_path / "run", resume=True, echo=quiet)
    assert summary["epochs_done"] == 3  # what a resumed run may change, it may
