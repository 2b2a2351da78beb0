"""The corruption benchmark, end to end on the CPU with a stand-in weights file and the tiny CIFAR-10 folder, and
the scoring and table it is built on."""

import json
import re

import numpy as np
import pytest
import torch
from conftest import load_benchmark

from ghostmixnet.report.robustness import corruption_accuracy, format_table


@pytest.fixture(scope="module")
def benchmark():
    return load_benchmark("corruption_benchmark")


def table_cells(table: str) -> dict[str, list[float]]:
    """The numbers of each row of a markdown table, by the row's first cell."""
    rows = {}
    for line in table.splitlines():
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        if len(cells) > 1 and re.fullmatch(r"-?\d+\.\d\d", cells[1]):
            rows[cells[0]] = [float(c) for c in cells[1:]]
    return rows


def test_the_benchmark_scores_a_weights_file(benchmark, cifar_dir, tiny_weights, tmp_path, capsys):
    out = tmp_path / "report"
    record = benchmark.main([str(tiny_weights), "--data-dir", str(cifar_dir), "--out", str(out), "--images", "40",
                             "--threads", "1", "--corruptions", "gaussian_noise,contrast,jpeg_compression",
                             "--severities", "1,5", "--save-examples", str(tmp_path / "examples.png")])
    printed = capsys.readouterr().out.strip().splitlines()
    saved = json.loads((out / "corruptions.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["images"] == 40 and saved["seed"] == 0 and saved["severities"] == [1, 5]
    assert saved["corruptions"] == ["gaussian_noise", "contrast", "jpeg_compression"]
    assert saved["model_file"] == tiny_weights.name and re.fullmatch(r"[0-9a-f]{64}", saved["sha256"])
    assert saved["torch"] == torch.__version__ and saved["date"] and "commit" in saved
    assert set(saved["per_corruption"]) == set(saved["corruptions"])
    assert all(set(row) == {"1", "5"} for row in saved["per_corruption"].values())
    entries = [a for row in saved["per_corruption"].values() for a in row.values()]
    assert len(entries) == 6 and all(0 <= a <= 1 for a in entries) and 0 <= saved["clean"] <= 1
    assert saved["mean_corruption_accuracy"] == pytest.approx(np.mean(entries))
    # the table holds the same figures in percent, its last row the means
    table = (out / "corruptions.md").read_text()
    rows = table_cells(table)
    assert list(rows) == ["gaussian_noise", "contrast", "jpeg_compression", "mean"]
    table_entries = [v for name, values in rows.items() if name != "mean" for v in values[:2]]
    assert rows["mean"][-1] == pytest.approx(np.mean(table_entries), abs=0.01)
    assert rows["mean"][-1] == pytest.approx(100 * saved["mean_corruption_accuracy"], abs=0.005)
    assert "| severity 1 | severity 5 | mean |" in "\n".join(printed)
    assert printed[-1] == (f"mean corruption accuracy {100 * saved['mean_corruption_accuracy']:.2f}% "
                           f"(clean {100 * saved['clean']:.2f}%) on 40 images")
    assert (tmp_path / "examples.png").stat().st_size > 0


def test_bad_options_are_refused(benchmark, cifar_dir, tiny_weights, tmp_path, capsys):
    for option, value in (("--corruptions", "gaussian_noise,fogg"), ("--severities", "1,6"), ("--severities", "x")):
        with pytest.raises(SystemExit):
            benchmark.main([str(tiny_weights), "--data-dir", str(cifar_dir), "--out", str(tmp_path), option, value])
        assert "choose one of" in capsys.readouterr().err


def test_the_subset_is_spread_over_classes_and_the_set(benchmark):
    labels = np.repeat(np.arange(10), 100)[np.random.default_rng(0).permutation(1000)]
    picked = benchmark.stratified_subset(labels, 50)
    assert len(picked) == len(set(picked)) == 50 and np.all(np.diff(picked) > 0)
    assert np.all(np.bincount(labels[picked], minlength=10) == 5)
    uneven = benchmark.stratified_subset(labels, 23)  # 2.3 per class: three classes get a third image
    assert sorted(np.bincount(labels[uneven], minlength=10)) == [2] * 7 + [3] * 3
    assert np.array_equal(benchmark.stratified_subset(labels, 5000), np.arange(1000))


class Constant(torch.nn.Module):
    """Always answers class 0: its accuracy is the share of class 0 on any copy of the images."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.zeros(len(x), dtype=torch.long), 10).float()


def test_the_scores_and_their_means():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    labels = np.array([0] * 5 + [1] * 15)
    result = corruption_accuracy(Constant(), images, labels, torch.device("cpu"), batch_size=8,
                                 names=["fog", "pixelate"], severities=[2, 4])
    assert result["clean"] == 0.25 and result["mean_corruption_accuracy"] == 0.25
    assert result["per_corruption"] == {"fog": {2: 0.25, 4: 0.25}, "pixelate": {2: 0.25, 4: 0.25}}
    assert result["mean_per_corruption"] == {"fog": 0.25, "pixelate": 0.25}
    assert result["per_severity"] == {2: 0.25, 4: 0.25} and result["seconds"]["corrupting"] > 0
    table = format_table(result)
    assert table.splitlines()[0] == "| corruption | severity 2 | severity 4 | mean |"
    assert table_cells(table) == {"fog": [25.0] * 3, "pixelate": [25.0] * 3, "mean": [25.0] * 3}
    assert format_table(json.loads(json.dumps(result))) == table  # read back from JSON, severities as text
    with pytest.raises(ValueError, match="unknown severity"):
        corruption_accuracy(Constant(), images, labels, torch.device("cpu"), severities=[0])
    with pytest.raises(ValueError, match="as many labels"):
        corruption_accuracy(Constant(), images, labels[:3], torch.device("cpu"))


def test_an_onnx_file_too(benchmark, cifar_dir, tiny_onnx, tmp_path):
    record = benchmark.main([str(tiny_onnx), "--data-dir", str(cifar_dir), "--out", str(tmp_path), "--images", "20",
                             "--corruptions", "fog", "--severities", "3"])
    assert record["model_file"] == tiny_onnx.name and len(record["sha256"]) == 64 and record["images"] == 20
    assert list(record["per_corruption"]) == ["fog"] and list(record["per_corruption"]["fog"]) == [3]
