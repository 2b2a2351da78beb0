"""A folder of class sub-folders: read as predict reads images, cached by content, and refused with one
line for each way such a folder goes wrong."""

import os

import numpy as np
import pytest
from PIL import Image

from ghostmixnet.data.folders import CACHE_PREFIX, load_folder, read_cache, scan_classes
from ghostmixnet.data.images import load_image
from ghostmixnet.errors import DataError


def make_folder(root, classes=("cat", "dog", "fox"), per_class=3, size=(48, 40)):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c / "nested").mkdir(parents=True)
        for i in range(per_class):
            where = root / c / ("nested" if i == 0 else "")
            Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(where / f"{i}.png")
    return root


def test_classes_are_the_sorted_sub_folders_and_images_are_read_as_predict_reads_them(tmp_path):
    root = make_folder(tmp_path / "data")
    (root / "notes.txt").write_text("not a class")
    (root / "cat" / "readme.md").write_text("not an image")
    data, classes = load_folder(root)
    assert classes == ("cat", "dog", "fox") and data.images.shape == (9, 32, 32, 3)
    assert data.labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    index = scan_classes(root)
    first, _ = load_image(index.files[0])
    assert np.array_equal(data.images[0], first)  # the same pixels predict sees


def test_the_cache_is_used_rebuilt_when_a_file_changes_and_refused_when_corrupt(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "data")
    data, _ = load_folder(root)
    caches = list(root.glob(f"{CACHE_PREFIX}*.npz"))
    assert len(caches) == 1
    import ghostmixnet.data.folders as folders

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache matches")

    monkeypatch.setattr(folders, "decode_folder", no_decoding)
    cached, _ = load_folder(root)
    assert np.array_equal(cached.images, data.images)
    monkeypatch.undo()
    Image.new("RGB", (32, 32), (255, 0, 0)).save(root / "dog" / "1.png")
    os.utime(root / "dog" / "1.png", ns=(1, 1))
    changed, _ = load_folder(root)
    where = scan_classes(root).files.index(root / "dog" / "1.png")
    assert (changed.images[where] == [255, 0, 0]).all() and len(list(root.glob(f"{CACHE_PREFIX}*.npz"))) == 2
    newest = max(root.glob(f"{CACHE_PREFIX}*.npz"), key=lambda p: p.stat().st_mtime_ns)
    newest.write_bytes(newest.read_bytes()[:200])
    with pytest.raises(DataError, match="is corrupt .*delete it and it is rebuilt"):
        load_folder(root)
    with pytest.raises(DataError, match="is corrupt"):
        read_cache(newest)


def test_each_image_size_reads_and_caches_the_folder_at_that_size(tmp_path):
    root = make_folder(tmp_path / "data")
    small, _ = load_folder(root)
    large, _ = load_folder(root, size=64)
    assert small.images.shape[1:] == (32, 32, 3) and large.images.shape[1:] == (64, 64, 3)
    assert len(list(root.glob(f"{CACHE_PREFIX}*.npz"))) == 2
    again, _ = load_folder(root, size=64)
    assert np.array_equal(again.images, large.images)
    small_cache = root / f"{CACHE_PREFIX}{scan_classes(root).key()}.npz"  # the 32-pixel key is what it always was
    with pytest.raises(DataError, match="is corrupt .*do not fit together"):
        read_cache(small_cache, size=64)


def test_a_folder_that_cannot_be_written_is_read_without_a_cache(tmp_path):
    root = make_folder(tmp_path / "data")
    said = []
    data, _ = load_folder(root, cache_dir=tmp_path / "missing" / "deeper" / "file.txt" / "x", echo=said.append)
    assert len(data) == 9 and "could not write the cache" in said[0]


def test_unreadable_files_stop_the_read_or_are_skipped_with_skip_bad(tmp_path):
    root = make_folder(tmp_path / "data")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png.*--skip-bad"):
        load_folder(root)
    said = []
    data, _ = load_folder(root, skip_bad=True, echo=said.append)
    assert len(data) == 9 and "broken.png" in said[0]


@pytest.mark.parametrize("case, message", [
    ("empty class", "class folder 'fox' holds no images"),
    ("one class", r"holds 1 class folder\(s\); a classifier needs at least two"),
    ("duplicate names", "class folders 'Cat' and 'cat' differ only in case"),
    ("linked class", "class folder 'link' is a link"),
    ("not a folder", "is not a folder"),
])
def test_each_broken_folder_gets_one_clear_line(tmp_path, case, message):
    root = tmp_path / "data"
    if case == "empty class":
        make_folder(root, classes=("cat", "dog"))
        (root / "fox").mkdir()
    elif case == "one class":
        make_folder(root, classes=("cat",))
    elif case == "duplicate names":
        make_folder(root, classes=("Cat", "cat"))
    elif case == "linked class":
        make_folder(root, classes=("cat", "dog"))
        (root / "link").symlink_to(root / "dog")
    else:
        root.write_text("a file")
    with pytest.raises(DataError, match=message):
        load_folder(root)
