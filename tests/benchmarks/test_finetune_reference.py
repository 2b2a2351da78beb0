"""The plain reference loop and the screen of fine-tuning choices, on generated photos in split folders."""

import json

from conftest import load_benchmark, write_class_folder


def split_folders(root):
    write_class_folder(root / "train", per_class=8)
    write_class_folder(root / "val", per_class=3, seed=1)
    write_class_folder(root / "test", per_class=3, seed=2)
    return root


def test_the_reference_loop_reports_its_best_validation_epoch_and_that_epochs_test_accuracy(tmp_path):
    result = load_benchmark("finetune_reference").main([str(split_folders(tmp_path / "data")), "--image-size", "48",
                                                        "--epochs", "2", "--batch-size", "8"])
    assert result["image_size"] == 48 and result["best_epoch"] in (1, 2)
    assert 0 <= result["best_val"] <= 1 and 0 <= result["test"] <= 1 and result["seconds"] > 0


def test_the_screen_runs_each_variant_on_each_set_once_and_reads_finished_runs_back(tmp_path, tiny_checkpoint):
    data = split_folders(tmp_path / "photos")
    screen = load_benchmark("finetune_screen")
    argv = [str(data), "--out", str(tmp_path / "screen"), "--variant",
            f"tiny=--width 0.125 --epochs 1 --no-compile --init {tiny_checkpoint} --image-size 48"]
    first = screen.main(argv)
    assert len(first) == 1 and first[0]["set"] == "photos" and first[0]["epochs"] == 1
    config = json.loads((tmp_path / "screen" / "photos" / "tiny" / "config.json").read_text())
    assert config["image_size"] == 48 and config["recipe"] == "finetune"
    again = screen.main(argv)  # read back, not trained again
    assert again[0]["seconds"] == first[0]["seconds"]
