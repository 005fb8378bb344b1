"""Atomic output: write to a temporary file beside the target, then rename.

A run killed mid-write leaves the previous file intact and no partial file under
the target's name.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import IcvError, OutputError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: (st_dev, st_ino) of the files a run reads -> the name given: no output may replace one.
_INPUTS: dict[tuple[int, int], str] = {}
#: Longest file name most file systems take, bytes.
NAME_MAX = 255


def protect_inputs(*paths: str | os.PathLike[str] | None) -> None:
    """Record files a run reads, so that no output of the run overwrites one.

    Identity is the file itself (device and inode, as :func:`os.path.samefile`),
    so another spelling of the path, a symlink or a hard link is caught too.
    """
    for p in paths:
        if p is None:
            continue
        try:
            st = os.stat(p)
        except (OSError, ValueError):
            continue
        if os.path.isfile(p):
            _INPUTS[(st.st_dev, st.st_ino)] = str(p)


def clear_protected_inputs() -> None:
    """Forget the recorded inputs (a new command starts)."""
    _INPUTS.clear()


def check_not_an_input(target: str | os.PathLike[str]) -> None:
    """Raise OutputError if ``target`` is one of the files given to :func:`protect_inputs`."""
    try:
        st = os.stat(target)
    except (OSError, ValueError):
        return
    name = _INPUTS.get((st.st_dev, st.st_ino))
    if name is not None:
        raise OutputError(f"the output {target} is the input {name}: writing it would destroy the input",
                          hint="choose another output path")


def _temp_stem(stem: str, sfx: str) -> str:
    """The stem used in a temporary name, shortened (with a hash) when the name would pass 255 bytes."""
    room = NAME_MAX - len(f"..{os.getpid()}.12345678.tmp{sfx}".encode())
    if len(stem.encode("utf-8", "surrogateescape")) <= room:
        return stem
    import hashlib

    digest = hashlib.sha256(stem.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    cut = stem.encode("utf-8", "surrogateescape")[: max(1, room - 13)].decode("utf-8", "ignore")
    return f"{cut}~{digest}"


def _temp_beside(target: Path, suffix: str | None) -> Path:
    """Create an empty hidden temporary file beside ``target``: ``.STEM.PID.RANDOM.tmpSUFFIX``."""
    parent = target.parent if str(target.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create folder {parent}: {e.strerror}", hint="choose another output path") from e
    sfx = suffix if suffix is not None else "".join(target.suffixes)
    if len(sfx.encode("utf-8", "surrogateescape")) > 32:  # a name of many dots: keep its last suffix only
        sfx = target.suffix if len(target.suffix.encode("utf-8", "surrogateescape")) <= 32 else ""
    stem = _temp_stem(target.stem, sfx)
    remove_stale_temps(parent, stem)
    # the writer's pid in the name lets a later run tell a killed run's leftover from a live write
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.{os.getpid()}.", suffix=f".tmp{sfx}", dir=parent)
    except OSError as e:
        raise OutputError(f"cannot write in {parent} ({e.strerror or e})", hint="choose another output path") from e
    try:  # mkstemp makes 0600; the output gets the mode a plain open() would give it
        if hasattr(os, "fchmod"):  # not on Windows before Python 3.13 (where files have no such modes)
            os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    return Path(tmp_name)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    The temporary name keeps the target's suffix (some writers pick the format
    from it) and starts with ``.`` so that half-written files are hidden.
    """
    with atomic_paths(target, suffixes=[suffix]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(*targets: str | os.PathLike[str],
                 suffixes: list[str | None] | None = None) -> Iterator[list[Path]]:
    """Temporary paths for several files that change together (data + sidecar).

    On success they are renamed onto their targets in the order given, with
    SIGINT/SIGTERM held back until every rename is done, so Ctrl-C never
    leaves a new sidecar beside old data. (SIGKILL cannot be held back; a
    sidecar's checksum then shows that the pair does not match.) On any
    error or interrupt the temporary files are removed.
    """
    # write through a symlink to its target (the link stays a link); devices and pipes
    # (-o /dev/stdout) cannot be replaced by a rename: they are written directly
    direct = [Path(t).exists() and not Path(t).is_file() and not Path(t).is_dir() for t in targets]
    paths = [Path(t) if d or not Path(t).is_symlink() else Path(os.path.realpath(t))
             for t, d in zip(targets, direct)]
    sfx = suffixes or [None] * len(paths)
    for t in targets:  # as given (a symlink to an input names the link)
        check_not_an_input(Path(t))
    tmps: list[Path] = []
    made: list[Path] = []
    try:
        with _signals_held():  # a Ctrl-C between mkstemp and the list would leak a temporary file
            for t, x, d in zip(paths, sfx, direct):
                if d:
                    tmps.append(t)
                else:
                    made.append(_temp_beside(t, x))
                    tmps.append(made[-1])
        yield tmps
        with _signals_held():
            for tmp, t, d in zip(tmps, paths, direct):
                if not d:
                    os.replace(tmp, t)
    except IcvError:  # CacheError and OutputError are OSErrors too: never wrapped twice
        _remove(made)
        raise
    except OSError as e:
        _remove(made)
        raise OutputError(f"cannot write {e.filename or paths[0]} ({e.strerror or e})",
                          hint="choose another output path") from e
    except BaseException:
        _remove(made)
        raise


def _remove(paths: list[Path]) -> None:
    for tmp in paths:
        with contextlib.suppress(OSError):
            tmp.unlink()


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back: they take effect when the block ends.

    A Python-level handler records them (Python runs handlers in the main
    thread only, so this holds whichever thread the kernel delivers to, which
    a signal mask of the main thread would not), and the previous handler is
    then called, or the signal sent again for the default action.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    sigs = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if got:
            s = got[0]
            h = old[s]
            if callable(h):
                h(s, None)  # Python's default SIGINT handler raises KeyboardInterrupt here
            elif h == signal.SIG_DFL:
                os.kill(os.getpid(), s)


def _pid_alive(pid: int) -> bool:
    # psutil asks without signalling: on Windows os.kill(pid, 0) would terminate the process
    import psutil

    return bool(psutil.pid_exists(pid))


_TEMP_NAME = re.compile(r"^\.(?P<stem>.*)\.(?P<pid>\d+)\.[a-z0-9_]{8}\.tmp")


def remove_stale_temps(folder: str | os.PathLike[str], stem: str | None = None) -> list[Path]:
    """Remove temporary files that killed runs left in ``folder``; returns what was removed.

    Only files named ``.STEM.PID.RANDOM.tmp*`` (as :func:`atomic_path` makes
    them) whose writer process ``PID`` no longer exists are removed, so a write
    in progress in another process is never disturbed. ``stem`` limits the
    sweep to one target. Temporary files are never read as data.
    """
    folder = Path(folder)
    pattern = f".{glob.escape(stem)}.*.tmp*" if stem is not None else ".*.tmp*"
    removed: list[Path] = []
    for p in folder.glob(pattern):
        m = _TEMP_NAME.match(p.name)
        if m is None or (stem is not None and m["stem"] != stem) or _pid_alive(int(m["pid"])):
            continue
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file for writing; it replaces ``target`` when the block ends cleanly."""
    if "b" in mode:
        encoding = None
    with atomic_path(target) as tmp:
        with open(tmp, mode, encoding=encoding, newline="" if "b" not in mode else None) as fh:
            yield fh
            fh.flush()
            if os.path.isfile(tmp):  # pipes and terminals (-o /dev/stdout) cannot be synced
                os.fsync(fh.fileno())


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``target`` atomically (UTF-8)."""
    with atomic_open(target, "w") as fh:
        fh.write(text)
    return Path(target)
