"""The prepared reproduction command, end to end on the CPU with tiny data: the data in parts, a stop at the
budget, the exact continuation, and the record with the curve beside the authors'."""

import shutil

import pytest
import torch
from conftest import load_benchmark

TINY = ["--device", "cpu", "--epochs", "3", "--width", "0.125", "--batch-size", "32", "--val-size", "50",
        "--no-compile", "--log-every", "1000"]


@pytest.fixture(scope="module")
def reproduce():
    return load_benchmark("reproduce_paper")


@pytest.fixture(scope="module")
def parts_module():
    return load_benchmark("cifar_parts")


def test_the_data_travel_in_checked_parts(parts_module, cifar_dir, tmp_path):
    parts = parts_module.split(cifar_dir, tmp_path / "parts", part_mib=0.2, preset=1)
    assert len(parts) >= 2 and all(p.stat().st_size <= 0.2 * 2**20 for p in parts)
    folder = parts_module.join(tmp_path / "parts", tmp_path / "joined")
    for name in parts_module.FILES:
        assert (folder / name).read_bytes() == (cifar_dir / "cifar-10-batches-py" / name).read_bytes()
    original = parts[0].read_bytes()
    data = bytearray(original)
    data[100] ^= 1
    parts[0].write_bytes(bytes(data))
    with pytest.raises(SystemExit, match="altered or truncated"):
        parts_module.join(tmp_path / "parts", tmp_path / "again")
    parts[0].write_bytes(original)
    parts[1].unlink()
    with pytest.raises(SystemExit, match="missing"):
        parts_module.join(tmp_path / "parts", tmp_path / "again")


def test_a_run_stopped_by_its_budget_continues_exactly_and_records_the_curve(reproduce, parts_module, cifar_dir,
                                                                             tmp_path, capsys):
    whole = reproduce.main(["--data-dir", str(cifar_dir), "--out", str(tmp_path / "whole"), *TINY])
    assert whole["summary"]["epochs_done"] == 3
    capsys.readouterr()
    # The same run from parts, in three commands: a budget too short to finish, an epoch, the rest.
    parts_module.split(cifar_dir, tmp_path / "parts", part_mib=0.5, preset=1)
    command = ["--parts", str(tmp_path / "parts"), "--out", str(tmp_path / "split"), *TINY]
    first = reproduce.main([*command, "--minutes", "0.001", "--reserve", "0"])
    assert first["summary"]["epochs_done"] < 3 and capsys.readouterr().out.strip().endswith(
        f"paper_epochs_done: {first['summary']['epochs_done']}")
    report = (tmp_path / "split" / "record" / "report.md").read_text()
    assert "not finished: give the same command the same --out" in report
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
    shutil.rmtree(tmp_path / "parts")
