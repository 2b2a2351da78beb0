"""The members' screen, end to end on the tiny data set: each candidate trained, ranked on validation, and read
back rather than retrained when its run is complete."""

import json

import pytest
from conftest import load_benchmark

from ghostmixnet.model.budgets import BUDGETS


@pytest.fixture(scope="module")
def screen():
    return load_benchmark("member_screen")


@pytest.fixture
def registry():
    """The screen registers its candidates for its process: the tests after this one see the table as it was."""
    from ghostmixnet.config import types
    from ghostmixnet.model.architectures import ARCHITECTURES

    before, choices = dict(ARCHITECTURES), types.CHOICES["model"]
    yield
    ARCHITECTURES.clear()
    ARCHITECTURES.update(before)
    types.CHOICES["model"] = choices


def test_candidates_are_screened_and_a_finished_one_is_not_trained_again(screen, registry, cifar_dir, tmp_path,
                                                                          monkeypatch):
    out = tmp_path / "screen"
    argv = ["--data-dir", str(cifar_dir), "--out", str(out), "--epochs", "1", "--val-size", "50", "--only",
            "ic01-c,ic01-s2"]
    screen.main(argv)
    rows = json.loads((out / "screen.json").read_text())
    assert [r["name"] for r in rows] == ["ic01-c", "ic01-s2"]
    for row in rows:
        assert row["parameters"] <= BUDGETS[row["budget"]].parameters and row["macs"] <= BUDGETS[row["budget"]].macs
        assert 0 <= row["best_val_acc"] <= 1 and 0 <= row["test_acc"] <= 1 and row["epochs"] == 1
    assert "| ic01-c | IC01 |" in (out / "screen.md").read_text()
    monkeypatch.setattr(screen, "train", lambda *a, **k: pytest.fail("a finished candidate was trained again"))
    screen.main(argv)
    again = json.loads((out / "screen.json").read_text())
    assert [r["best_val_acc"] for r in again] == [r["best_val_acc"] for r in rows]


def test_every_candidate_is_within_its_budget_counted(screen, registry):
    for name, (budget, _) in screen.CANDIDATES.items():
        screen.ARCHITECTURES[name] = screen.CANDIDATES[name][1]
        figures = screen.figures(name)
        assert figures["parameters"] <= BUDGETS[budget].parameters, name
        assert figures["macs"] <= BUDGETS[budget].macs, name
