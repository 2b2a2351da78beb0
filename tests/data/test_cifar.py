import pickle
from urllib.error import URLError

import numpy as np
import pytest
from conftest import synthetic_images, write_batch

from ghostmixnet import data
from ghostmixnet.data.cifar import find_cifar_folder, load_cifar10, read_batch
from ghostmixnet.errors import DataError


def test_reads_official_layout(cifar_dir):
    train = load_cifar10(cifar_dir, train=True)
    test = load_cifar10(cifar_dir, train=False)
    assert train.images.shape == (200, 32, 32, 3) and train.images.dtype == np.uint8
    assert test.images.shape == (100, 32, 32, 3)
    expected, labels = synthetic_images(40, seed=1)
    assert np.array_equal(train.images[:40], expected) and train.labels[:40].tolist() == labels


def test_pixel_layout_is_red_green_blue_planes(tmp_path):
    img = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    img[0, 0, 1] = (10, 20, 30)  # row 0, column 1
    write_batch(tmp_path / "b", img, [3])
    rows = pickle.loads((tmp_path / "b").read_bytes(), encoding="bytes")[b"data"]
    assert (rows[0, 1], rows[0, 1024 + 1], rows[0, 2048 + 1]) == (10, 20, 30)
    images, labels = read_batch(tmp_path / "b")
    assert tuple(images[0, 0, 1]) == (10, 20, 30) and labels.tolist() == [3]


def test_data_dir_may_be_the_batches_folder_itself(cifar_dir):
    assert find_cifar_folder(cifar_dir / "cifar-10-batches-py") == cifar_dir / "cifar-10-batches-py"


def test_missing_folder_says_where_to_put_the_data(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py.*--download"):
        load_cifar10(tmp_path / "nowhere", train=True)


def test_download_failure_is_one_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def offline(*args, **kwargs):
        raise URLError("no network")
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match="could not download CIFAR-10.*unpack cifar-10-python.tar.gz"):
        load_cifar10(tmp_path, train=True, download=True)


@pytest.mark.parametrize("payload, message", [
    ([1, 2], "not the dict"),
    ({b"labels": [1]}, "no 'data' entry"),
    ({b"data": np.zeros((2, 10), np.uint8), b"labels": [1, 2]}, "shape"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "holds 1 labels for 2 images"),
    ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [12]}, r"integer labels in 0..9; found 12..12"),
    # the wrong type of label, which NumPy would have converted without a word
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2.5]}, r"'labels'.*item 1 is 2.5 \(float\)"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [True, 0]}, r"item 0 is True \(bool\)"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["1", "2"]}, r"item 0 is '1' \(str\)"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": np.array([1.0, float("nan")])}, "array of float64"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": {1: 2}}, "got a dict"),
])
def test_malformed_batches(tmp_path, payload, message):
    (tmp_path / "b").write_bytes(pickle.dumps(payload))
    with pytest.raises(DataError, match=message):
        read_batch(tmp_path / "b")


def test_real_cifar10(real_data_dir):
    train = data.load_cifar10(real_data_dir, train=True)
    test = data.load_cifar10(real_data_dir, train=False)
    assert len(train) == 50_000 and len(test) == 10_000
    assert train.labels[0] == 6 and test.labels[0] == 3  # a frog, a cat
    assert np.bincount(train.labels).tolist() == [5000] * 10
    mean = train.images[:5000].reshape(-1, 3).mean(0) / 255
    assert np.allclose(mean, data.MEAN, atol=0.01)
