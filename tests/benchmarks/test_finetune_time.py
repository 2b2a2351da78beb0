"""The fine-tune timing benchmark's photos: N enlarged JPEG files of two classes, read back as a class folder."""

from conftest import load_benchmark
from PIL import Image

from ghostmixnet.data.folders import load_folder


def test_the_photos_are_two_class_folders_of_enlarged_jpegs(cifar_dir, tmp_path):
    bench = load_benchmark("finetune_time")
    root = bench.write_photos(cifar_dir, tmp_path / "photos", 15)
    files = sorted(root.rglob("*.jpg"))
    assert len(files) == 15 and {f.parent.name for f in files} == {"cat", "dog"}
    assert all(Image.open(f).size == (96, 96) for f in files)
    data, classes = load_folder(root, cache_dir=tmp_path / "cache")
    assert len(data) == 15 and classes == ("cat", "dog") and data.images.shape[1:] == (32, 32, 3)
