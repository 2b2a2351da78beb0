"""CIFAR-10 in two parts for a GPU machine: lossless WebP mosaics rebuilt byte for byte, every part and file checked."""

import json
import pickle
import shutil

import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def parts_module():
    return load_benchmark("cifar_parts")


@pytest.fixture(scope="module")
def verbatim_dir(tmp_path_factory, cifar_dir):
    """The tiny CIFAR-10 folder with its batches pickled as the official ones hold their pixels: verbatim
    (protocol 4; Python 3's protocol 2, as conftest writes, encodes them as text, which split sends as xz)."""
    root = tmp_path_factory.mktemp("verbatim")
    shutil.copytree(cifar_dir / "cifar-10-batches-py", root / "cifar-10-batches-py")
    for path in (root / "cifar-10-batches-py").glob("*_batch*"):
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="bytes")  # the test's own synthetic file
        path.write_bytes(pickle.dumps(entry, protocol=4))
    return root


def test_the_data_travel_in_two_checked_parts_and_come_back_byte_for_byte(parts_module, verbatim_dir, tmp_path):
    parts = parts_module.split(verbatim_dir, tmp_path / "parts", workers=1, method=0)
    assert [p.name for p in parts] == ["cifar10.parts.000", "cifar10.parts.001"]
    pieces = json.loads((tmp_path / "parts" / "manifest.json").read_text())["pieces"]
    assert sum(p["kind"] == "webp" for p in pieces) == 6  # one mosaic for each batch's 40 images
    folder = parts_module.join(tmp_path / "parts", tmp_path / "joined")
    for name in parts_module.FILES:
        assert (folder / name).read_bytes() == (verbatim_dir / "cifar-10-batches-py" / name).read_bytes()
    original = parts[0].read_bytes()
    data = bytearray(original)
    data[100] ^= 1
    parts[0].write_bytes(bytes(data))
    with pytest.raises(SystemExit, match="altered or truncated"):
        parts_module.join(tmp_path / "parts", tmp_path / "again")
    parts[0].write_bytes(original)
    manifest_path = tmp_path / "parts" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["data_batch_2"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(SystemExit, match="data_batch_2 does not match its sha256"):
        parts_module.join(tmp_path / "parts", tmp_path / "again")
    manifest_path.write_text(json.dumps({"format": manifest["format"], "parts": manifest["parts"]}))
    with pytest.raises(SystemExit, match="is malformed"):
        parts_module.join(tmp_path / "parts", tmp_path / "again")
    manifest_path.write_text(json.dumps(manifest))
    parts[1].unlink()
    with pytest.raises(SystemExit, match="cifar10.parts.001 is missing: send every part"):
        parts_module.join(tmp_path / "parts", tmp_path / "again")
    manifest_path.unlink()
    with pytest.raises(SystemExit, match="manifest.json is missing"):
        parts_module.join(tmp_path / "parts", tmp_path / "again")


def test_the_codecs_considered_are_compared_in_bits_per_sub_pixel(parts_module, verbatim_dir):
    sizes = parts_module.compare_codecs(verbatim_dir, images=40)
    assert "xz -9e" in sizes and "webp 10x10 mosaic, effort 5" in sizes
    assert all(0 < bits < 9 for bits in sizes.values())  # random pixels: about 8, with the formats' overhead
