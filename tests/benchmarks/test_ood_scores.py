"""The out-of-distribution score screen, end to end on the tiny CIFAR-10 folder and a stand-in checkpoint:
every score is chosen on the selection sets only, within the size cap, and reported on the others."""

import json

import numpy as np
import pytest
from conftest import load_benchmark
from PIL import Image

pytest.importorskip("sklearn", reason="the digits set is scikit-learn's")


def photos(folder, n, seed):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image: skipped")
    return folder


def test_the_screen_chooses_on_the_selection_sets_within_the_cap(cifar_dir, tiny_checkpoint, tmp_path, capsys):
    screen = load_benchmark("ood_scores")
    select, report = photos(tmp_path / "select", 6, 0), photos(tmp_path / "report", 5, 1)
    record = screen.main([str(tiny_checkpoint), "--data-dir", str(cifar_dir), "--out", str(tmp_path / "out"),
                          "--select-photos", str(select), "--report-photos", str(report), "--fit-images", "60",
                          "--generated", "8", "--test-images", "40", "--max-mb", "0.01"])
    assert set(record["selection_sets"]) == {"pixel-shuffled training images", "photos: select"}
    assert record["report_sets"]["photos: report"] == 5 and record["report_sets"]["digits (scikit-learn)"] == 1797
    assert not set(record["selection_sets"]) & set(record["report_sets"])  # chosen on one group, reported on another
    fits = {n: r for n, r in record["selection"].items() if r["bytes"] <= 0.01e6}
    assert record["chosen"] in fits
    assert fits[record["chosen"]]["mean_auroc"] == max(r["mean_auroc"] for r in fits.values())
    for row in record["report"].values():
        assert 0 <= row["mean_auroc"] <= 1 and 0 <= row["inside_marked"] <= 1
    assert json.loads((tmp_path / "out" / "ood-scores.json").read_text())["chosen"] == record["chosen"]
    assert capsys.readouterr().out.splitlines()[-1].startswith("chosen on the selection sets, among arrays up to")
