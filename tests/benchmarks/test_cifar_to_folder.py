"""CIFAR-10 written as PNG folders reads back as the very same images."""

import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def to_folder():
    return load_benchmark("cifar_to_folder")


def test_the_png_folder_gives_the_pickles_images(to_folder, cifar_dir, tmp_path, capsys):
    result = to_folder.main(["--data-dir", str(cifar_dir), "--out", str(tmp_path / "png"), "--limit", "60"])
    assert result["images"] == 60 and result["equal"] is True
    assert "arrays equal to the pickles': True" in capsys.readouterr().out
