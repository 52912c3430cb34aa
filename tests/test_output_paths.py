"""Places cnnlab cannot write to (a file in the way, /proc, a folder where a file should go) give one
OutputError sentence naming the path, never a traceback, and leave no temporary file behind.

"No permission" is made without chmod (tests may run as root, which chmod does not stop): a path under
an existing file, and /proc, which not even root can create files in.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from cnnlab import atomic, runs
from cnnlab.cli import main
from cnnlab.errors import CnnlabError, OutputError
from cnnlab.explain.figures import new_figure, save_figure

needs_proc = pytest.mark.skipif(not sys.platform.startswith("linux") or not Path("/proc/self").exists(),
                                reason="needs Linux's /proc")
PROC_MISSING = Path("/proc/cnnlab-test")  # its folder cannot be created
PROC = Path("/proc")                       # exists, but no file or folder can be created in it


def _afile(tmp_path: Path) -> Path:
    path = tmp_path / "afile"
    path.write_text("not a folder")
    return path


def _one_sentence(exc: BaseException, *names) -> str:
    message = str(exc)
    assert isinstance(exc, CnnlabError)
    assert "\n" not in message and message.startswith("cannot ")
    for name in names:
        assert str(name) in message, (name, message)
    return message


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def _figure() -> Figure:
    fig = new_figure(2, 1.5)
    fig.add_subplot().plot([0, 1, 4])
    return fig


# ---- runs.new_run_dir -------------------------------------------------------------------------------

def test_new_run_dir_on_a_file_says_it_is_a_file(tmp_path):
    afile = _afile(tmp_path)
    with pytest.raises(OutputError) as info:
        runs.new_run_dir(afile, "seed-cnn", "mnist")
    assert "it is a file" in _one_sentence(info.value, afile)
    assert afile.read_text() == "not a folder"


def test_new_run_dir_under_a_file_names_the_file_in_the_way(tmp_path):
    afile = _afile(tmp_path)
    with pytest.raises(OutputError) as info:
        runs.new_run_dir(afile / "sub" / "runs", "seed-cnn", "mnist")
    assert f"{afile} is a file, not a folder" in _one_sentence(info.value, afile / "sub" / "runs")


@needs_proc
@pytest.mark.parametrize("out", [PROC_MISSING / "runs", PROC], ids=["missing-folder", "existing-folder"])
def test_new_run_dir_where_nothing_can_be_created_gives_the_os_reason(out):
    with pytest.raises(OutputError) as info:
        runs.new_run_dir(out, "seed-cnn", "mnist")
    message = _one_sentence(info.value, out)
    assert "(No such file or directory)" in message or "(Operation not permitted)" in message
    assert "choose" in message


# ---- atomic.make_folder / atomic_write / write_bytes / write_text -----------------------------------

WRITERS = {
    "write_bytes": lambda path: atomic.write_bytes(path, b"data"),
    "write_text": lambda path: atomic.write_text(path, "data"),
    "atomic_write": lambda path: atomic.atomic_write(path, lambda f: f.write(b"data")),
}


@pytest.mark.parametrize("writer", WRITERS, ids=list(WRITERS))
def test_atomic_writes_under_a_file_name_the_file_in_the_way(tmp_path, writer):
    afile = _afile(tmp_path)
    with pytest.raises(OutputError) as info:
        WRITERS[writer](afile / "sub" / "x.json")
    assert f"{afile} is a file, not a folder" in _one_sentence(info.value, afile / "sub")
    with pytest.raises(OutputError) as info:
        WRITERS[writer](afile / "x.json")  # the file itself where the folder should be
    assert "it is a file" in _one_sentence(info.value, afile)
    assert afile.read_text() == "not a folder" and not _temporaries(tmp_path)


@pytest.mark.parametrize("writer", WRITERS, ids=list(WRITERS))
def test_atomic_writes_onto_a_folder_say_it_is_a_folder(tmp_path, writer):
    (tmp_path / "adir").mkdir()
    with pytest.raises(OutputError) as info:
        WRITERS[writer](tmp_path / "adir")
    assert "it is a folder" in _one_sentence(info.value, tmp_path / "adir")
    assert (tmp_path / "adir").is_dir() and not _temporaries(tmp_path)


@needs_proc
@pytest.mark.parametrize("writer", WRITERS, ids=list(WRITERS))
@pytest.mark.parametrize("path", [PROC_MISSING / "x.json", PROC / "cnnlab-test.json"],
                         ids=["missing-folder", "existing-folder"])
def test_atomic_writes_in_proc_give_the_os_reason(writer, path):
    with pytest.raises(OutputError) as info:
        WRITERS[writer](path)
    message = _one_sentence(info.value)
    assert str(path) in message or str(path.parent) in message
    assert "(No such file or directory)" in message and "choose a folder you can write to" in message


def test_make_folder_creates_parents_and_refuses_a_file(tmp_path):
    assert atomic.make_folder(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir()
    atomic.make_folder(tmp_path / "a" / "b")  # already there: fine
    afile = _afile(tmp_path)
    with pytest.raises(OutputError, match="it is a file"):
        atomic.make_folder(afile)
    with pytest.raises(OutputError, match="is a file, not a folder"):
        atomic.make_folder(afile / "c")


def test_a_failed_replace_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    atomic.write_text(path, "old")

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OutputError) as info:
        atomic.write_text(path, "new")
    assert "(Permission denied)" in _one_sentence(info.value, path)
    assert path.read_text() == "old" and not _temporaries(tmp_path)


def test_a_full_disk_while_writing_is_an_output_error_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "checkpoint.pt"

    def write(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError) as info:
        atomic.atomic_write(path, write)
    assert "(No space left on device); free some space" in _one_sentence(info.value, path)
    assert list(tmp_path.iterdir()) == []


def test_other_errors_of_the_writer_are_not_hidden(tmp_path):
    """Only the file-system calls are translated: a writer's own bug still surfaces as itself."""
    def buggy(f):
        f.write(b"partial")
        raise ValueError("a bug in the writer")

    def bad_argument(f):
        raise OSError(errno.EINVAL, "Invalid argument")

    with pytest.raises(ValueError, match="a bug in the writer"):
        atomic.atomic_write(tmp_path / "x.bin", buggy)
    with pytest.raises(OSError) as info:
        atomic.atomic_write(tmp_path / "x.bin", bad_argument)
    assert not isinstance(info.value, OutputError)
    assert list(tmp_path.iterdir()) == []


# ---- explain.figures.save_figure --------------------------------------------------------------------

@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG\r\n\x1a\n"), (".pdf", b"%PDF"), (".PDF", b"%PDF"),
                                           (".svg", b"<?xml")])
def test_save_figure_writes_the_format_the_suffix_names(tmp_path, suffix, magic):
    path = save_figure(_figure(), tmp_path / "sub" / f"plot{suffix}")
    assert path == tmp_path / "sub" / f"plot{suffix}"
    assert path.read_bytes().startswith(magic)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


@pytest.mark.parametrize("name", ["plot.txt", "plot"])
def test_save_figure_refuses_a_suffix_matplotlib_cannot_write(tmp_path, name):
    with pytest.raises(OutputError) as info:
        save_figure(_figure(), tmp_path / "sub" / name)
    message = _one_sentence(info.value, tmp_path / "sub" / name)
    assert ".png" in message and ".pdf" in message and ".svg" in message
    assert not (tmp_path / "sub").exists()  # refused before anything was written


def test_save_figure_under_a_file_or_onto_a_folder(tmp_path):
    afile = _afile(tmp_path)
    with pytest.raises(OutputError, match="is a file, not a folder"):
        save_figure(_figure(), afile / "sub" / "x.png")
    with pytest.raises(OutputError, match="it is a file"):
        save_figure(_figure(), afile / "x.png")
    (tmp_path / "plot.png").mkdir()
    with pytest.raises(OutputError, match="it is a folder"):
        save_figure(_figure(), tmp_path / "plot.png")
    assert not _temporaries(tmp_path)


@needs_proc
@pytest.mark.parametrize("path", [PROC_MISSING / "x.png", PROC / "cnnlab-test.png"],
                         ids=["missing-folder", "existing-folder"])
def test_save_figure_in_proc_gives_the_os_reason(path):
    with pytest.raises(OutputError) as info:
        save_figure(_figure(), path)
    assert "(No such file or directory)" in _one_sentence(info.value)


# ---- atomic writes by two writers at once ----------------------------------------------------------

def test_a_second_writer_leaves_the_first_writers_temporary_alone(tmp_path):
    # the first writer (a thread of this process) is half-way through when another process writes the
    # same file: the second must not remove the first's temporary, so both writes land, last one wins
    target = tmp_path / "model.json"
    started, go, failed = threading.Event(), threading.Event(), []

    def slow(f):
        f.write(b"first")
        started.set()
        go.wait(60)

    def first():
        try:
            atomic.atomic_write(target, slow)
        except Exception as exc:  # reported below, in the test's own thread
            failed.append(exc)

    writer = threading.Thread(target=first)
    writer.start()
    assert started.wait(60)
    code = f"from cnnlab.atomic import write_text; write_text({str(target)!r}, 'second')"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert target.read_text() == "second"
    go.set()
    writer.join(60)
    assert not failed, failed
    assert target.read_text() == "first" and not _temporaries(tmp_path)


def test_abandoned_temporaries_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    host = atomic._writer_tag().rpartition("-")[0]
    names = {"dead": f".x.json.{host}-{dead.stdout.strip()}.abc.tmp",   # its writer has exited
             "old": ".x.json.left_by_an_old_cnnlab.tmp",                # over an hour old
             "alive": f".x.json.{atomic._writer_tag()}.def.tmp",        # this process writing
             "reused-pid": f".x.json.{atomic._writer_tag()}.old.tmp",   # a live pid, but hours old
             "elsewhere": ".x.json.otherhost-1.ghi.tmp",                # another host's, recent
             "other-file": f".x.json.bak.{host}-{dead.stdout.strip()}.jkl.tmp"}  # x.json.bak's
    for name in names.values():
        (tmp_path / name).write_text("partial")
    hour_ago = time.time() - 2 * 3600
    os.utime(tmp_path / names["old"], (hour_ago, hour_ago))
    os.utime(tmp_path / names["reused-pid"], (hour_ago, hour_ago))  # e.g. left before a reboot
    atomic.write_text(tmp_path / "x.json", "{}")
    left = {p.name for p in _temporaries(tmp_path)}
    assert left == {names["alive"], names["elsewhere"], names["other-file"]}


# ---- end to end: `cnnlab train --out ...` ----------------------------------------------------------

def _train_out(kind: str, tmp_path: Path) -> Path:
    if kind == "a-file":
        return _afile(tmp_path)
    if kind == "under-a-file":
        return _afile(tmp_path) / "runs"
    return PROC_MISSING / "runs"


@pytest.mark.parametrize("kind", ["a-file", "under-a-file",
                                  pytest.param("proc", marks=needs_proc)])
def test_cli_train_to_an_unwritable_out_is_one_error_line(tmp_path, capsys, kind):
    out = _train_out(kind, tmp_path)
    code = main(["--quiet", "train", "--epochs", "1", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot "), captured.err
    assert "Traceback" not in captured.err + captured.out
    assert str(out if kind != "under-a-file" else out.parent) in lines[0]


def test_cli_commands_writing_elsewhere_refuse_an_unwritable_place(tmp_path, capsys):
    assert main(["--quiet", "train", "--epochs", "1", "--out", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    for argv in (["ensemble", str(run), str(run), "--out", str(blocker / "ens")],
                 ["lr-find", "--plot", str(tmp_path / "plot.txt")],
                 ["evaluate", str(blocker / "nothing")]):
        capsys.readouterr()
        code = main(["--quiet", *argv])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and "Traceback" not in err, (argv, err)
