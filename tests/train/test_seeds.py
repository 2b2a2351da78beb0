import json
import statistics

import pytest

from ghostmixnet.cli import main
from ghostmixnet.train.seeds import mean_std

TINY = ["--width", "0.125", "--batch-size", "32", "--val-size", "50", "--num-workers", "0", "--epochs", "1",
        "--no-compile"]


def test_mean_std():
    assert mean_std([0.5]) == (0.5, 0.0)
    mean, std = mean_std([0.90, 0.92, 0.97])
    assert mean == pytest.approx(0.93) and std == pytest.approx(statistics.stdev([0.90, 0.92, 0.97]))


def test_seeds_command_trains_each_seed_and_summarizes(cifar_dir, tmp_path, capsys):
    out = tmp_path / "seeds"
    args = ["seeds", "--recipe", "basic", "--seeds", "0,1", "--data-dir", str(cifar_dir), "--out", str(out), *TINY]
    assert main(args) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "seeds.json").read_text())
    tests = [json.loads((out / f"seed-{s}" / "test.json").read_text())["accuracy"] for s in (0, 1)]
    assert [r["test_acc"] for r in result["runs"]] == tests
    assert result["test_mean"] == pytest.approx(statistics.fmean(tests))
    assert result["test_std"] == pytest.approx(statistics.stdev(tests))
    assert json.loads((out / "seed-1" / "config.json").read_text())["seed"] == 1
    assert printed.strip().splitlines()[-1].startswith("test accuracy: ") and "over 2 seed(s)" in printed
    # A second call reads the finished runs back instead of training them again.
    stamp = (out / "seed-0" / "last.pt").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "seed-0" / "last.pt").stat().st_mtime_ns == stamp


def test_seeds_command_rejects_bad_seeds(cifar_dir, tmp_path, capsys):
    assert main(["seeds", "--seeds", "zero", "--data-dir", str(cifar_dir), "--out", str(tmp_path)]) == 1
    assert "comma-separated integers" in capsys.readouterr().err


def test_a_run_stopped_by_a_signal_says_how_to_resume(cifar_dir, tmp_path, monkeypatch):
    import ghostmixnet.train.seeds as seeds
    from ghostmixnet.errors import RunError

    monkeypatch.setattr(seeds, "train", lambda *a, **k: {"epochs_done": 3, "signal": 2, "best_val_acc": 0.5})
    with pytest.raises(RunError, match="stopped by SIGINT after 3 epochs; run the same command again to resume"):
        seeds.run_seeds("basic", [0], cifar_dir, tmp_path / "seeds", {})
