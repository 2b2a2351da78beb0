"""Every structured input, field by field: data batches (labels, images), course pickles (ids, images),
checkpoints (their keys, config fields, tensors, calibration), weights files' metadata, ONNX files' metadata,
a run's config.json and run.json, and image headers. Each drawn value either works (and then what comes out is
sound: probabilities that are numbers in 0..1, one row per id) or is refused in one line naming the file."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from harness import SETTINGS, png_bytes, run
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ghostmixnet.config import TrainConfig
from ghostmixnet.model.checkpoint import save_atomic

LABELS = st.one_of(
    st.lists(st.integers(0, 9), min_size=100, max_size=100),  # fine
    st.lists(st.integers(-5, 20), min_size=100, max_size=100),  # out of range, maybe
    st.lists(st.integers(0, 9), min_size=0, max_size=150),  # a length that disagrees, maybe
    st.lists(st.floats(allow_nan=True), min_size=100, max_size=100),
    st.lists(st.booleans(), min_size=100, max_size=100),
    st.lists(st.text(max_size=2), min_size=100, max_size=100),
    st.just(np.arange(100) % 10), st.just((np.arange(100) % 10).astype(np.float32)),
    st.just(None), st.just("0123456789"), st.just({0: 1}),
)
DATA = st.sampled_from(["uint8 (100, 3072)", "float32 (100, 3072)", "uint8 (100, 3071)", "uint8 (99, 3072)",
                        "int64 (100, 3072)", "missing"])


def eval_batch(tmp_path_factory, tiny_checkpoint, capsys, batch: dict, kind: str) -> tuple[int, str]:
    """``eval`` on a data folder whose test batch is ``batch`` (its training batches good)."""
    folder = tmp_path_factory.mktemp("fields") / "data"
    (folder / "cifar-10-batches-py").mkdir(parents=True)
    good = {b"data": np.random.default_rng(0).integers(0, 256, (20, 3072)).astype(np.uint8),
            b"labels": list(range(10)) * 2}
    for i in range(1, 6):
        (folder / "cifar-10-batches-py" / f"data_batch_{i}").write_bytes(pickle.dumps(good))
    (folder / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(batch))
    (folder / "cifar-10-batches-py" / "batches.meta").write_bytes(pickle.dumps({b"label_names": []}))
    return run(["eval", str(tiny_checkpoint), "--data-dir", str(folder), "--batch-size", "64"], capsys, kind, folder)


IMAGES = np.random.default_rng(1).integers(0, 256, (100, 3072)).astype(np.uint8)


@SETTINGS
@given(labels=LABELS)
@example(labels=[float(i % 10) for i in range(100)])  # a case issue 41 named: labels of the wrong type, read silently
@example(labels=[bool(i % 2) for i in range(100)])
def test_every_kind_of_labels_in_a_data_batch(tmp_path_factory, tiny_checkpoint, capsys, labels):
    status, err = eval_batch(tmp_path_factory, tiny_checkpoint, capsys, {b"data": IMAGES, b"labels": labels},
                             "fields: a test batch's labels")
    fine = (isinstance(labels, (list, np.ndarray)) and len(labels) == 100
            and (labels.dtype.kind in "iu" if isinstance(labels, np.ndarray) else
                 all(isinstance(v, int) and not isinstance(v, bool) for v in labels))
            and all(0 <= v <= 9 for v in labels))
    assert (status == 0) == fine, (labels, err)
    if not fine:
        assert "test_batch: field 'labels'" in err, err  # the file and the field named


@SETTINGS
@given(data=DATA)
def test_every_kind_of_image_data_in_a_data_batch(tmp_path_factory, tiny_checkpoint, capsys, data):
    batch = {b"labels": list(range(10)) * 10}
    if data != "missing":
        dtype, shape = data.split(" ", 1)
        batch[b"data"] = np.zeros(eval(shape), dtype)  # noqa: S307 - our own literal shapes
    status, err = eval_batch(tmp_path_factory, tiny_checkpoint, capsys, batch, "fields: a test batch's images")
    assert (status == 0) == (data == "uint8 (100, 3072)"), (data, err)
    if status:
        assert "test_batch" in err and ("'data'" in err or "100 labels for 99 images" in err), err




# ---- course pickles ---------------------------------------------------------------------------------------------

IDS = st.one_of(
    st.lists(st.integers(-10, 10), min_size=3, max_size=3),  # fine, unless two are equal
    st.lists(st.text(max_size=3), min_size=3, max_size=3),
    st.lists(st.binary(max_size=3), min_size=3, max_size=3),  # bytes: UTF-8 or not
    st.lists(st.one_of(st.integers(0, 5), st.booleans(), st.floats(allow_nan=True), st.none()), min_size=3,
             max_size=3),
    st.lists(st.integers(0, 9), min_size=0, max_size=5),  # a length that disagrees, maybe
    st.just(np.arange(3)), st.just(np.arange(3, dtype=np.float64)), st.just(np.array(["a", "b", "c"])),
    st.just(None), st.just("abc"), st.just({0: 1}), st.just("missing"),
)


def fine_ids(ids) -> list | None:
    """The ids as the CSV should carry them, or None where the command must refuse them."""
    if isinstance(ids, np.ndarray):
        ids = ids.tolist()
    if not isinstance(ids, list) or len(ids) != 3:
        return None
    if not all(isinstance(i, (str, bytes)) or (isinstance(i, int) and not isinstance(i, bool)) for i in ids):
        return None
    try:
        ids = [i.decode() if isinstance(i, bytes) else i for i in ids]
    except UnicodeDecodeError:
        return None
    return ids if len({str(i) for i in ids}) == 3 else None  # two equal ids would make an ambiguous submission


@SETTINGS
@given(ids=IDS)
def test_every_kind_of_ids_in_a_course_pickle(tmp_path_factory, tiny_checkpoint, capsys, ids):
    folder = tmp_path_factory.mktemp("course")
    batch = {b"data": np.zeros((3, 3072), np.uint8)}
    if not (isinstance(ids, str) and ids == "missing"):
        batch[b"ids"] = ids
    (folder / "test.pkl").write_bytes(pickle.dumps(batch))
    out = tmp_path_factory.mktemp("course-out") / "submission.csv"
    status, err = run(["predict", str(tiny_checkpoint), str(folder / "test.pkl"), "--out", str(out)], capsys,
                      "fields: a course pickle's ids", folder)
    # Without ids (or with none in the field) the rows are numbered, as the course's own file has them.
    expected = [0, 1, 2] if ids is None or (isinstance(ids, str) and ids == "missing") else fine_ids(ids)
    assert (status == 0) == (expected is not None), (ids, err)
    if status == 0:
        rows = list(csv.reader(out.open()))
        assert [r[0] for r in rows[1:]] == [str(i) for i in expected], rows
    else:
        assert "test.pkl" in err and "'ids'" in err, err


COURSE_DATA = st.sampled_from(["uint8 (3, 32, 32, 3)", "uint8 (3, 3072)", "uint8 (0, 32, 32, 3)", "uint8 (3, 32, 32)",
                               "uint8 (3, 3, 32, 32)", "float32 (3, 32, 32, 3)", "int64 (3, 3072)", "uint8 (3,)",
                               "list", "missing"])


@SETTINGS
@given(data=COURSE_DATA)
def test_every_kind_of_images_in_a_course_pickle(tmp_path_factory, tiny_checkpoint, capsys, data):
    folder = tmp_path_factory.mktemp("course")
    batch = {}
    if data == "list":
        batch[b"data"] = [[0] * 3072] * 3
    elif data != "missing":
        dtype, shape = data.split(" ", 1)
        batch[b"data"] = np.zeros(eval(shape), dtype)  # noqa: S307 - our own literal shapes
    (folder / "test.pkl").write_bytes(pickle.dumps(batch))
    status, err = run(["predict", str(tiny_checkpoint), str(folder / "test.pkl"), "--out",
                       str(folder.parent / f"{folder.name}.csv")], capsys, "fields: a course pickle's images", folder)
    assert (status == 0) == (data in ("uint8 (3, 32, 32, 3)", "uint8 (3, 3072)")), (data, err)
    if status:
        assert "test.pkl" in err and "'data'" in err, err


# ---- checkpoints ------------------------------------------------------------------------------------------------

VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=4), st.lists(st.integers(-3, 3), max_size=3),
                   st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))
CONFIG_FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
CHECKPOINT_KEYS = ["model", "config", "epoch", "calibration"]
MUTATIONS = st.one_of(
    st.tuples(st.just("drop key"), st.sampled_from(CHECKPOINT_KEYS), st.none()),
    st.tuples(st.just("key"), st.sampled_from(CHECKPOINT_KEYS), VALUES),
    st.tuples(st.just("config field"), st.sampled_from(CONFIG_FIELDS), VALUES),
    st.tuples(st.just("drop config field"), st.sampled_from(CONFIG_FIELDS), st.none()),
    st.tuples(st.just("tensor"), st.sampled_from(["nan", "inf", "int", "shape", "scalar", "text", "extra", "half"]),
              st.none()),
    st.tuples(st.just("calibration field"), st.sampled_from(["temperature", "threshold", "keep", "images", "other"]),
              VALUES),
)
CALIBRATION = {"temperature": 1.5, "threshold": 1.0, "keep": 0.95, "images": 50}


def mutate(ckpt: dict, mutation: tuple) -> dict:
    """``ckpt`` (a deep copy) changed as ``mutation`` says."""
    what, name, value = mutation
    ckpt = {**ckpt, "config": dict(ckpt["config"]), "model": dict(ckpt["model"]),
            "calibration": dict(ckpt["calibration"])}
    if what == "drop key":
        del ckpt[name]
    elif what == "key":
        ckpt[name] = value
    elif what == "config field":
        ckpt["config"][name] = value
    elif what == "drop config field":
        del ckpt["config"][name]
    elif what == "calibration field":
        ckpt["calibration"][name] = value
    else:
        key = next(k for k, v in ckpt["model"].items() if v.is_floating_point() and v.ndim == 4)
        tensor = ckpt["model"][key]
        ckpt["model"][key] = {"nan": tensor.clone().fill_(math.nan), "inf": tensor.clone().fill_(math.inf),
                              "int": tensor.long(), "shape": tensor[:1], "scalar": tensor.sum(), "text": "weights",
                              "extra": tensor, "half": tensor.half()}[name]
        if name == "extra":
            ckpt["model"]["extra.weight"] = tensor
    return ckpt


def predict_sound(argv: list[str], capsys, kind: str, inputs: Path, out: Path) -> tuple[int, str]:
    """``predict ... --out out`` held to the rule; when it works, every probability and score it wrote is a
    number (probabilities in 0..1): a model file's field that slips through as NaN would show here."""
    status, err = run([*argv, "--out", str(out)], capsys, kind, inputs)
    if status == 0:
        for row in csv.DictReader(out.open()):
            p, s = float(row["probability"]), float(row["score"])
            assert 0 <= p <= 1 and math.isfinite(s), (argv, row, err)
    return status, err


@settings(SETTINGS, max_examples=30)  # six kinds of change, each case a fraction of a second
@given(mutation=MUTATIONS)
def test_every_field_of_a_checkpoint(tmp_path_factory, tiny_checkpoint, capsys, mutation):
    folder = tmp_path_factory.mktemp("ckpt")
    (folder / "in.png").write_bytes(png_bytes(5))
    base = torch.load(tiny_checkpoint, weights_only=True)
    save_atomic(mutate({**base, "calibration": CALIBRATION}, mutation), folder / "m.pt")
    status, err = predict_sound(["predict", str(folder / "m.pt"), str(folder / "in.png")], capsys,
                                f"fields: a checkpoint's {mutation[0]}", folder, folder.parent / f"{folder.name}.csv")
    if status:
        assert "m.pt" in err, err


# ---- weights files and ONNX files: their metadata ---------------------------------------------------------------

METADATA_VALUES = st.one_of(st.text(max_size=6), VALUES.map(json.dumps),
                            st.tuples(st.sampled_from(CONFIG_FIELDS), VALUES))


def metadata_value(drawn, config: dict) -> str:
    """A drawn metadata value: text, JSON of a drawn value, or the config with one field changed."""
    if isinstance(drawn, tuple):
        name, value = drawn
        return json.dumps({**config, name: value})
    return drawn


@SETTINGS
@given(key=st.sampled_from(["config", "calibration", "epoch", "format", "classes"]), drawn=METADATA_VALUES)
def test_every_field_of_a_weights_files_metadata(tmp_path_factory, tiny_weights, capsys, key, drawn):
    """Rewritten with the drawn value and named by its new hash, as someone who edits one would do."""
    from safetensors.torch import load, save

    data = tiny_weights.read_bytes()
    metadata = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])["__metadata__"]  # the format's header
    config = json.loads(metadata["config"])
    metadata[key] = metadata_value(drawn, config)
    new = save(load(data), metadata)
    folder = tmp_path_factory.mktemp("weights")
    path = folder / f"edited-{hashlib.sha256(new).hexdigest()[:8]}.safetensors"
    path.write_bytes(new)
    (folder / "in.png").write_bytes(png_bytes(6))
    status, err = predict_sound(["predict", str(path), str(folder / "in.png")], capsys,
                                f"fields: a weights file's {key} metadata", folder,
                                folder.parent / f"{folder.name}.csv")
    if status:
        assert path.name in err, err


@SETTINGS
@given(key=st.sampled_from(["ghostmixnet_config", "classes", "calibration"]), drawn=METADATA_VALUES)
def test_every_field_of_an_onnx_files_metadata(tmp_path_factory, tiny_onnx, capsys, key, drawn):
    import onnx

    proto = onnx.load(str(tiny_onnx))
    props = {p.key: p for p in proto.metadata_props}
    config = json.loads(props["ghostmixnet_config"].value)
    if key not in props:
        props[key] = proto.metadata_props.add(key=key)
    props[key].value = metadata_value(drawn, config)
    folder = tmp_path_factory.mktemp("onnx")
    onnx.save(proto, str(folder / "edited.onnx"))
    (folder / "in.png").write_bytes(png_bytes(7))
    status, err = predict_sound(["predict", str(folder / "edited.onnx"), str(folder / "in.png")], capsys,
                                f"fields: an ONNX file's {key} metadata", folder, folder.parent / f"{folder.name}.csv")
    if status:
        assert "edited.onnx" in err, err


# ---- a run folder's own records ---------------------------------------------------------------------------------

RECORD_VALUES = st.one_of(st.tuples(st.sampled_from(CONFIG_FIELDS), VALUES), st.text(max_size=8),
                          st.binary(max_size=8), st.just("drop"))


def record_bytes(drawn, record: dict) -> bytes | None:
    """A run record rewritten as drawn: one field changed, other text, other bytes, or the file removed (None)."""
    if isinstance(drawn, tuple):
        return json.dumps({**record, drawn[0]: drawn[1]}).encode()
    if isinstance(drawn, str):
        return None if drawn == "drop" else drawn.encode()
    return drawn


@pytest.mark.parametrize("record", ["config.json", "run.json"])
@settings(SETTINGS, max_examples=5)  # each case trains an epoch: a few seconds
@given(drawn=RECORD_VALUES)
@example(drawn=("lr", 0.5))  # a case issue 41 named: config.json edited by hand, replaced without a word on resume
def test_every_field_of_a_run_folders_records(tmp_path_factory, stopped_run, capsys, record, drawn):
    """A run's config.json and run.json edited, then resumed for a moment (``--epochs 2`` is the run's own, and
    the first epoch is done: one more). For run.json a field of the config's names stands for any field."""
    folder = shutil.copytree(stopped_run, tmp_path_factory.mktemp("records") / "run")
    original = json.loads((folder / record).read_text())
    new = record_bytes(drawn, original)
    if new is None:
        (folder / record).unlink()
    else:
        (folder / record).write_bytes(new)
    status, err = run(["train", "--resume", str(folder)], capsys, f"fields: a run's {record}", folder,
                      writes_inputs=True)
    if status:
        assert record in err, err
    elif record == "config.json" and new is not None and json.loads(json.dumps(original)) != _json_or_none(new):
        assert "was edited since the run wrote it" in err and (folder / "config.edited.json").read_bytes() == new, err


def _json_or_none(data: bytes):
    try:
        return json.loads(data)
    except ValueError:
        return None


# ---- image headers ----------------------------------------------------------------------------------------------

def png_with(width: int, height: int, depth: int, colour: int, interlace: int, fix_crc: bool, cut: int | None) -> bytes:
    """A PNG whose header (IHDR) says the drawn things over 32x32 RGB pixels; its CRC fixed or not; cut short."""
    data = bytearray(png_bytes(8))
    data[16:29] = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    if fix_crc:
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data if cut is None else data[:cut])


SIZES = st.sampled_from([0, 1, 32, 4096, 2**16, 2**31 - 1, 2**32 - 1])


@SETTINGS
@given(width=SIZES, height=SIZES, depth=st.sampled_from([1, 8, 16, 0, 3, 255]),
       colour=st.sampled_from([0, 2, 3, 6, 1, 7]), interlace=st.sampled_from([0, 1, 2]), fix_crc=st.booleans(),
       cut=st.one_of(st.none(), st.integers(0, 200)))
def test_every_kind_of_png_header(tmp_path_factory, tiny_checkpoint, capsys, width, height, depth, colour, interlace,
                                  fix_crc, cut):
    folder = tmp_path_factory.mktemp("header")
    (folder / "h.png").write_bytes(png_with(width, height, depth, colour, interlace, fix_crc, cut))
    status, err = predict_sound(["predict", str(tiny_checkpoint), str(folder / "h.png")], capsys,
                                "fields: a PNG's header", folder, folder.parent / f"{folder.name}.csv")
    if status:
        assert "h.png" in err, err


def jpeg_with(width: int, height: int, components: int, cut: int | None) -> bytes:
    """A JPEG whose frame header (SOF0) says the drawn size and component count; cut short."""
    buf = io.BytesIO()
    from PIL import Image

    Image.fromarray(np.random.default_rng(9).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    data[sof + 9] = components
    return bytes(data if cut is None else data[:cut])


@SETTINGS
@given(width=st.sampled_from([0, 1, 32, 65535]), height=st.sampled_from([0, 1, 32, 65535]),
       components=st.sampled_from([0, 1, 3, 4, 255]), cut=st.one_of(st.none(), st.integers(0, 400)))
def test_every_kind_of_jpeg_header(tmp_path_factory, tiny_checkpoint, capsys, width, height, components, cut):
    folder = tmp_path_factory.mktemp("header")
    (folder / "h.jpg").write_bytes(jpeg_with(width, height, components, cut))
    status, err = predict_sound(["predict", str(tiny_checkpoint), str(folder / "h.jpg")], capsys,
                                "fields: a JPEG's header", folder, folder.parent / f"{folder.name}.csv")
    if status:
        assert "h.jpg" in err, err
