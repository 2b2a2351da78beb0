import numpy as np
import pytest

from ghostmixnet.data.splits import load_splits, stratified_split
from ghostmixnet.errors import DataError


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
