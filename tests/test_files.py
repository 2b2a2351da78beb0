"""Writing files: modes as the user's umask says, outputs checked before any work, the run folder's lock."""

import os
import subprocess
import sys

import pytest

from ghostmixnet.files import check_output, check_writable, exclusive_lock, write_text_atomic


def test_files_are_written_with_the_users_umask_and_replacing_keeps_the_mode(tmp_path):
    before = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "new.txt", "a")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600
        (tmp_path / "kept.txt").write_text("old")
        os.chmod(tmp_path / "kept.txt", 0o604)
        write_text_atomic(tmp_path / "kept.txt", "new")
        assert (tmp_path / "kept.txt").stat().st_mode & 0o777 == 0o604 and (tmp_path / "kept.txt").read_text() == "new"
    finally:
        os.umask(before)


def test_an_output_that_is_an_input_is_refused_through_links_and_dots(tmp_path):
    model = tmp_path / "best.pt"
    model.write_bytes(b"weights")
    (tmp_path / "link.pt").symlink_to(model)
    for out in (model, tmp_path / "link.pt", tmp_path / "sub" / ".." / "best.pt"):
        with pytest.raises(ValueError, match="is also an input: writing it would replace"):
            check_output(out, [model])


def test_an_output_that_cannot_be_written_is_refused_and_nothing_is_made(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="cannot be written: .*file.txt is a file, not a folder"):
        check_writable(tmp_path / "file.txt" / "out" / "a.csv")
    with pytest.raises(ValueError, match="is a folder; name a file"):
        check_writable(tmp_path)
    with pytest.raises(ValueError, match="is a file; name a folder"):
        check_writable(tmp_path / "file.txt", folder=True)
    check_writable(tmp_path / "new" / "deeper", folder=True)
    assert not (tmp_path / "new").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_a_lock_refuses_a_second_holder_naming_it_and_dies_with_its_process(tmp_path):
    lock = tmp_path / ".lock"
    with exclusive_lock(lock, "busy"):
        with pytest.raises(OSError, match=rf"busy: process {os.getpid()} holds it"):
            with exclusive_lock(lock, "busy"):
                pass
    # A process killed while holding the lock leaves nothing that stops the next one.
    code = ("import os, signal, sys; from ghostmixnet.files import exclusive_lock\n"
            f"with exclusive_lock({str(lock)!r}, 'busy'):\n    os.kill(os.getpid(), signal.SIGKILL)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    with exclusive_lock(lock, "busy"):
        pass
    assert not lock.exists()
