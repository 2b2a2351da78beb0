import pytest
import torch
from conftest import Exploit

from ghostmixnet.config import make_config
from ghostmixnet.errors import CheckpointError
from ghostmixnet.infer.load import model_from_checkpoint
from ghostmixnet.model.checkpoint import load_checkpoint, save_atomic
from ghostmixnet.model.factory import build_model


def tiny_checkpoint(path, model_name="ghostmixnet", config_model=None):
    cfg = make_config("paper", model=config_model or model_name, width=0.125)
    torch.manual_seed(0)
    model = build_model(model_name, width=0.125)
    save_atomic({"model": model.state_dict(), "config": cfg.to_dict(), "epoch": 1}, path)
    return model


def test_round_trip_rebuilds_the_same_function(tmp_path):
    model = tiny_checkpoint(tmp_path / "c.pt").eval()
    loaded, cfg, ckpt = model_from_checkpoint(tmp_path / "c.pt")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), loaded(x))
    assert cfg.width == 0.125 and ckpt["epoch"] == 1


def test_a_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic({"model": {}, "config": {}, "epoch": 1}, path)
    before = path.read_bytes()

    def dying_save(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # a kill arriving mid-write
    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"epoch": 2}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_checkpoint_with_code_is_refused_and_nothing_runs(tmp_path):
    target = tmp_path / "pwned.txt"
    torch.save({"model": {}, "config": {}, "payload": Exploit(target)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not target.exists()


def test_truncated_checkpoint(tmp_path):
    tiny_checkpoint(tmp_path / "c.pt")
    raw = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "c.pt").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "c.pt")


def test_checkpoint_of_another_model(tmp_path):
    tiny_checkpoint(tmp_path / "c.pt", model_name="resnet", config_model="ghostmixnet")
    with pytest.raises(CheckpointError, match="different model or class count.*missing"):
        model_from_checkpoint(tmp_path / "c.pt")


def test_not_a_ghostmixnet_checkpoint(tmp_path):
    torch.save(build_model("resnet", width=0.125).state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a ghostmixnet checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_corrupt_bytes_are_detected(tmp_path, tiny_config):
    save_atomic({"model": {"w": torch.randn(256, 256)}, "config": tiny_config().to_dict()}, tmp_path / "a.pt")
    data = bytearray((tmp_path / "a.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF  # torch.load alone would read this without complaint
    (tmp_path / "a.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt|truncated"):
        load_checkpoint(tmp_path / "a.pt")
