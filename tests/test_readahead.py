"""A file read ahead is handed over only while the file at the path is still the one read."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from wnpass import readahead


def _finish() -> None:
    """Wait for the read in flight (the tests change the file only after it is done)."""
    pending = readahead._pending
    assert pending is not None
    pending.join(timeout=10)
    assert not pending.is_alive()


def test_the_bytes_read_are_handed_over_once(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07" * 5000)
    readahead.start(path)
    assert readahead.claim(tmp_path / "." / "model.onnx") == b"\x08\x07" * 5000
    assert readahead.claim(path) is None  # handed out: the memory is the claimer's


def test_no_read_ahead_where_no_thread_can_be_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The RuntimeError of a thread that cannot start was an internal error (t196): nothing
    is read ahead, and the claimer reads the file itself."""

    def refused(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    path = tmp_path / "model.onnx"
    path.write_bytes(b"bytes")
    monkeypatch.setattr(threading.Thread, "start", refused)
    readahead.start(path)
    assert readahead.claim(path) is None


def test_a_file_changed_after_the_read_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old bytes")
    readahead.start(path)
    _finish()
    with open(path, "r+b") as stream:  # same inode, same size, new contents
        stream.write(b"new")
    os.utime(path, ns=(0, 0))  # an old modification time does not hide the change
    assert readahead.claim(path) is None


def test_a_file_replaced_after_the_read_is_read_again(tmp_path: Path) -> None:
    path, other = tmp_path / "model.onnx", tmp_path / "other.onnx"
    path.write_bytes(b"first")
    other.write_bytes(b"other")
    readahead.start(path)
    _finish()
    os.replace(other, path)
    assert readahead.claim(path) is None


def test_a_claim_for_another_path_leaves_the_read_for_its_own(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"mine")
    readahead.start(path)
    assert readahead.claim(tmp_path / "output.onnx") is None
    assert readahead.claim(path) == b"mine"


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo"])
def test_only_regular_files_are_read(kind: str, tmp_path: Path) -> None:
    """A FIFO is not even opened: a writer waiting on it is not let through, and nothing is
    consumed from it."""
    path = tmp_path / "model.onnx"
    writer_through = threading.Event()
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)

        def writer() -> None:  # blocks until someone opens the FIFO for reading
            os.close(os.open(path, os.O_WRONLY))
            writer_through.set()

        threading.Thread(target=writer, daemon=True).start()
    readahead.start(path)
    _finish()
    assert readahead.claim(path) is None
    if kind == "fifo":
        assert not writer_through.wait(0.3)
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))  # now let the writer go
        assert writer_through.wait(10)


def test_a_read_in_flight_is_waited_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"slow")
    gate = threading.Event()
    real_run = readahead._Read.run

    def slow_run(self: readahead._Read) -> None:
        gate.wait(timeout=10)
        real_run(self)

    monkeypatch.setattr(readahead._Read, "run", slow_run)
    readahead.start(path)
    threading.Timer(0.2, gate.set).start()
    assert readahead.claim(path) == b"slow"
