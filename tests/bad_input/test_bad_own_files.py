"""The tool's own files, round trip: every name a command accepts for what it writes (pack --name, export --out,
calibrate --out, train --out) makes a file or run folder that the commands reading that kind of file accept;
a name that would later be refused is refused when given, in one line."""

from __future__ import annotations

from harness import SETTINGS, png_bytes, run
from hypothesis import example, given, settings
from hypothesis import strategies as st


@SETTINGS
@given(name=st.one_of(st.text(min_size=0, max_size=30), st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True)))
@example(name="my-model")  # a case issue 41 named: accepted by pack, then refused by every command that read the file
def test_every_name_pack_accepts_is_read_back_by_predict(tmp_path_factory, tiny_checkpoint, capsys, name):
    folder = tmp_path_factory.mktemp("pack")
    (folder / "in.png").write_bytes(png_bytes(3))
    if "\0" in name:  # the command line cannot carry a NUL
        return
    status, err = run(["pack", str(tiny_checkpoint), "--out", str(folder / "out"), f"--name={name}"], capsys,
                      "own files: pack", tiny_checkpoint.parent)
    if status != 0:
        assert "--name" in err and "cannot name a weights file" in err, err
        return
    written = list((folder / "out").glob("*.safetensors"))
    assert len(written) == 1 and written[0].name.startswith(name + "-")
    capsys.readouterr()
    status, err = run(["predict", str(written[0]), str(folder / "in.png")], capsys, "own files: predict the packed",
                      folder)
    assert status == 0, (name, err)



@SETTINGS
@given(name=st.one_of(st.from_regex(r"[A-Za-z0-9_ .-]{1,12}(\.(onnx|ONNX|onnx\.bak|pt|png|txt))?", fullmatch=True),
                      st.sampled_from(["model", "model.onnx", "model.ONNX", "m.onnx.bak", ".onnx", "a b.onnx"])))
def test_every_name_export_accepts_is_read_back_by_predict(tmp_path_factory, tiny_checkpoint, capsys, name):
    folder = tmp_path_factory.mktemp("export")
    (folder / "in.png").write_bytes(png_bytes(4))
    if name in (".", "..") or "/" in name:
        return
    out = folder / "out" / name
    out.parent.mkdir()
    status, err = run(["export", str(tiny_checkpoint), "--out", str(out), "--verify-images", "0"], capsys,
                      "own files: export", tiny_checkpoint.parent)
    if status != 0:
        assert "files must end in .onnx" in err, err
        return
    status, err = run(["predict", str(out), str(folder / "in.png")], capsys, "own files: predict the exported", folder)
    assert status == 0, (name, err)


SUFFIXES = st.sampled_from(["", ".pt", ".PT", ".pth", ".ckpt", ".onnx", ".safetensors", ".pte", ".tflite", ".csv",
                            ".pt.bak"])


@settings(SETTINGS, max_examples=10)  # each case fits a calibration: a second or two
@given(stem=st.from_regex(r"[A-Za-z0-9_ .-]{1,10}", fullmatch=True), suffix=SUFFIXES)
def test_every_name_calibrate_accepts_is_read_back_by_predict(tmp_path_factory, tiny_checkpoint, cifar_dir, capsys,
                                                            stem, suffix):
    name = stem + suffix
    if name in (".", "..") or name.startswith("-"):
        return
    folder = tmp_path_factory.mktemp("calibrate")
    (folder / "in.png").write_bytes(png_bytes(10))
    out = folder / "out" / name
    out.parent.mkdir()
    status, err = run(["calibrate", str(tiny_checkpoint), "--data-dir", str(cifar_dir), "--out", str(out)], capsys,
                      "own files: calibrate --out", tiny_checkpoint.parent)
    if status != 0:
        assert "--out" in err and "must end in .pt" in err, err
        return
    status, err = run(["predict", str(out), str(folder / "in.png")], capsys, "own files: predict the calibrated",
                      folder)
    assert status == 0, (name, err)


@settings(SETTINGS, max_examples=4)  # each case trains an epoch: a few seconds
@given(name=st.one_of(st.from_regex(r"[A-Za-z0-9_ .:-]{1,12}", fullmatch=True),
                      st.sampled_from(["pretrained", "pretrained:ghostmixnet", "run.pt", "best.pt", "ünï cødé"])))
def test_every_run_folder_train_accepts_is_read_back(tmp_path_factory, cifar_dir, capsys, name):
    if name in (".", "..") or name.startswith("-"):
        return
    folder = tmp_path_factory.mktemp("train")
    (folder / "in.png").write_bytes(png_bytes(11))
    out = folder / "runs" / name
    status, err = run(["train", "--data-dir", str(cifar_dir), "--out", str(out), "--width", "0.125", "--epochs", "1",
                       "--batch-size", "32", "--val-size", "50", "--num-workers", "0", "--no-compile", "--mix-prob",
                       "0"], capsys, "own files: train --out", cifar_dir)
    if status != 0:
        assert "--out" in err, err
        return
    for argv in (["predict", str(out), str(folder / "in.png")], ["eval", str(out), "--data-dir", str(cifar_dir)]):
        status, err = run(argv, capsys, f"own files: {argv[0]} the run folder", folder)
        assert status == 0, (name, err)
