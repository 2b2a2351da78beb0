"""CIFAR-100 in its official layout: fine and coarse labels with their names, read safely, refused clearly."""

import pickle
import shutil

import numpy as np
import pytest
from conftest import write_cifar100

from ghostmixnet.data.cifar100 import cifar100_files, find_cifar100, load_cifar100, read_split
from ghostmixnet.errors import DataError


def test_fine_and_coarse_labels_with_their_names(tmp_path):
    root = write_cifar100(tmp_path / "data")
    train, classes = load_cifar100(root, train=True)
    assert train.images.shape == (40, 32, 32, 3) and train.images.dtype == np.uint8
    assert len(classes) == 100 and classes[7] == "fine7" and train.labels[7] == 7
    test, coarse = load_cifar100(root, train=False, labels="coarse")
    assert len(test) == 20 and len(coarse) == 20 and test.labels.max() == 19
    raw = pickle.loads((root / "cifar-100-python" / "train").read_bytes())
    first = raw[b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(train.images[0], first)  # planes turned into HWC as the CIFAR-10 reader does
    assert len(cifar100_files(root)) == 3 and find_cifar100(root / "cifar-100-python") == root / "cifar-100-python"


def test_missing_or_hostile_or_malformed_files_are_refused_in_one_line(tmp_path, exploit_pickle):
    with pytest.raises(DataError, match="CIFAR-100 not found.*--download"):
        load_cifar100(tmp_path, train=True)
    root = write_cifar100(tmp_path / "data")
    folder = root / "cifar-100-python"
    evil, target = exploit_pickle
    shutil.copy(evil, folder / "test")
    with pytest.raises(DataError, match="not a safe data pickle"):
        load_cifar100(root, train=False)
    assert not target.exists()
    with open(folder / "train", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 100]}, f)
    with pytest.raises(DataError, match=r"'fine_labels' must be a list of \d+ integer labels in 0..99"):
        read_split(folder / "train")
    with pytest.raises(DataError, match="no 'coarse_labels' entry"):
        read_split(folder / "train", "coarse")
    with pytest.raises(ValueError, match="labels must be one of fine, coarse"):
        read_split(folder / "train", "medium")


def test_download_without_a_network_says_what_to_do(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils  # what both datasets' downloads call (data/cifar.py)

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match="could not download CIFAR-100.*unpack cifar-100-python.tar.gz"):
        load_cifar100(tmp_path, train=True, download=True)
