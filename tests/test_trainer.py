import json

import pytest
import torch

from ghostmixnet.checkpoint import load_checkpoint
from ghostmixnet.trainer import RunError, train


def quiet(_line):
    pass


def test_run_folder_contents(cifar_dir, tmp_path, tiny_config):
    summary = train(tiny_config(), cifar_dir, tmp_path / "run", echo=quiet)
    run = tmp_path / "run"
    for name in ("config.json", "run.json", "metrics.csv", "last.pt", "best.pt", "loss.png", "accuracy.png",
                 "test.json", "train.log"):
        assert (run / name).is_file(), name
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0] == "epoch,val_split,lr,train_loss,val_loss,val_acc,images_per_s,seconds" and len(rows) == 3
    test = json.loads((run / "test.json").read_text())
    assert test["images"] == 100 and 0 <= test["accuracy"] <= 1 and len(test["confusion"]) == 10
    assert test["selected_on"].startswith("validation split (50")
    assert summary["test_acc"] == test["accuracy"]
    best = load_checkpoint(run / "best.pt")
    assert best["config"] == json.loads((run / "config.json").read_text())
    assert "optimizer" not in best and "optimizer" in load_checkpoint(run / "last.pt")


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_equals_an_uninterrupted_run(cifar_dir, tmp_path, tiny_config, workers):
    cfg = tiny_config(num_workers=workers)
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
