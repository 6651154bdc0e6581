"""Stop signals: end at once with nothing staged, unwind with something staged, and wait while
a result is being published, so that a multi-file output is never part old, part new."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import onnx
import pytest

from tests.checkpoint.builders import save_sharded, state_dict
from tests.helpers import onnx_model, paused_fold, rand, sites_left, square_gemm_site
from wnpass import interrupts, plan
from wnpass.errors import InvalidModelError
from wnpass.plan import IOPlan

TEXT = square_gemm_site(256)


class _Stopped(Exception):
    """What the test's ``on_stop`` raises instead of ending the test process."""


def _on_stop(signum: int) -> NoReturn:
    raise _Stopped(signum)


@pytest.fixture
def handled() -> Iterator[None]:
    with interrupts.handled(_on_stop):
        yield


@pytest.fixture
def models_handlers() -> Iterator[None]:
    """SIGALRM's and SIGUSR1's handlers as they were after the test, which sets the model's."""
    before = {s: signal.getsignal(s) for s in (signal.SIGALRM, signal.SIGUSR1)}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


@pytest.mark.usefixtures("handled")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_with_nothing_staged_the_process_stops_at_once(signum: int) -> None:
    with pytest.raises(_Stopped) as stopped:
        signal.raise_signal(signum)
    assert stopped.value.args == (signum,)


@pytest.mark.usefixtures("handled")
@pytest.mark.parametrize(
    ("signum", "raised"),
    [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, interrupts.Terminated)],
)
def test_with_something_staged_the_signal_unwinds(signum: int, raised: type) -> None:
    with pytest.raises(raised), interrupts.staging():
        signal.raise_signal(signum)
    assert interrupts.stopped_by() == signum


@pytest.mark.usefixtures("handled")
def test_while_publishing_the_signal_waits_for_the_release() -> None:
    done = []
    with pytest.raises(interrupts.Terminated), interrupts.staging():
        interrupts.hold()
        signal.raise_signal(signal.SIGTERM)
        done.append("renamed after the signal")
        interrupts.release()
        done.append("never: the release raises")
    assert done == ["renamed after the signal"]


def test_other_stop_signals_are_taken_where_nothing_handles_them() -> None:
    """SIGHUP at its default is a stop signal like SIGTERM; an alarm handler of the user's
    stays theirs, and a signal the process ignores stays ignored."""

    def users(signum: int, frame: object) -> None:
        pass

    before = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGALRM, signal.SIGUSR2)}
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGALRM, users)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        with interrupts.handled(_on_stop):
            assert signal.getsignal(signal.SIGALRM) is users
            assert signal.getsignal(signal.SIGUSR2) is signal.SIG_IGN
            with pytest.raises(interrupts.Terminated), interrupts.staging():
                signal.raise_signal(signal.SIGHUP)
            assert interrupts.stopped_by() == signal.SIGHUP
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_a_handler_the_block_set_is_left_as_it_is() -> None:
    """A model.py that installs its own SIGALRM handler and leaves a timer running: at the end
    of the block wnpass put its own handler back over the model's, and the next tick ended a
    run that had succeeded, "stopped by SIGALRM", exit 142 (t49)."""

    def models(signum: int, frame: object) -> None:
        pass

    before = signal.getsignal(signal.SIGALRM)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    try:
        with interrupts.handled(_on_stop):
            signal.signal(signal.SIGALRM, models)  # the model's code, inside the run
        assert signal.getsignal(signal.SIGALRM) is models
    finally:
        signal.signal(signal.SIGALRM, before)


def test_a_default_the_block_set_gives_the_handler_back() -> None:
    """The model's code resetting SIGINT to its default is no handler of its own: wnpass's
    caller gets its handler back (the review: a host calling ``main()`` lost Ctrl-C)."""
    before = signal.getsignal(signal.SIGINT)
    with interrupts.handled(_on_stop):
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_default_the_model_set_gets_ours_while_something_is_staged(signum: int) -> None:
    """A model.py that sets SIGINT or SIGTERM back to its default: a signal while a file was
    staged ended the process on the spot, the staging left behind (t225). Ours is lent while
    anything is staged, so the signal raises and the staging is removed on the way out; the
    default is given back afterwards."""
    before = signal.getsignal(signum)
    try:
        with interrupts.handled(_on_stop):
            signal.signal(signum, signal.SIG_DFL)  # the model's code, inside the run
            stop = KeyboardInterrupt if signum == signal.SIGINT else interrupts.Terminated
            with pytest.raises(stop), interrupts.staging(), interrupts.staging():
                signal.raise_signal(signum)
            assert signal.getsignal(signum) is signal.SIG_DFL
    finally:
        signal.signal(signum, before)


def test_a_handler_the_model_set_waits_for_the_result_s_renames() -> None:
    """A model's code that installs its own SIGTERM handler (which exits) kept it through the
    renames of a result: a SIGTERM there ran it between two renames (t52). Ours is lent for
    them, and the model's handler gets the signal once they are done."""
    calls: list[str] = []

    def models(signum: int, frame: object) -> None:
        calls.append(f"model's handler, signal {signum}")

    with interrupts.handled(_on_stop):
        signal.signal(signal.SIGTERM, models)  # the model's code, inside the run
        interrupts.hold()
        signal.raise_signal(signal.SIGTERM)
        calls.append("renamed after the signal")
        interrupts.release()
        calls.append("after the release")
        assert signal.getsignal(signal.SIGTERM) is models
    assert calls == [
        "renamed after the signal",
        f"model's handler, signal {signal.SIGTERM}",
        "after the release",
    ]


@pytest.mark.usefixtures("models_handlers")
def test_a_lent_signal_after_ours_loses_neither() -> None:
    """One signal was kept while a result was renamed: the model's alarm after a SIGTERM
    replaced it, and the run went on as if never stopped (t56)."""
    calls: list[str] = []

    def models(signum: int, frame: object) -> None:
        calls.append("model's alarm handler")

    with pytest.raises(interrupts.Terminated), interrupts.handled(_on_stop):
        signal.signal(signal.SIGALRM, models)
        with interrupts.staging():
            interrupts.hold()
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGALRM)
            calls.append("renamed after both")
            interrupts.release()
    assert calls == ["renamed after both", "model's alarm handler"]
    assert interrupts.stopped_by() == signal.SIGTERM


@pytest.mark.usefixtures("models_handlers")
def test_a_lent_handler_that_raises_loses_not_our_signal() -> None:
    """The model's alarm handler raised while it was given its signal after the renames: the
    SIGTERM that came first was dropped, and the run went on (t59)."""

    def models(signum: int, frame: object) -> None:
        raise RuntimeError("the model's alarm")

    with pytest.raises(interrupts.Terminated), interrupts.handled(_on_stop):
        signal.signal(signal.SIGALRM, models)
        with interrupts.staging():
            interrupts.hold()
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGALRM)
            interrupts.release()
    assert interrupts.stopped_by() == signal.SIGTERM


@pytest.mark.usefixtures("models_handlers")
def test_every_lent_handler_gets_its_signal_though_one_raises() -> None:
    """The first lent handler raised: the second never ran (t61)."""
    calls: list[str] = []

    def alarm(signum: int, frame: object) -> None:
        calls.append("alarm")
        raise RuntimeError("the model's alarm")

    def user(signum: int, frame: object) -> None:
        calls.append("usr1")

    with pytest.raises(RuntimeError, match="the model's alarm"), interrupts.handled(_on_stop):
        signal.signal(signal.SIGALRM, alarm)
        signal.signal(signal.SIGUSR1, user)
        interrupts.hold()
        signal.raise_signal(signal.SIGALRM)
        signal.raise_signal(signal.SIGUSR1)
        interrupts.release()
    assert calls == ["alarm", "usr1"]


def test_a_default_the_model_set_ends_the_process_only_after_the_renames() -> None:
    code = """if True:
        import signal, sys
        from wnpass import interrupts
        def on_stop(signum):
            raise SystemExit(99)
        with interrupts.handled(on_stop):
            signal.signal(signal.SIGHUP, signal.SIG_DFL)  # the model's code
            interrupts.hold()
            signal.raise_signal(signal.SIGHUP)
            print("renamed after the signal", flush=True)
            interrupts.release()
            print("never: the default ends the process", flush=True)
    """
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (-signal.SIGHUP, "renamed after the signal\n")


def test_the_handlers_are_put_back() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with interrupts.handled(_on_stop):
        assert signal.getsignal(signal.SIGTERM) is not before[0]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def _three_shards() -> list[list[str]]:
    keys = list(state_dict("legacy"))
    return [keys[i::3] for i in range(3)]


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def _stop_before_rename(
    tmp_path: Path, stop_at: int, *argv: str, signum: int = signal.SIGTERM
) -> tuple[int, str]:
    """Signal a fold paused (2 s) before its ``stop_at``-th rename; its exit code, stderr."""
    marker = tmp_path.parent / f"{tmp_path.name}.marker"
    proc = paused_fold(marker, stop_at, *argv, pause=2)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err.decode()


def test_sigterm_between_a_models_data_and_the_model_publishes_both(tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    onnx.save(
        onnx_model(TEXT, v=rand(256, 256), g=rand(256, 1)),
        source,
        save_as_external_data=True,
        location="w.bin",
    )
    reference = tmp_path / "reference"
    reference.mkdir()
    assert subprocess.run([sys.executable, "-m", "wnpass", "fold", str(source), "-o",
                           str(reference / "model.onnx")], check=False).returncode == 0  # fmt: skip
    code, err = _stop_before_rename(tmp_path, 2, str(source), "--in-place")
    assert code == 128 + signal.SIGTERM and err.count("\n") == 1 and "terminated" in err, err
    onnx.checker.check_model(source)  # complete: the model and the data it names
    assert sites_left(source) == 0
    folded = onnx.load(source)
    expected = onnx.load(reference / "model.onnx")
    assert [onnx.numpy_helper.to_array(t).tobytes() for t in folded.graph.initializer] == [
        onnx.numpy_helper.to_array(t).tobytes() for t in expected.graph.initializer
    ]
    assert not list(tmp_path.glob(".wnpass-*"))


@pytest.mark.parametrize(
    ("signum", "word"),
    [
        (signal.SIGTERM, "terminated"),
        (signal.SIGHUP, "stopped by SIGHUP"),
        (signal.SIGUSR1, "stopped by SIGUSR1"),
    ],
)
def test_a_stop_between_shards_publishes_the_whole_checkpoint(
    tmp_path: Path, signum: int, word: str
) -> None:
    """Replacing a sharded output: stopped after the first shard's rename, the fold still
    renames the other shards and the index, so the output is wholly the new one. SIGHUP (a
    closed terminal) and SIGUSR1 ended the process on the spot there, with shard 1 new and
    the others old, and no word (t46)."""
    if signal.getsignal(signum) is signal.SIG_IGN:  # the child inherits it ignored (nohup)
        pytest.skip(f"{signal.Signals(signum).name} is ignored in this process (nohup?)")
    index = save_sharded(tmp_path, state_dict("legacy"), _three_shards())
    out = tmp_path / "out" / "model.safetensors.index.json"
    out.parent.mkdir()
    fold = [sys.executable, "-m", "wnpass", "fold", str(index), "-o", str(out)]
    assert subprocess.run(fold, check=False).returncode == 0
    expected = _digests(out.parent)
    # an older output of another checkpoint (other values) stands where the fold writes
    other = tmp_path / "other"
    other.mkdir()
    older = save_sharded(other, state_dict("legacy", seed=1), _three_shards())
    assert subprocess.run([*fold[:4], str(older), "-o", str(out)], check=False).returncode == 0
    assert _digests(out.parent) != expected
    code, err = _stop_before_rename(tmp_path, 2, str(index), "-o", str(out), signum=signum)
    assert code == 128 + signum and f"wnpass: {word}; already written: " in err, err
    assert _digests(out.parent) == expected
    assert not list(out.parent.glob(".wnpass-*"))


@pytest.mark.parametrize(
    ("signum", "word"), [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated")]
)
def test_a_signal_while_a_result_is_published_names_what_was_written(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    signum: int,
    word: str,
) -> None:
    """``fold m.onnx --in-place`` with external data, the signal coming after the data file's
    rename: it waits for m.onnx's, so m.onnx is replaced, and the line said "nothing more was
    written" alone, as if m.onnx were as it was. It names what is in place."""
    from wnpass.cli import main

    source = tmp_path / "m.onnx"
    onnx.save(
        onnx_model(TEXT, v=rand(256, 256), g=rand(256, 1)),
        source,
        save_as_external_data=True,
        location="w.bin",
    )
    publish = IOPlan.publish

    def signalled(self: IOPlan, staged: Path, target: Path) -> None:
        publish(self, staged, target)
        if Path(target).suffix == ".data":
            signal.raise_signal(signum)

    monkeypatch.setattr(IOPlan, "publish", signalled)
    assert main(["--quiet", "fold", str(source), "--in-place"]) == 128 + signum
    assert capsys.readouterr().err == (
        f"wnpass: {word}; already written: {tmp_path / 'm.onnx.data'}, {source}; "
        "nothing more was written\n"
    )
    assert sites_left(source) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data", "w.bin"]


@pytest.mark.usefixtures("handled")
def test_the_stop_line_names_the_files_written_and_removed_since_the_handlers_came() -> None:
    """A stop with nothing staged, after an output was put in place and an old data file
    deleted, names both; a new block of handlers starts with none."""
    from wnpass.program import stop_line

    assert stop_line(signal.SIGTERM) == "wnpass: terminated; nothing more was written"
    interrupts.wrote(Path("out.onnx"))
    interrupts.removed(Path("out.onnx.data"))
    assert stop_line(signal.SIGINT, *interrupts.changes()) == (
        "wnpass: interrupted; already written: out.onnx; removed: out.onnx.data; "
        "nothing more was written"
    )
    with interrupts.handled(_on_stop):
        assert interrupts.changes() == ([], [])


# A fold whose command, with nothing staged yet, gets SIGTERM inside code that turns every
# exception into an ImportError (as numpy's C extension does with one raised in its import).
_WRAPPING_CLI = """
import signal, sys
from wnpass.cli import fold, run
def command(args, out):
    '''A fold that is stopped.'''
    try:
        signal.raise_signal(signal.SIGTERM)
        for _ in range(1000):  # the handler runs between these bytecodes
            pass
    except BaseException:
        raise ImportError("numpy._core.umath failed to import") from None
    return 0
fold.run = command
sys.argv = ["wnpass", *sys.argv[1:]]
run()
"""


def test_sigterm_inside_an_import_is_one_line_and_exit_143(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(onnx_model(TEXT, v=rand(256, 256), g=rand(256, 1)), model)
    result = subprocess.run(
        [sys.executable, "-c", _WRAPPING_CLI, "fold", str(model)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert result.stderr == "wnpass: terminated; nothing more was written\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.parametrize(
    "wrapper",
    [RuntimeError("error_already_set"), InvalidModelError("model.py: torch.onnx.export failed")],
    ids=["a library's error", "wnpass's own error"],
)
def test_a_stop_signal_wrapped_by_a_library_is_still_the_signal(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    wrapper: Exception,
) -> None:
    """With something staged, the signal becomes an exception; code that wraps it in another
    (torch's C++, numpy's imports, wnpass's own "export failed") does not make it an internal
    error, nor the user's bad input."""
    from wnpass.cli import fold, main

    def command(args: object, out: object) -> int:
        """A fold that is stopped."""
        with interrupts.staging():
            try:
                signal.raise_signal(signal.SIGTERM)
                np.zeros(1)  # the handler runs here at the latest
            except BaseException:
                raise wrapper from None
        return 0

    monkeypatch.setattr(fold, "run", command)
    assert main(["fold", str(tmp_path / "m.onnx")]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err == "wnpass: terminated; nothing more was written\n"


def _signalling(real: Callable[..., Any], signum: int, before: bool = False) -> Callable[..., Any]:
    """``real``, then a signal the moment it returns (or just before it starts)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        if before:
            signal.raise_signal(signum)
        result = real(*args, **kwargs)
        if not before:
            signal.raise_signal(signum)
        return result

    return call


@pytest.mark.usefixtures("handled")
@pytest.mark.parametrize("step", ["probe", "staging file", "staging folder"])
def test_a_signal_as_a_staging_entry_is_made_leaves_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """The signal waits until the entry's removal is set up; then it unwinds and removes it."""
    the_plan = IOPlan()
    the_plan.write(tmp_path / "out.onnx", "output")
    maker = "mkdtemp" if step == "staging folder" else "mkstemp"
    if step != "probe":
        the_plan.check()
    monkeypatch.setattr(plan.tempfile, maker, _signalling(getattr(tempfile, maker), signal.SIGTERM))
    with pytest.raises(interrupts.Terminated):
        if step == "probe":
            the_plan.check()
        elif step == "staging file":
            with the_plan.replace(tmp_path / "out.onnx"):
                pass
        else:
            with the_plan.staging(tmp_path / "out.onnx"):
                pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("handled")
def test_a_signal_in_a_file_s_rename_is_raised_once_the_file_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM during the rename that puts a single-file output (a report, a checkpoint) in
    place: it was raised the moment the rename returned, before the file was recorded, and the
    stop line said nothing of it though it was replaced."""
    target = tmp_path / "report.json"
    target.write_text("old")
    the_plan = IOPlan()
    the_plan.write(target, "json_path")
    the_plan.check()
    monkeypatch.setattr(plan.os, "replace", _signalling(plan.os.replace, signal.SIGTERM))
    with pytest.raises(interrupts.Terminated), the_plan.replace(target) as staged:
        staged.write_text("new")
    assert target.read_text() == "new"
    assert interrupts.changes() == ([str(target)], [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


@pytest.mark.usefixtures("handled")
def test_a_second_signal_does_not_cut_the_removal_of_staging_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    the_plan = IOPlan()
    the_plan.write(tmp_path / "out.onnx", "output")
    the_plan.check()
    monkeypatch.setattr(
        plan.shutil, "rmtree", _signalling(shutil.rmtree, signal.SIGINT, before=True), raising=True
    )
    with pytest.raises(interrupts.Terminated), the_plan.staging(tmp_path / "out.onnx") as folder:
        (folder / "out.onnx").write_bytes(b"half")
        signal.raise_signal(signal.SIGTERM)
    assert list(tmp_path.iterdir()) == []
    assert interrupts.stopped_by() == signal.SIGTERM  # the first decides the exit status


@pytest.mark.usefixtures("handled")
def test_signals_that_come_while_a_stop_unwinds_are_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hundreds of SIGTERMs in a burst (t309): one raised inside a context manager's exit,
    before the staging's removal was held, cut that removal short (a 385 MiB staging folder
    left, chained tracebacks, exit 1). Once a stop unwinds, later ones are dropped: each exit
    on the way out runs to its end, and the staging is removed."""
    the_plan = IOPlan()
    the_plan.write(tmp_path / "out.onnx", "output")
    the_plan.check()
    exits: list[str] = []

    @contextlib.contextmanager
    def exiting(name: str) -> Iterator[None]:
        try:
            yield
        finally:
            signal.raise_signal(signal.SIGINT)  # into the exit, before anything is held
            signal.raise_signal(signal.SIGTERM)
            exits.append(name)

    with (
        pytest.raises(interrupts.Terminated) as stopped,
        the_plan.staging(tmp_path / "out.onnx") as folder,
        exiting("a"),
        exiting("b"),
    ):
        (folder / "out.onnx").write_bytes(b"half")
        signal.raise_signal(signal.SIGTERM)
    assert exits == ["b", "a"] and list(tmp_path.iterdir()) == []
    assert stopped.value.__context__ is None  # no second stop raised into the first
    assert interrupts.stopped_by() == signal.SIGTERM


# The program, sent SIGINT the moment it starts importing the command line's modules (before
# wnpass.cli.main could install a handler): an import hook raises the signal.
_EARLY_CLI = """
import signal, sys
class Hook:
    def find_spec(self, name, path=None, target=None):
        if name == "wnpass.cli":
            signal.raise_signal(signal.SIGINT)
        return None
sys.meta_path.insert(0, Hook())
sys.argv = ["wnpass", "--version"]
from wnpass.program import run
run()
"""


def test_importing_the_program_runs_no_module_but_signal() -> None:
    """The console script imports ``wnpass.program`` before any handler is installed: a
    signal then was a traceback (wnpass/__init__.py imported typing and wnpass.errors, the
    program wnpass.interrupts and more). Only the package, the program and ``signal`` load."""
    code = (
        "import sys; before = set(sys.modules); import wnpass.program; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert set(result.stdout.split()) <= {"wnpass", "wnpass.program", "signal"}, result.stdout


# The program, sent SIGINT as it imports any module but itself (the package is imported
# already): a module imported before its handlers are installed meets the signal with a
# traceback.
_FIRST_IMPORT_CLI = """
import signal, sys
class Hook:
    def find_spec(self, name, path=None, target=None):
        if name != "wnpass.program":
            signal.raise_signal(signal.SIGINT)
        return None
sys.argv = ["wnpass", "--version"]
import wnpass
sys.meta_path.insert(0, Hook())
from wnpass.program import run
run()
"""


@pytest.mark.parametrize("code", [_EARLY_CLI, _FIRST_IMPORT_CLI], ids=["cli", "first-import"])
def test_a_signal_while_the_program_imports_is_one_line_and_exit_130(code: str) -> None:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 128 + signal.SIGINT, result.stderr
    assert result.stderr == "wnpass: interrupted; nothing more was written\n"
    assert result.stdout == ""  # it stopped before printing the version


def test_the_program_and_python_dash_m_run_through_wnpass_program() -> None:
    import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    scripts = tomllib.loads(pyproject.read_text())["project"]["scripts"]
    assert scripts == {"wnpass": "wnpass.program:run"}
    main_py = Path(interrupts.__file__).with_name("__main__.py").read_text()
    assert "from wnpass.program import run" in main_py


def test_a_signal_the_process_ignores_stays_ignored() -> None:
    """A shell script's background job starts with SIGINT ignored: Python leaves it so, and
    so must wnpass (its handlers made a Ctrl-C meant for the script's caller stop the job)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts.handled(_on_stop):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # handled
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_program_started_with_sigint_ignored_runs_through_it() -> None:
    code = "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n" + _FIRST_IMPORT_CLI
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("wnpass ")  # the version, printed after every import


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_while_the_model_s_code_runs_ends_with_the_signal_s_code(
    tmp_path: Path, signum: int
) -> None:
    """wnpass's own end of the process (``os._exit(128 + signal)``) ran on the thread running
    the model's code, where ``os._exit`` raises: the command then said the model called
    os._exit(143), exit 2 (t205)."""
    model_py = tmp_path / "slow.py"
    model_py.write_text(
        "import pathlib, time\n"
        f"pathlib.Path({str(tmp_path / 'started')!r}).touch()\n"
        "time.sleep(60)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "wnpass", "export", str(model_py), "-o", str(tmp_path / "m.onnx")],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        process.send_signal(signum)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signum
    assert "os._exit" not in err and err.count("\n") == 1


def test_a_signal_while_the_stop_line_is_said_is_dropped() -> None:
    """A second SIGTERM while the first's stop line was being said said it again (t309)."""
    said: list[int] = []

    def on_stop(signum: int) -> NoReturn:
        said.append(signum)
        signal.raise_signal(signal.SIGTERM)  # while it says its line
        raise _Stopped(signum)

    with interrupts.handled(on_stop), pytest.raises(_Stopped):
        signal.raise_signal(signal.SIGINT)
    assert said == [signal.SIGINT]


@pytest.mark.usefixtures("handled")
def test_a_stop_past_the_first_one_s_burst_is_raised_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop the model's code swallowed (a bare ``except:`` in its forward) made every later
    one dropped: the run published its output and exited 0 under repeated SIGTERMs (t313).
    Only the signals of one burst with it are dropped."""
    monkeypatch.setattr(interrupts, "BURST_S", 0.05)
    the_plan = IOPlan()
    the_plan.write(tmp_path / "out.onnx", "output")
    the_plan.check()
    with pytest.raises(interrupts.Terminated), the_plan.staging(tmp_path / "out.onnx"):
        with contextlib.suppress(interrupts.Terminated):  # the model's code swallows it
            signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)  # one burst with it: dropped
        time.sleep(0.1)
        signal.raise_signal(signal.SIGTERM)  # past it: raised
    assert list(tmp_path.iterdir()) == []


def test_a_second_signal_as_the_process_ends_says_nothing_more(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In the program's first milliseconds (its early handler), SIGINT then a burst of
    SIGTERMs exited 143 in about 2% of runs: the second ended the process while the first
    said its line (t313). The first signal's code, its line alone."""
    from wnpass import program

    codes: list[int] = []

    def exit_(code: int) -> NoReturn:
        codes.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(program, "_exit", exit_)
    monkeypatch.setattr(program, "_ending", [])
    for signum, line in ((signal.SIGINT, "first"), (signal.SIGTERM, "second")):
        with pytest.raises(SystemExit):
            program._end(signum, line)
    assert codes == [130, 130] and capsys.readouterr().err == "first\n"


@pytest.mark.usefixtures("handled")
def test_a_stop_past_the_burst_keeps_the_first_s_status_and_is_said_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM, then SIGINT past the burst while the first still unwinds (a model's slow
    ``finally:``): the run exited 130, not 143; and a signal after the command line said the
    stop, past the burst, said it again (t314)."""
    monkeypatch.setattr(interrupts, "BURST_S", 0.0)
    the_plan = IOPlan()
    the_plan.write(tmp_path / "out.onnx", "output")
    the_plan.check()
    with pytest.raises(KeyboardInterrupt), the_plan.staging(tmp_path / "out.onnx"):
        try:
            signal.raise_signal(signal.SIGTERM)
        finally:  # the model's slow cleanup, past the burst
            signal.raise_signal(signal.SIGINT)
    assert interrupts.stopped_by() == signal.SIGTERM
    interrupts.saying_stop()
    signal.raise_signal(signal.SIGTERM)  # dropped: no _Stopped, no second line
    interrupts.forget_stop()
    with pytest.raises(_Stopped):  # a later command's stop
        signal.raise_signal(signal.SIGTERM)
