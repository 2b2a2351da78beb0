"""A paper run's resumable state in checked parts: packed, unpacked, refused when altered or missing. (Continuing a
run from it bit for bit: tests/benchmarks/test_reproduce_paper.py.)"""

import pytest
from conftest import load_benchmark


def test_exported_state_is_refused_when_a_part_is_altered_or_missing(cifar_dir, tmp_path):
    state_module = load_benchmark("paper_state")
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(bytes(range(256)) * 4000)
    (run / "config.json").write_text("{}")
    written = state_module.export_state(run, tmp_path / "state", part_mib=0.0005, epochs_done=7)
    parts = [p for p in written if p.name.startswith("state.0")]
    assert len(parts) >= 2 and all(p.stat().st_size <= 0.0005 * 2**20 for p in parts)
    state_module.import_state(tmp_path / "state", tmp_path / "back")
    assert (tmp_path / "back" / "last.pt").read_bytes() == (run / "last.pt").read_bytes()
    data = bytearray(parts[0].read_bytes())
    data[10] ^= 1
    parts[0].write_bytes(bytes(data))
    with pytest.raises(SystemExit, match="altered or truncated"):
        state_module.import_state(tmp_path / "state", tmp_path / "again")
    parts[0].unlink()
    with pytest.raises(SystemExit, match="missing"):
        state_module.import_state(tmp_path / "state", tmp_path / "again")
