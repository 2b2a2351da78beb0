import pickle

import numpy as np
import pytest
from conftest import synthetic_images, write_batch

from ghostmixnet.data.cifar import load_cifar10, read_batch
from ghostmixnet.data.course import read_course_pickle
from ghostmixnet.errors import DataError


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
