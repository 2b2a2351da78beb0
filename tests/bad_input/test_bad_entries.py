"""Every kind of file-system entry wherever a command reads a path: images, image folders, training folders,
data batches, course pickles, model files of each format, a run's last.pt, --init and --distill checkpoints;
and each of them vanishing between the command's first look and its read."""

from __future__ import annotations

import importlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import ENTRY_KINDS, OUTCOMES, course_pickle, make_entry, photo_folder, png_bytes, run, time_bound

import ghostmixnet.files

TRAIN_TINY = ["--width", "0.125", "--epochs", "1", "--batch-size", "8", "--num-workers", "0", "--no-compile"]


@dataclass
class Case:
    """One slot made ready: the entry to replace, what a regular one holds, the command, the inputs' folder."""

    entry: Path
    content: bytes
    argv: list[str]
    inputs: Path
    writes_inputs: bool = False  # a resumed run writes its own folder


def prepare(slot: str, root: Path, files: dict[str, Path]) -> Case:
    """``slot`` set up under ``root`` (inputs in root/in, outputs in root/out), with the entry still to make."""
    inputs, out = root / "in", root / "out"
    (inputs / "images").mkdir(parents=True)
    (inputs / "ok.png").write_bytes(png_bytes(1))
    (inputs / "images" / "first.png").write_bytes(png_bytes(2))
    model = shutil.copy(files["model"], inputs / "model.pt")
    predict = ["predict", str(model)]
    if slot.startswith(("image named", "image in an image folder")):
        entry = inputs / "images" / "entry.png"
        target = entry if slot == "image named" else entry.parent
        skip = ["--skip-bad"] if slot.endswith("--skip-bad") else []
        return Case(entry, png_bytes(), [*predict, str(target), *skip], inputs)
    if slot == "course pickle":
        return Case(inputs / "images" / "entry.pkl", course_pickle(), [*predict, str(inputs / "images" / "entry.pkl")],
                    inputs)
    if slot in ("model file", "weights file", "ONNX file"):
        source = {"model file": files["model"], "weights file": files["weights"], "ONNX file": files["onnx"]}[slot]
        entry = inputs / "images" / (source.name if slot != "model file" else "entry.pt")
        return Case(entry, source.read_bytes(), ["predict", str(entry), str(inputs / "ok.png")], inputs)
    if slot == "data batch":
        data = shutil.copytree(files["cifar"], inputs / "data")
        entry = data / "cifar-10-batches-py" / "test_batch"
        content = entry.read_bytes()
        entry.unlink()
        return Case(entry, content, ["eval", str(model), "--data-dir", str(data), "--batch-size", "64"], inputs)
    if slot == "run folder's last.pt":
        run_dir = shutil.copytree(files["run"], inputs / "run")
        entry = run_dir / "last.pt"
        content = entry.read_bytes()
        entry.unlink()
        return Case(entry, content, ["train", "--resume", str(run_dir), "--stop-after", "1"], inputs, True)
    photos = photo_folder(inputs / "photos")
    finetune = ["train", "--dataset", "folder", "--data-dir", str(photos), "--recipe", "finetune", *TRAIN_TINY,
                "--out", str(out)]
    if slot.startswith("image in a training folder"):
        skip = ["--skip-bad"] if slot.endswith("--skip-bad") else []
        return Case(photos / "cat" / "entry.png", png_bytes(3, size=40), [*finetune, "--init", str(model), *skip],
                    inputs)
    entry = inputs / "images" / "entry.pt"
    if slot == "--init checkpoint":
        return Case(entry, files["model"].read_bytes(), [*finetune, "--init", str(entry)], inputs)
    assert slot == "--distill teacher", slot
    return Case(entry, files["model"].read_bytes(),
                ["train", "--data-dir", str(files["cifar"]), "--distill", str(entry), "--mix-prob", "0", "--val-size",
                 "50", *TRAIN_TINY, "--out", str(out)], inputs)


SLOTS = ("image named", "image in an image folder", "image in an image folder, --skip-bad", "course pickle",
         "model file", "weights file", "ONNX file", "data batch", "run folder's last.pt",
         "image in a training folder", "image in a training folder, --skip-bad", "--init checkpoint",
         "--distill teacher")


@pytest.fixture
def files(tiny_checkpoint, tiny_weights, tiny_onnx, stopped_run, cifar_dir) -> dict[str, Path]:
    return {"model": tiny_checkpoint, "weights": tiny_weights, "onnx": tiny_onnx, "run": stopped_run,
            "cifar": cifar_dir}


def expect(slot: str, kind: str, status: int, err: str, entry: Path) -> None:
    """What each kind must give in each slot: a regular file works; a folder or nothing inside a folder that is
    walked is no image to read; --skip-bad skips and names the rest; everything else is one line naming it."""
    walked = slot.startswith("image in a") and kind in ("folder", "missing")
    if kind == "regular" or walked:
        assert status == 0, err
    elif slot.endswith("--skip-bad"):
        assert status == 0 and f"skipped {entry}" in err, err
    else:
        assert status == 1 and entry.name in err, err


@pytest.mark.parametrize("kind", ENTRY_KINDS)
@pytest.mark.parametrize("slot", SLOTS)
def test_every_kind_of_entry_where_a_path_is_read(tmp_path, files, capsys, slot, kind):
    """Every slot with every kind of entry: the whole product, not a sample (130 cases). As root, an unreadable
    file is made by running the command without root's power to read anything. Among them a case issue 41
    named: a FIFO in a folder given to predict, which made it wait forever."""
    case = prepare(slot, tmp_path, files)
    make_entry(case.entry, kind, case.content)
    try:
        status, err = run(case.argv, capsys, f"entries: {slot}", case.inputs, case.writes_inputs,
                          unprivileged=kind == "unreadable")
    finally:
        if kind == "unreadable":
            case.entry.chmod(0o600)
    expect(slot, kind, status, err, case.entry)


LOOKERS = ("ghostmixnet.files", "ghostmixnet.model.checkpoint", "ghostmixnet.predict.inputs",
           "ghostmixnet.predict.classify", "ghostmixnet.train.resume", "ghostmixnet.infer.onnx")


@pytest.mark.parametrize("slot", SLOTS)
def test_an_entry_that_vanishes_after_the_first_look(tmp_path, files, capsys, monkeypatch, slot):
    """The entry is a good file when the command first looks at it (``entry_problem``), and is gone when it
    reads it: a race that no ordering of checks can rule out, so the read itself must say so in one line."""
    case = prepare(slot, tmp_path, files)
    make_entry(case.entry, "regular", case.content)
    looked = []
    real = ghostmixnet.files.entry_problem

    def vanishing(path):
        problem = real(path)
        if problem is None and Path(path).resolve() == case.entry.resolve() and not looked:
            looked.append(path)
            case.entry.unlink()
        return problem

    for name in LOOKERS:
        monkeypatch.setattr(importlib.import_module(name), "entry_problem", vanishing, raising=False)
    status, err = run(case.argv, capsys, f"entries: {slot}, vanishing", case.inputs, case.writes_inputs,
                      gone=case.entry)
    assert looked, f"the command never looked at {case.entry} before reading it"
    if slot.endswith("--skip-bad"):
        assert status == 0 and f"skipped {case.entry}" in err, err
    else:
        assert status == 1 and case.entry.name in err, err


def test_the_entry_kinds_are_what_they_say(tmp_path):
    """The harness's own maker: each kind is the entry it claims (a wrong one would test nothing)."""
    modes = {"fifo": stat.S_ISFIFO, "socket": stat.S_ISSOCK, "folder": stat.S_ISDIR}
    for kind in ENTRY_KINDS:
        path = tmp_path / kind.replace(" ", "-")
        make_entry(path, kind, b"x")
        if kind in modes:
            assert modes[kind](path.lstat().st_mode)
        elif kind == "device":
            assert stat.S_ISCHR(path.stat().st_mode)
        elif kind == "dangling link":
            assert path.is_symlink() and not path.exists()
        elif kind == "link loop":
            assert path.is_symlink() and os.readlink(path) == str(path)
        elif kind == "missing":
            assert not os.path.lexists(path)
        else:
            assert path.is_file() and path.stat().st_size == (kind != "empty") and (kind != "unreadable"
                                                                                  or path.stat().st_mode & 0o777 == 0)
    OUTCOMES["entries: the makers themselves"]["checked"] += len(ENTRY_KINDS)


@pytest.mark.parametrize("kind", ["empty", "folder", "fifo", "device", "dangling link", "link loop"])
@pytest.mark.parametrize("cache", ["serving measurements", "compile costs"])
def test_every_kind_of_entry_in_a_cache_is_measured_again_never_waited_on(tmp_path, monkeypatch, tiny_checkpoint, cache,
                                                                          kind):
    """Caches are the package's own, but anything can be put there: such an entry counts as no measurement."""
    monkeypatch.setenv("GHOSTMIXNET_CACHE", str(tmp_path / "cache"))
    with time_bound():
        if cache == "compile costs":
            from ghostmixnet.train.compile_auto import cost_file, read_costs

            cost_file().parent.mkdir(parents=True, exist_ok=True)
            make_entry(cost_file(), kind, b"")
            assert read_costs(cost_file()) == {}
        else:
            from ghostmixnet.serve.served import load_served_model

            load_served_model(tiny_checkpoint, runtime="torch", views=1, log=lambda _: None)  # measures, keeps
            kept = list((tmp_path / "cache" / "serve").glob("speed-*.json"))
            assert len(kept) == 1
            kept[0].unlink()
            make_entry(kept[0], kind, b"")
            lines = []
            served = load_served_model(tiny_checkpoint, runtime="torch", views=1, log=lines.append)
            assert served.info["speed"]["images_per_s"] > 0 and any("timing torch" in line for line in lines)
    OUTCOMES[f"entries: cache of {cache}"][f"{kind}: measured again"] += 1


FOLDER_SLOTS = ("CIFAR-10 data folder", "class folder to train on", "run folder to resume")
FOLDER_KINDS = ("folder", "linked folder", *[k for k in ENTRY_KINDS if k != "folder"])


@pytest.mark.parametrize("kind", FOLDER_KINDS)
@pytest.mark.parametrize("slot", FOLDER_SLOTS)
def test_every_kind_of_entry_where_a_folder_is_read(tmp_path, files, capsys, slot, kind):
    """Where a command reads a folder: the folder itself, a link to it (both work), and every other kind of entry
    (one line naming it). An unreadable folder is one whose mode is 000."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    model = shutil.copy(files["model"], inputs / "model.pt")
    good = tmp_path / "good"
    if slot == "CIFAR-10 data folder":
        shutil.copytree(files["cifar"], good)
    elif slot == "class folder to train on":
        photo_folder(good)
    else:
        shutil.copytree(files["run"], good)
    entry = inputs / "entry"
    if kind == "folder":
        entry = good
    elif kind == "linked folder":
        entry.symlink_to(good)
    elif kind == "unreadable":
        entry = good
        good.chmod(0)
    else:
        make_entry(entry, kind, b"not a folder")
    argv = {"CIFAR-10 data folder": ["eval", str(model), "--data-dir", str(entry)],
            "class folder to train on": ["train", "--dataset", "folder", "--data-dir", str(entry), "--recipe",
                                         "finetune", "--init", str(model), *TRAIN_TINY, "--out", str(out)],
            "run folder to resume": ["train", "--resume", str(entry)]}[slot]
    try:
        status, err = run(argv, capsys, f"entries: {slot}", inputs, unprivileged=kind == "unreadable")
    finally:
        good.chmod(0o755)
    if kind in ("folder", "linked folder"):
        assert status == 0, err
    else:
        assert status == 1 and entry.name in err, err
