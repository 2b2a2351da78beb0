import pickle
from urllib.error import URLError

import numpy as np
import pytest
import torch
from conftest import synthetic_images, write_batch

from ghostmixnet import data
from ghostmixnet.data.cifar import find_cifar_folder, load_cifar10, read_batch
from ghostmixnet.data.course import read_course_pickle
from ghostmixnet.data.splits import load_splits, stratified_split
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


def test_truncated_batch_is_reported(tmp_path):
    write_batch(tmp_path / "data_batch_1", *synthetic_images(10, 0))
    raw = (tmp_path / "data_batch_1").read_bytes()
    (tmp_path / "data_batch_1").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_batch(tmp_path / "data_batch_1")


@pytest.mark.parametrize("reader", [read_batch, read_course_pickle])
def test_code_in_a_pickle_never_runs(exploit_pickle, reader):
    path, target = exploit_pickle
    with pytest.raises(DataError, match="not a safe data pickle.*refusing to load .io.open."):
        reader(path)
    assert not target.exists()


def test_code_in_a_dataset_batch_never_runs(cifar_dir, tmp_path, exploit_pickle):
    import shutil

    evil, target = exploit_pickle
    root = tmp_path / "d"
    shutil.copytree(cifar_dir, root)
    shutil.copy(evil, root / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(DataError, match="not a safe data pickle"):
        load_cifar10(root, train=True)
    assert not target.exists()


@pytest.mark.parametrize("payload, message", [
    ([1, 2], "not the dict"),
    ({b"labels": [1]}, "no 'data' entry"),
    ({b"data": np.zeros((2, 10), np.uint8), b"labels": [1, 2]}, "shape"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "list of 2 ints"),
    ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [12]}, "labels must be in 0..9"),
])
def test_malformed_batches(tmp_path, payload, message):
    (tmp_path / "b").write_bytes(pickle.dumps(payload))
    with pytest.raises(DataError, match=message):
        read_batch(tmp_path / "b")


def test_stratified_split():
    labels = np.repeat(np.arange(10), 50)
    rest, held = stratified_split(labels, 105, seed=0)
    assert len(held) == 105 and len(rest) == 395 and not set(rest) & set(held)
    counts = np.bincount(labels[held], minlength=10)
    assert counts.min() == 10 and counts.max() == 11
    assert np.array_equal(held, stratified_split(labels, 105, seed=0)[1])
    assert not np.array_equal(held, stratified_split(labels, 105, seed=1)[1])


def test_splits_hold_out_validation_or_use_test(cifar_dir):
    s = load_splits(cifar_dir, val_size=50, split_seed=0)
    assert (len(s.train), len(s.val), len(s.test), s.val_is_test) == (150, 50, 100, False)
    s = load_splits(cifar_dir, val_size=0, split_seed=0, train_subset=40)
    assert len(s.train) == 40 and s.val is s.test and s.val_is_test
    assert np.bincount(s.train.labels).tolist() == [4] * 10
    with pytest.raises(DataError, match="leaves no training images"):
        load_splits(cifar_dir, val_size=200, split_seed=0)


def test_course_pickle(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    (tmp_path / "t.pkl").write_bytes(pickle.dumps({b"data": images, b"ids": list(range(6))}))
    assert np.array_equal(read_course_pickle(tmp_path / "t.pkl"), images)
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps({b"data": images[:, :16]}))
    with pytest.raises(DataError, match=r"shape \(N, 32, 32, 3\)"):
        read_course_pickle(tmp_path / "bad.pkl")


def test_real_cifar10(real_data_dir):
    train = data.load_cifar10(real_data_dir, train=True)
    test = data.load_cifar10(real_data_dir, train=False)
    assert len(train) == 50_000 and len(test) == 10_000
    assert train.labels[0] == 6 and test.labels[0] == 3  # a frog, a cat
    assert np.bincount(train.labels).tolist() == [5000] * 10
    mean = train.images[:5000].reshape(-1, 3).mean(0) / 255
    assert np.allclose(mean, data.MEAN, atol=0.01)


def test_device_batches_serve_what_the_data_loader_serves(cifar_dir):
    from ghostmixnet.data.cifar import load_cifar10
    from ghostmixnet.data.loading import DeviceBatches, ImageDataset, ResumableSampler

    data = load_cifar10(cifar_dir, train=True)
    sampler = ResumableSampler(len(data), seed=3)
    sampler.set_epoch(2, start=20)  # part-way through an epoch, as a resumed run starts
    loader = torch.utils.data.DataLoader(ImageDataset(data, None), batch_size=16, sampler=sampler)
    expected = list(loader)
    served = list(DeviceBatches(data, sampler, 16, torch.device("cpu")))
    assert len(served) == len(expected) == len(DeviceBatches(data, sampler, 16, torch.device("cpu")))
    for (images, labels), (want_images, want_labels) in zip(served, expected):
        assert images.dtype == torch.uint8 and images.shape == want_images.shape
        assert torch.equal(images, want_images) and torch.equal(labels, want_labels)


def test_protocol_5_pickles_load_and_hostile_ones_do_not(tmp_path):
    images, labels = synthetic_images(6, 3)
    flat = images.transpose(0, 3, 1, 2).reshape(6, -1)
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": flat, b"labels": labels}, protocol=5))
    read_images, read_labels = read_batch(tmp_path / "data_batch_1")
    assert np.array_equal(read_images, images) and read_labels.tolist() == labels
    (tmp_path / "course.pkl").write_bytes(pickle.dumps({b"data": images}, protocol=5))
    assert np.array_equal(read_course_pickle(tmp_path / "course.pkl"), images)
    from conftest import Exploit

    target = tmp_path / "pwned.txt"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({b"data": flat, b"labels": Exploit(target)}, protocol=5))
    for reader in (read_batch, read_course_pickle):
        with pytest.raises(DataError, match="not a safe data pickle"):
            reader(tmp_path / "evil.pkl")
    assert not target.exists()


def test_each_use_of_randomness_has_its_own_seed_stream():
    from ghostmixnet.data.loading import SEED_BATCH_AUGMENT, SEED_IMAGE_AUGMENT, SEED_STEP, mix_seed

    for i in range(50):
        image, step = mix_seed(SEED_IMAGE_AUGMENT, 0, 1, i), mix_seed(SEED_STEP, 0, 1, i, 0)
        assert len({image, step, mix_seed(SEED_BATCH_AUGMENT, 0, 1, i, 0)}) == 3
    assert mix_seed(SEED_STEP, 0, 1, 2, 0) == mix_seed(SEED_STEP, 0, 1, 2, 0)  # and each stream is reproducible
