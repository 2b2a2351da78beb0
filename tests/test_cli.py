import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ghostmixnet.cli import main

TINY = ["--width", "0.125", "--batch-size", "32", "--val-size", "50", "--num-workers", "0", "--no-compile"]


@pytest.fixture(scope="module")
def run_dir(cifar_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--model", "ghostmixnet", "--recipe", "paper", "--epochs", "1", "--data-dir",
                 str(cifar_dir), "--out", str(out), *TINY]) == 0
    return out


@pytest.mark.parametrize("name, params", [("ghostmixnet", "3,041,466"), ("resnet", "4,630,858"),
                                          ("resnet-se", "4,907,498")])
def test_info(capsys, name, params):
    assert main(["info", name]) == 0
    out = capsys.readouterr().out
    assert f"parameters: {params}" in out
    assert "stage3 (" in out and "head" in out
    if name == "ghostmixnet":
        assert "0.444 GMAC" in out


def test_train_writes_a_run_and_flags_override_the_recipe(run_dir):
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["width"] == 0.125 and cfg["epochs"] == 1 and cfg["recipe"] == "paper" and cfg["mix_prob"] == 1.0
    assert (run_dir / "test.json").is_file()


def test_a_finished_run_calibrates_best_pt_on_its_validation_split(run_dir):
    best = torch.load(run_dir / "best.pt", weights_only=True)
    recorded = json.loads((run_dir / "test.json").read_text())["calibration"]
    assert best["calibration"] == recorded and recorded["images"] == 50
    assert "validation split (50 training images" in recorded["fitted_on"] and recorded["keep"] == 0.95
    assert "calibrated best.pt on the validation split: temperature" in (run_dir / "train.log").read_text()


def test_eval_test_and_val(run_dir, cifar_dir, capsys):
    assert main(["eval", str(run_dir / "best.pt"), "--data-dir", str(cifar_dir)]) == 0
    out = capsys.readouterr().out
    assert "on the test" in out and "per-class accuracy" in out and "true \\ pred" in out
    assert "expected calibration error" in out and "at its temperature" in out
    result = json.loads((run_dir / "eval-best-test.json").read_text())
    assert 0 <= result["calibration"]["ece"] <= 1 and 0 <= result["calibration"]["not_sure"] <= 1
    assert result["images"] == 100 and (run_dir / "eval-best-test-confusion.png").is_file()
    assert result["accuracy"] == json.loads((run_dir / "test.json").read_text())["accuracy"]
    assert main(["eval", str(run_dir / "best.pt"), "--data-dir", str(cifar_dir), "--split", "val"]) == 0
    assert json.loads((run_dir / "eval-best-val.json").read_text())["images"] == 50


def test_predict_images_of_any_size_and_mode(run_dir, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(folder / "a.png")
    Image.new("L", (64, 48), 128).save(folder / "b.jpg")
    Image.new("RGBA", (100, 100), (0, 0, 255, 128)).save(folder / "c.png")
    (folder / "notes.txt").write_text("ignored: not an image extension")
    out_csv = tmp_path / "pred.csv"
    assert main(["predict", str(run_dir / "best.pt"), str(folder), "--out", str(out_csv)]) == 0
    out = capsys.readouterr().out
    assert "64x48 L" in out and "100x100 RGBA" in out
    rows = out_csv.read_text().splitlines()
    assert rows[0] == "file,label,probability,score,sure" and len(rows) == 4
    assert all(row.split(",")[4] in ("yes", "no") for row in rows[1:])  # the run calibrated its best.pt


def test_predict_course_pickle(run_dir, tmp_path, capsys):
    images = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    (tmp_path / "cifar_test_nolabel.pkl").write_bytes(pickle.dumps({b"data": images, b"ids": np.arange(7)}))
    out = tmp_path / "submission.csv"
    assert main(["predict", str(run_dir / "best.pt"), str(tmp_path / "cifar_test_nolabel.pkl"),
                 "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "ID,Labels" and len(lines) == 8
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(7))
    assert all(0 <= int(line.split(",")[1]) <= 9 for line in lines[1:])


def test_resume_keeps_the_recipe(run_dir, capsys):
    assert main(["train", "--resume", str(run_dir), "--lr", "0.1"]) == 1
    err = capsys.readouterr().err
    assert "keeps the recipe" in err and "lr (was 0.001)" in err
    assert main(["train", "--resume", str(run_dir)]) == 0  # already complete: evaluates, trains nothing


def test_resume_may_change_the_compute_settings(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--stop-after", "1", "--data-dir", str(cifar_dir), "--out", str(out),
                 *TINY]) == 0
    assert main(["train", "--resume", str(out), "--precision", "fp32", "--augment-backend", "torchvision",
                 "--num-workers", "0"]) == 0
    assert "epoch 2/2" in capsys.readouterr().out
    saved = json.loads((out / "config.json").read_text())
    assert (saved["precision"], saved["augment_backend"], saved["epochs"]) == ("fp32", "torchvision", 2)


def expect_error(capsys, argv, message):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    return err


def test_clear_errors(run_dir, cifar_dir, tmp_path, capsys, exploit_pickle):
    expect_error(capsys, ["train", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "r"), *TINY],
                 "CIFAR-10 not found")
    assert not (tmp_path / "r").exists()  # no empty run folder left behind
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    expect_error(capsys, ["predict", str(run_dir / "best.pt"), str(tmp_path / "broken.png")], "cannot read image")
    evil, target = exploit_pickle
    expect_error(capsys, ["predict", str(run_dir / "best.pt"), str(evil)], "not a safe data pickle")
    assert not target.exists()
    expect_error(capsys, ["eval", str(tmp_path / "missing.pt"), "--data-dir", str(cifar_dir)], "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_error(capsys, ["predict", str(run_dir / "best.pt"), str(empty)], "holds no images")


@pytest.mark.parametrize("argv, message", [
    (["train", "--epochs", "0"], "argument --epochs: must be positive, got 0"),
    (["train", "--batch-size", "-1"], "argument --batch-size: must be positive, got -1"),
    (["train", "--recipe", "fast", "--tta-shift", "9"], "argument --tta-shift: must be in [0, 8] pixels, got 9"),
    (["seeds", "--mix-prob", "2"], "argument --mix-prob: must be in [0, 1], got 2.0"),
    (["ablation", "--val-size", "-5"], "argument --val-size: must not be negative, got -5"),
])
def test_config_flags_are_refused_as_they_are_parsed_naming_the_flag(argv, message, cifar_dir, tmp_path, capsys):
    assert main([*argv, "--data-dir", str(cifar_dir), "--out", str(tmp_path / "z")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "z").exists()


def test_checkpoint_of_another_model_is_refused(run_dir, tmp_path, capsys):
    import torch

    ckpt = torch.load(run_dir / "best.pt", weights_only=True)
    ckpt["config"]["model"] = "resnet"
    torch.save(ckpt, tmp_path / "wrong.pt")
    expect_error(capsys, ["predict", str(tmp_path / "wrong.pt"), str(tmp_path)], "different model")


def test_console_script_exit_status_and_debug(tmp_path):
    cmd = [sys.executable, "-m", "ghostmixnet", "eval", str(tmp_path / "missing.pt")]
    plain = subprocess.run(cmd, capture_output=True, text=True)
    assert plain.returncode == 1 and plain.stderr.startswith("error:") and "Traceback" not in plain.stderr
    debug = subprocess.run(cmd + ["--debug"], capture_output=True, text=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_ablation_table(cifar_dir, tmp_path, capsys):
    out = tmp_path / "abl"
    assert main(["ablation", "--data-dir", str(cifar_dir), "--out", str(out), "--epochs", "1", "--width", "0.125",
                 "--batch-size", "64", "--val-size", "50", "--num-workers", "0", "--no-compile"]) == 0
    table = (out / "ablation.md").read_text()
    for label in ("| ResNet |", "| ResNet + SE + image transforms |", "| GhostNet + SE + image transforms |",
                  "| GhostNet + SE + image transforms + CutMix/Mixup |"):
        assert label in table
    assert "95.5%" in table and "1 epochs" in table
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "ghostmixnet-nomix", "ghostmixnet-paper", "resnet-basic", "resnet-se-nomix"]
    recipes = {p.name: json.loads((p / "config.json").read_text()) for p in out.iterdir() if p.is_dir()}
    assert recipes["resnet-basic"]["augment"] == "basic" and recipes["resnet-basic"]["mix_prob"] == 0
    assert recipes["ghostmixnet-paper"]["mix_prob"] == 1.0


def test_train_time_budget_sizes_the_epochs_from_a_timed_step(cifar_dir, tmp_path, capsys):
    import re

    out = tmp_path / "budget"
    assert main(["train", "--recipe", "fast", "--time-budget", "0.25", "--data-dir", str(cifar_dir), "--out",
                 str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    planned = re.search(r"time budget: .* -> \d+ epochs of 150 images fit 0.25 training-minutes \(([\d,]+) steps, "
                        r"re-planned as the run goes\)", printed)
    assert planned, printed
    steps_per_epoch = -(-150 // 32)  # TINY: batch 32
    first_plan = int(planned.group(1).replace(",", ""))
    assert json.loads((out / "config.json").read_text())["epochs"] == -(-first_plan // steps_per_epoch)
    ended = re.search(r"time budget: (\d+) steps \([\d.]+ epochs\) in (\d+) of 15 s of training", printed)
    assert ended and int(ended.group(2)) <= 15, printed
    for extra, message in ((["--epochs", "3"], "not both"), (["--time-budget", "-1"], "positive")):
        argv = ["train", "--recipe", "fast", "--time-budget", "0.5", "--data-dir", str(cifar_dir), "--out",
                str(tmp_path / "refused"), *TINY, *extra]
        assert main(argv) != 0
        assert message in capsys.readouterr().err
