"""The prepared reproduction command, end to end on the CPU with tiny data: the data in parts, a stop at the
budget, the exact continuation, and the record with the curve beside the authors'."""

import json
import shutil

import pytest
import torch
from conftest import load_benchmark

TINY = ["--device", "cpu", "--epochs", "3", "--width", "0.125", "--batch-size", "32", "--val-size", "50",
        "--no-compile", "--log-every", "1000", "--step", "default"]


@pytest.fixture(scope="module")
def reproduce():
    return load_benchmark("reproduce_paper")


@pytest.fixture(scope="module")
def parts_module():
    return load_benchmark("cifar_parts")


def test_the_candidate_steps_are_timed_and_the_fastest_agreeing_one_chosen(reproduce, tmp_path, capsys):
    cfg = reproduce.make_config("paper", width=0.125, batch_size=16, compile=False)
    timing = reproduce.time_candidates(cfg, ["loss-graph", "whole-graph"], torch.device("cpu"), 2, 1, 5.0)
    rows = {r["name"]: r for r in timing["candidates"]}
    assert list(rows) == ["default", "loss-graph", "whole-graph"]
    # Eager on the CPU the one-graph steps compute the default's numbers bit for bit: the same loss.
    assert rows["loss-graph"]["loss"] == rows["default"]["loss"] == rows["whole-graph"]["loss"]
    assert all(r["images_per_s"] > 0 and r["loss_agrees"] for r in rows.values())
    assert timing["chosen"] == max(rows.values(), key=lambda r: r["images_per_s"])["name"]
    fake = [{"name": "default", "images_per_s": 100.0, "loss": 2.0}, {"name": "shifts", "images_per_s": 300.0,
            "loss": 2.5}, {"name": "loss-graph", "images_per_s": 200.0, "loss": 2.05},
            {"name": "whole-graph", "error": "RuntimeError: no capture"}]
    assert reproduce.choose(fake) == "loss-graph"  # shifts is faster, but its loss disagrees
    assert [r.get("loss_agrees") for r in fake] == [True, False, True, None]
    choice = tmp_path / "choice.json"
    command = ["--device", "cpu", "--width", "0.125", "--batch-size", "16", "--no-compile", "--choose-only",
               "--choice", str(choice), "--candidates", "default,shifts", "--candidate-steps", "2",
               "--candidate-warmup", "1"]
    first = reproduce.main(command)
    assert "step: " in capsys.readouterr().out and json.loads(choice.read_text())["chosen"] in ("default", "shifts")
    again = reproduce.main(command)
    assert again == first and "timed earlier" in capsys.readouterr().out
    choice.write_text("{not json")
    retimed = reproduce.main(command)  # an unreadable choice is timed again
    assert retimed["step"] in ({}, {"depthwise": "shifts"}) and "step candidate default" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        reproduce.main([*command, "--candidates", "default,warp-speed"])
    assert "unknown candidate warp-speed" in capsys.readouterr().err


def test_a_run_stopped_by_its_budget_continues_exactly_and_records_the_curve(reproduce, parts_module, cifar_dir,
                                                                             tmp_path, capsys):
    whole = reproduce.main(["--data-dir", str(cifar_dir), "--out", str(tmp_path / "whole"), *TINY])
    assert whole["summary"]["epochs_done"] == 3
    capsys.readouterr()
    # The same run from parts, in three commands: a budget too short to finish, an epoch, the rest.
    parts_module.split(cifar_dir, tmp_path / "parts", workers=1, method=0)
    command = ["--parts", str(tmp_path / "parts"), "--out", str(tmp_path / "split"), *TINY]
    first = reproduce.main([*command, "--minutes", "0.001", "--reserve", "0"])
    assert first["summary"]["epochs_done"] < 3 and capsys.readouterr().out.strip().endswith(
        f"paper_epochs_done: {first['summary']['epochs_done']}")
    report = (tmp_path / "split" / "record" / "report.md").read_text()
    assert "not finished: give the same command the same --out" in report
    unfinished = sorted(p.name for p in (tmp_path / "split" / "record").iterdir())
    assert "state.json" in unfinished and len(unfinished) <= 8 and "train.log" not in unfinished  # in the state
    reproduce.main([*command, "--stop-after", "1"])
    last = reproduce.main(command)
    assert last["resumed"] and last["summary"]["epochs_done"] == 3
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("paper_val_selected_test_accuracy: ")
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit the uninterrupted run's weights
    assert [r["test_acc"] for r in last["curve"].values()] == [r["test_acc"] for r in whole["curve"].values()]
    record = sorted(p.name for p in (tmp_path / "split" / "record").iterdir())
    assert len(record) <= 8 and any(n.startswith("ghostmixnet_cifar10_paper-") for n in record)
    assert {"report.md", "curve.csv", "curve.png", "train.log", "metrics.csv", "test.json"} <= set(record)
    report = (tmp_path / "split" / "record" / "report.md").read_text()
    assert "val-selected test accuracy" in report and "the paper's protocol" in report
    assert "| 1 |" in report and "53.38%" in report and "95.51%" in report
    assert "state.json" not in record  # the finished run's record drops the state
    shutil.rmtree(tmp_path / "parts")


def test_a_run_continues_exactly_from_its_exported_state_in_a_new_folder(reproduce, cifar_dir, tmp_path):
    """As across two GPU windows: the first ends with its state in the record (committed), the next machine starts
    bare with that state and continues; the weights equal an uninterrupted run's bit for bit."""
    state_module = load_benchmark("paper_state")
    reproduce.main(["--data-dir", str(cifar_dir), "--out", str(tmp_path / "whole"), *TINY])
    first = reproduce.main(["--data-dir", str(cifar_dir), "--out", str(tmp_path / "window1"), *TINY,
                            "--stop-after", "1", "--record", str(tmp_path / "committed")])
    assert first["summary"]["epochs_done"] == 1
    manifest = json.loads((tmp_path / "committed" / "state.json").read_text())
    assert manifest["epochs_done"] == 1
    assert {"last.pt", "best.pt", "config.json", "metrics.csv"} <= set(manifest["files"])
    with pytest.raises(SystemExit, match="already holds a run"):
        state_module.import_state(tmp_path / "committed", tmp_path / "window1")
    second = reproduce.main(["--data-dir", str(cifar_dir), "--out", str(tmp_path / "window2"), *TINY,
                             "--state", str(tmp_path / "committed"), "--record", str(tmp_path / "committed")])
    assert second["resumed"] and second["summary"]["epochs_done"] == 3
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "window2" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "committed" / "state.json").exists()  # the finished run's record drops the state


def test_a_continued_run_gets_this_commands_budget_whatever_it_trained_before(reproduce, cifar_dir, tmp_path):
    """The run's time limit counts all its training: a continuation must add this command's budget to what the
    run trained before, or a run continued in a later window would stop as soon as it started."""
    command = ["--data-dir", str(cifar_dir), "--out", str(tmp_path / "run"), *TINY]
    reproduce.main([*command, "--stop-after", "1"])
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    ckpt["history"][0]["seconds"] = 3600.0  # as if the first window had trained for an hour
    torch.save(ckpt, tmp_path / "run" / "last.pt")
    assert reproduce.trained_seconds(tmp_path / "run") >= 3600.0
    again = reproduce.main([*command, "--stop-after", "1", "--minutes", "1", "--reserve", "0"])
    assert again["summary"]["epochs_done"] == 2  # a whole epoch more, not one step and a stop
