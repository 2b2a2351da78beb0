"""A PNG class folder written from CIFAR-10 trains the very same epoch as its pickles."""

from conftest import load_benchmark


def test_the_folder_and_the_pickles_give_the_same_arrays_and_the_same_first_epoch(cifar_dir, tmp_path, capsys):
    bench = load_benchmark("folder_vs_pickles")
    result = bench.main(["--data-dir", str(cifar_dir), "--out", str(tmp_path / "out"), "--train-subset", "100",
                         "--val-size", "50", "--width", "0.125", "--batch-size", "16"])
    assert result["images"] == {"train": 150, "val": 50, "test": 100} and result["arrays_equal"]
    losses = result["losses"]
    assert losses["folder"] == losses["pickles in class order"] and result["same_weights"]
    assert not result["same_weights_as_original_order"]  # the order of the images matters, and the check sees it
    assert "class order: identical" in capsys.readouterr().out
