"""The fine-tuning benchmark writes scikit-learn's digits as a class folder and trains both runs from it."""

import json

import pytest
from conftest import load_benchmark

pytest.importorskip("sklearn", reason="the digits come with scikit-learn (pip install scikit-learn)")


def test_digits_become_a_class_folder_and_both_runs_are_scored(tmp_path, capsys):
    bench = load_benchmark("finetune_vs_scratch")
    result = bench.main(["--out", str(tmp_path / "out"), "--epochs", "1", "--limit", "60", "--holdout", "0.2",
                         "--batch-size", "32", "--no-compile"])
    folders = sorted(p.name for p in (tmp_path / "out" / "digits").iterdir() if p.is_dir())
    assert folders == [str(d) for d in range(10)] and result["images"] == 60
    for name in ("finetune", "scratch"):
        assert 0.0 <= result["runs"][0][name] <= 1.0
        saved = json.loads((tmp_path / "out" / f"{name}-seed0" / "config.json").read_text())
        assert saved["classes"] == folders and saved["augment"] == "none" and saved["tta"] is False
        assert saved["init"] == ("pretrained" if name == "finetune" else None)
    log = (tmp_path / "out" / "finetune-seed0" / "train.log").read_text()
    assert "fine-tuning: every layer but the classifier" in log
    assert "finetune  mean" in capsys.readouterr().out
