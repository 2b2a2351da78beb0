import dataclasses
import json

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
    assert rows[0] == "epoch,val_split,lr,train_loss,val_loss,val_acc,weights,images_per_s,seconds,steps"
    assert len(rows) == 3
    test = json.loads((run / "test.json").read_text())
    assert test["images"] == 100 and 0 <= test["accuracy"] <= 1 and len(test["confusion"]) == 10
    assert test["selected_on"] == "50 validation images (held out of the training set)"
    assert summary["test_acc"] == test["accuracy"]
    best = load_checkpoint(run / "best.pt")
    assert best["config"] == json.loads((run / "config.json").read_text())
    assert "optimizer" not in best and "optimizer" in load_checkpoint(run / "last.pt")


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


def test_a_run_that_cannot_fit_in_memory_is_refused_with_both_figures(cifar_dir, tmp_path, tiny_config, monkeypatch):
    import ghostmixnet.train.memory as memory
    from ghostmixnet.config import make_config

    one, two = (memory.estimate_bytes(make_config("paper", width=w), 128, 45000) for w in (1.0, 2.0))
    assert 1.5 * one < two < 4 * one  # activations grow with the width, weights with its square
    monkeypatch.setattr(memory, "available_bytes", lambda device: 10**6)
    with pytest.raises(RunError, match=r"this run needs about 0\.\d GB on cpu \(ghostmixnet at width 0.125, batch 32 "
                                       r"per process\) but 0\.0 GB is available; lower --width or --batch-size"):
        train(tiny_config(), cifar_dir, tmp_path / "run", echo=quiet)
    assert not (tmp_path / "run").exists()


def test_a_run_tells_its_length_after_its_first_timed_steps(cifar_dir, tmp_path, tiny_config):
    import re

    from ghostmixnet.train.context import FORECAST_STEPS, LONG_RUN_SECONDS, SHORTER_RUN, duration

    # 150 training images at batch 8: 19 steps in the one epoch; the forecast comes after the first 3 + 10.
    lines = []
    train(tiny_config(batch_size=8, epochs=1), cifar_dir, tmp_path / "run", echo=lines.append)
    said = [line for line in lines if line.startswith("pace: ")]
    assert len(said) == 1, lines
    untimed, timed = FORECAST_STEPS
    found = re.match(r"pace: ([\d.]+) s a step \(([\d.]+) images/s\) on this machine; the (\d+) steps left take "
                     r"about (.+) of training \(validation excluded\)$", said[0])
    assert found, said[0]
    assert int(found.group(3)) == 19 - (untimed + timed + 1)
    assert float(found.group(2)) == pytest.approx(8 / float(found.group(1)), rel=0.05)
    assert said[0] in (tmp_path / "run" / "train.log").read_text()
    # Epochs shorter than the timed steps say nothing; long runs name the shorter command.
    lines.clear()
    train(tiny_config(epochs=1), cifar_dir, tmp_path / "short", echo=lines.append)
    assert not any(line.startswith("pace: ") for line in lines)
    assert (duration(40), duration(720), duration(3.5 * 3600)) == ("40 s", "12 minutes", "3.5 hours")
    # The paper recipe at this CPU's 39 images/s: some 50 hours for its 70,400 steps, and the shorter command.
    from types import SimpleNamespace

    from ghostmixnet.train.context import pace_line

    def run_of(recipe):
        return SimpleNamespace(t=SimpleNamespace(planned_steps=lambda: 70_400), done_steps=lambda: 0,
                               state=SimpleNamespace(step=0), cfg=SimpleNamespace(batch_size=128, recipe=recipe))
    line = pace_line(run_of("paper"), 13, 128 / 39)
    assert "(39.0 images/s)" in line and "the 70,387 steps left take about 64.2 hours" in line, line
    assert line.endswith(f"; for a shorter run, {SHORTER_RUN[0]} reached {SHORTER_RUN[1]}")
    assert 64.2 * 3600 > LONG_RUN_SECONDS and "shorter" not in pace_line(run_of("fast"), 13, 128 / 39)


def test_the_curves_are_drawn_at_most_once_a_minute_and_as_the_run_ends(cifar_dir, tmp_path, tiny_config,
                                                                          monkeypatch):
    import ghostmixnet.train.context as context

    drawn, real = [], context.plot_curves
    monkeypatch.setattr(context, "plot_curves", lambda rows, *a: drawn.append(len(rows)) or real(rows, *a))
    train(tiny_config(epochs=3), cifar_dir, tmp_path / "run", stop_after=2, echo=quiet)
    assert drawn == [2]  # two short epochs: drawn once, as the run stopped
    assert (tmp_path / "run" / "loss.png").is_file() and (tmp_path / "run" / "accuracy.png").is_file()
    drawn.clear()
    monkeypatch.setattr(context, "PLOT_EVERY_SECONDS", 0.0)
    train(tiny_config(epochs=3), cifar_dir, tmp_path / "run", resume=True, echo=quiet)
    assert drawn == [3]  # the resumed epoch, drawn once though the run then ends
    drawn.clear()
    train(tiny_config(epochs=2), cifar_dir, tmp_path / "every", echo=quiet)
    assert drawn == [1, 2]  # with no minimum interval, after every epoch
