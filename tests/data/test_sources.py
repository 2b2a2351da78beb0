"""A run's data from each of its sources: splits held out per class and recorded, split folders, CIFAR-100,
the class check of eval, and a one-line refusal for each way a folder's splits go wrong."""

import shutil

import numpy as np
import pytest
from conftest import write_cifar100, write_class_folder

from ghostmixnet.data.cifar import MEAN, STD
from ghostmixnet.data.sources import check_classes, has_data, load_data, normalization_of, proportional_split
from ghostmixnet.errors import DataError

SPLIT = {"val_size": 5000, "holdout": 0.2, "split_seed": 0}


def test_one_folder_holds_out_validation_and_test_images_of_every_class(class_folder):
    splits = load_data("folder", class_folder, **SPLIT)
    assert splits.classes == ("cat", "dog", "fox") and not splits.val_is_test
    for part in (splits.val, splits.test):
        assert np.bincount(part.labels).tolist() == [4, 4, 4]  # 20% of each class's 20 images
    assert np.bincount(splits.train.labels).tolist() == [12, 12, 12]
    every = np.concatenate([splits.train.images, splits.val.images, splits.test.images])
    assert len(np.unique(every.reshape(len(every), -1), axis=0)) == 60  # no image in two splits
    assert splits.record["images"] == {"train": 36, "val": 12, "test": 12} and "one folder" in splits.record["layout"]
    again = load_data("folder", class_folder, **SPLIT)  # seeded: the same split every time
    assert np.array_equal(again.val.images, splits.val.images)
    other = load_data("folder", class_folder, **{**SPLIT, "split_seed": 1})
    assert not np.array_equal(other.val.images, splits.val.images)


def test_split_folders_are_used_as_given_and_a_missing_one_is_held_out(tmp_path):
    root = tmp_path / "data"
    write_class_folder(root / "train", per_class=10)
    write_class_folder(root / "val", per_class=3, seed=1)
    splits = load_data("folder", root, **SPLIT)
    assert len(splits.val) == 9 and len(splits.train) + len(splits.test) == 30
    assert np.bincount(splits.test.labels).tolist() == [2, 2, 2]
    assert "val/" in splits.record["layout"] and "test held out of train/" in splits.record["layout"]
    write_class_folder(root / "test", classes=("cat", "dog", "owl"), per_class=2, seed=2)
    with pytest.raises(DataError, match="test has the classes cat, dog, owl but .*train has cat, dog, fox"):
        load_data("folder", root, **SPLIT)


def test_each_split_says_where_it_came_from_and_a_tiny_held_out_one_is_warned_about(tmp_path):
    root = tmp_path / "data"
    write_class_folder(root / "train", per_class=12)
    write_class_folder(root / "val", per_class=5, seed=1)
    said = []
    splits = load_data("folder", root, **SPLIT, echo=said.append)
    assert splits.record["origin"] == {"val": "the val/ folder", "test": "held out of train/, 20% of each class"}
    assert len(said) == 1 and said[0].startswith("warning: the test split held out of your images has 2 image(s)")
    assert "for a figure worth reporting" in said[0]  # the validation folder, given, is not warned about
    said.clear()
    write_class_folder(root / "test", per_class=5, seed=2)
    load_data("folder", root, **SPLIT, echo=said.append)
    assert said == []


def test_a_class_too_small_to_hold_any_out_is_named(tmp_path):
    root = write_class_folder(tmp_path / "data", per_class=4)
    for extra in sorted((root / "dog").iterdir())[1:]:
        extra.unlink()
    with pytest.raises(DataError, match="class 'dog' has 1 image"):
        load_data("folder", root, **SPLIT)


def test_proportional_split_follows_each_class_size():
    labels = np.array([0] * 50 + [1] * 10 + [2] * 5)
    rest, held = proportional_split(labels, 0.2, seed=0)
    assert np.bincount(labels[held]).tolist() == [10, 2, 1]
    assert sorted(np.concatenate([rest, held]).tolist()) == list(range(65))


def test_cifar100_is_split_like_cifar10_with_its_own_names_and_normalisation(tmp_path):
    root = write_cifar100(tmp_path / "data", n_train=300, n_test=100)
    splits = load_data("cifar100", root, **{**SPLIT, "val_size": 100})
    assert len(splits.classes) == 100 and len(splits.val) == 100 and len(splits.train) == 200
    coarse = load_data("cifar100-coarse", root, **{**SPLIT, "val_size": 40})
    assert coarse.classes[3] == "coarse3" and len(coarse.classes) == 20
    mean, std = normalization_of("cifar100", splits.train)
    assert all(abs(m - 0.5) < 0.02 for m in mean) and mean != MEAN  # uniform noise: measured, not CIFAR-10's
    assert normalization_of("cifar10", splits.train) is None and len(std) == 3 and std != STD


def test_eval_refuses_data_of_other_classes_in_one_line():
    check_classes(("a", "b"), ("a", "b"), "m.pt", "data")
    with pytest.raises(DataError, match="another order"):
        check_classes(("b", "a"), ("a", "b"), "m.pt", "data")
    with pytest.raises(DataError, match=r"m.pt classifies a, b but data holds a, c \(missing from the data: b\)"):
        check_classes(("a", "b"), ("a", "c"), "m.pt", "data")


def test_an_unknown_dataset_and_a_missing_folder_are_refused(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        load_data("folder", tmp_path / "nowhere", **SPLIT)
    with pytest.raises(DataError, match="CIFAR-100 not found"):
        load_data("cifar100", tmp_path, **SPLIT)
    shutil.rmtree(tmp_path)


def test_has_data_tells_absent_data_from_data_that_is_there(class_folder, cifar_dir, tmp_path):
    assert has_data("folder", class_folder) and has_data("cifar10", cifar_dir)
    assert not has_data("folder", cifar_dir)  # one sub-folder, of batch files: no class folder
    assert not has_data("cifar100", cifar_dir) and not has_data("cifar10", tmp_path / "nowhere")
