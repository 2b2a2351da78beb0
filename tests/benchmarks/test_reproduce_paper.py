"""The prepared reproduction command, end to end on the CPU with tiny data: the data in parts, a stop at the
budget, the exact continuation, and the record with the curve beside the authors'."""

import json
import pickle
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


@pytest.fixture(scope="module")
def verbatim_dir(tmp_path_factory, cifar_dir):
    """The tiny CIFAR-10 folder with its batches pickled as the official ones hold their pixels: verbatim
    (protocol 4; Python 3's protocol 2, as conftest writes, encodes them as text, which split sends as xz)."""
    root = tmp_path_factory.mktemp("verbatim")
    shutil.copytree(cifar_dir / "cifar-10-batches-py", root / "cifar-10-batches-py")
    for path in (root / "cifar-10-batches-py").glob("*_batch*"):
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="bytes")  # the test's own synthetic file
        path.write_bytes(pickle.dumps(entry, protocol=4))
    return root


def test_the_data_travel_in_two_checked_parts_and_come_back_byte_for_byte(parts_module, verbatim_dir, tmp_path):
    parts = parts_module.split(verbatim_dir, tmp_path / "parts", workers=1, method=0)
    assert [p.name for p in parts] == ["cifar10.parts.000", "cifar10.parts.001"]
    pieces = json.loads((tmp_path / "parts" / "manifest.json").read_text())["pieces"]
    assert sum(p["kind"] == "webp" for p in pieces) == 6  # one mosaic for each batch's 40 images
    folder = parts_module.join(tmp_path / "parts", tmp_path / "joined")
    for name in parts_module.FILES:
        assert (folder / name).read_bytes() == (verbatim_dir / "cifar-10-batches-py" / name).read_bytes()
    original = parts[0].read_bytes()
    data = bytearray(original)
    data[100] ^= 1
    parts[0].write_bytes(bytes(data))
    with pytest.raises(SystemExit, match="altered or truncated"):
        parts_module.join(tmp_path / "parts", tmp_path / "again")
    parts[0].write_bytes(original)
    manifest_path = tmp_path / "parts" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["data_batch_2"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(SystemExit, match="data_batch_2 does not match its sha256"):
        parts_module.join(tmp_path / "parts", tmp_path / "again")
    parts[1].unlink()
    with pytest.raises(SystemExit, match="missing"):
        parts_module.join(tmp_path / "parts", tmp_path / "again")
    manifest_path.unlink()
    with pytest.raises(SystemExit, match="manifest.json is missing"):
        parts_module.join(tmp_path / "parts", tmp_path / "again")


def test_the_codecs_considered_are_compared_in_bits_per_sub_pixel(parts_module, verbatim_dir):
    sizes = parts_module.compare_codecs(verbatim_dir, images=40)
    assert "xz -9e" in sizes and "webp 10x10 mosaic, effort 5" in sizes
    assert all(0 < bits < 9 for bits in sizes.values())  # random pixels: about 8, with the formats' overhead


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


def test_exported_state_is_refused_when_a_part_is_altered_or_missing(cifar_dir, tmp_path):
    state_module = load_benchmark("paper_state")
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(bytes(range(256)) * 4000)
    (run / "config.json").write_text("{}")
    written = state_module.export_state(run, tmp_path / "state", part_mib=0.0005, epochs_done=7)
    parts = [p for p in written if p.name.startswith("state.0")]
    assert len(parts) >= 2 and all(p.stat().st_size <= 0.0005 * 2**20 for p in parts)
    state_module.import_state(tmp_path / "state", tmp_path / "back")
    assert (tmp_path / "back" / "last.pt").read_bytes() == (run / "last.pt").read_bytes()
    data = bytearray(parts[0].read_bytes())
    data[10] ^= 1
    parts[0].write_bytes(bytes(data))
    with pytest.raises(SystemExit, match="altered or truncated"):
        state_module.import_state(tmp_path / "state", tmp_path / "again")
    parts[0].unlink()
    with pytest.raises(SystemExit, match="missing"):
        state_module.import_state(tmp_path / "state", tmp_path / "again")
