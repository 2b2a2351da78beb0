"""The time-to-accuracy benchmark's budget table and its exit on a stopped seed, without training."""

import json

import pytest
from conftest import load_benchmark

from ghostmixnet.errors import RunError


@pytest.fixture(scope="module")
def tta():
    return load_benchmark("time_to_accuracy")


def write_budget(out, minutes, epochs, tests, calibration=None):
    folder = out / f"fast-{minutes}min"
    folder.mkdir(parents=True)
    summary = {"runs": [{"seed": s} for s in range(len(tests))], "val_mean": 0.9, "val_std": 0.0,
               "test_mean": sum(tests) / len(tests), "test_std": 0.0, "time_limit": 60 * minutes,
               "overrides": {"epochs": epochs}}
    (folder / "seeds.json").write_text(json.dumps(summary))
    if calibration is not None:
        (folder / "calibration.json").write_text(json.dumps({"minutes": minutes, "epochs": epochs,
                                                             "images_per_s": calibration}))


def test_budget_table_sorts_budgets_and_marks_runs_without_calibration(tta, tmp_path):
    write_budget(tmp_path, 150, 14, [0.9294])
    write_budget(tmp_path, 60, 8, [0.9148, 0.9112], calibration=115.64)
    (tmp_path / "fast-20min").mkdir()  # a budget whose seeds have not finished has no row
    rows = tta.budget_table(tmp_path).splitlines()[2:]
    assert len(rows) == 2
    assert rows[0].startswith("| 60 min | 8 | 115.6 | 2 | — | ") and "91.30 ± 0.00%" in rows[0]
    # A budget run with --epochs measured no rate: a dash, not "nan".
    assert rows[1].startswith("| 150 min | 14 | — | 1 | — | ") and "92.94 ± 0.00%" in rows[1]


def test_budget_table_gives_re_planned_runs_their_epochs_and_share_of_the_budget(tta, tmp_path):
    write_budget(tmp_path, 20, 3, [0.8, 0.82], calibration=30.0)
    summary = json.loads((tmp_path / "fast-20min" / "seeds.json").read_text())
    summary["runs"] = [{"seed": 0, "epochs_done": 3, "train_seconds": 1170.0},
                       {"seed": 1, "epochs_done": 3, "train_seconds": 1182.0}]
    (tmp_path / "fast-20min" / "seeds.json").write_text(json.dumps(summary))
    row = tta.budget_table(tmp_path).splitlines()[2]
    assert row.startswith("| 20 min | 3 | 30.0 | 2 | 19.6 min (98%) | ")


def test_a_stopped_seed_ends_with_its_message_not_a_traceback(tta, tmp_path, monkeypatch):
    def stopped(*args, **kwargs):
        raise RunError("runs/seed-0 was stopped by SIGINT after 1 epochs; run the same command again to resume it")

    monkeypatch.setattr(tta, "run_seeds", stopped)
    with pytest.raises(SystemExit) as exit_info:
        tta.main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "runs"), "--seeds", "0", "--paper-seeds", "",
                  "--epochs", "1"])
    assert str(exit_info.value.code).startswith("time_to_accuracy: runs/seed-0 was stopped by SIGINT")
