"""Output folders written as a whole: check first, stage beside, lock, then move into place.

A command that writes results into ``--out DIR`` runs inside :func:`staged_output`:

1. **Checks before any work** (so a refused run costs nothing and changes nothing): ``DIR`` is not an
   existing file, it (or the folder it will be made in) is writable, no name in its path is too long for
   the file system, and no input of the run lives in ``DIR`` where a result would replace or remove it
   (:class:`~avlearn.io.errors.OverwriteInputError`).
2. **A lock**: a second run into the same folder refuses with one line naming the run that holds it. The
   lock is an ``flock`` on a hidden file beside ``DIR``; the kernel drops it when its process dies, so the
   lock of a killed run never blocks the next one.
3. **A private temporary folder** beside ``DIR`` (same file system, so moving it is a rename). The command
   writes its results there. (Inside ``DIR`` instead when ``DIR`` is a mount point or its parent is not
   writable; a symlink ``DIR`` is followed, so the link stays a link.)
4. **Moved into place at the end, as a whole.** ``DIR`` then holds exactly this run's results: the files a
   previous avlearn run wrote there (listed in ``DIR/.avlearn.json``) are replaced or removed, so a folder
   never mixes two runs. Files avlearn did not write are never touched, except one with the very name of
   a new result (the user pointed ``--out`` at it). A new ``DIR`` is the temporary folder renamed; an
   existing one stays the same folder (its permissions, a shell sitting in it, a mount or a symlink stay
   what they are) and gets the results renamed in, all within milliseconds once everything is computed.
   Its record first lists the files of both runs, so a run killed in those milliseconds leaves nothing
   the next run cannot clear. A run that wrote nothing changes nothing.

On any error, KeyboardInterrupt included, the temporary folder is removed and ``DIR`` is left exactly as it
was (folders created for it on the way are removed again); what a killed run left behind is removed by the
next run into ``DIR``. A full disk, a folder the user cannot write and a too-long name become one
:class:`OutputError` line instead of a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from avlearn.io.errors import MediaError, OverwriteInputError

PathLike = str | os.PathLike

MARKER = ".avlearn.json"  # in every output folder: which command wrote which files, from which inputs

# mkdtemp and mkstemp make folders and files for their owner only; results get the usual permissions
_UMASK = os.umask(0)
os.umask(_UMASK)

# staging folders this process is writing into right now: a nested staged_output on one writes straight in
_ACTIVE: set[Path] = set()


class OutputError(MediaError):
    """The output folder cannot be used: an existing file, not writable, a full disk, a too-long name, or
    another run writing into it."""


def _name_max(folder: Path) -> int:
    """Longest file name (bytes) the file system under ``folder`` (or its nearest existing parent) allows."""
    while not os.path.exists(folder) and folder != folder.parent:
        folder = folder.parent
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _nearest_existing(path: Path) -> Path:
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


_ERRNO_REASONS = {
    errno.ENOSPC: "the disk is full (no space left on device); free some space or choose another --out",
    errno.EDQUOT: "the disk quota is exhausted; free some space or choose another --out",
    errno.EACCES: "permission denied: you cannot write there; choose a folder you can write to as --out",
    errno.EPERM: "operation not permitted there; choose a folder you can write to as --out",
    errno.EROFS: "the file system is read-only; choose a folder you can write to as --out",
    errno.ENAMETOOLONG: "a name in the path is too long for the file system; choose a shorter --out",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another --out",
    errno.EEXIST: "exists and is not a folder; choose a folder for --out",
}


def output_error(err: OSError, out: PathLike) -> OutputError:
    """One-line :class:`OutputError` for an OSError met while writing into ``out``."""
    reason = _ERRNO_REASONS.get(err.errno, f"cannot write there ({err.strerror or err}); choose another --out")
    return OutputError(out, reason)


def _is_output_oserror(err: BaseException, roots: Sequence[Path]) -> bool:
    """True for an OSError about writing results (its file is under one of ``roots``, or it names no file
    and is a full disk): those become one line; others (e.g. an unreadable input) pass through."""
    if not isinstance(err, OSError) or err.errno not in _ERRNO_REASONS:
        return False
    name = getattr(err, "filename", None)
    if not name:
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    name = os.path.abspath(os.fsdecode(name))
    return any(name == str(r) or name.startswith(str(r) + os.sep) for r in roots)


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _file_id(path: PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


def _read_marker(out: Path) -> list[str]:
    """Names of the files the previous avlearn run wrote into ``out`` (none if no or a damaged marker)."""
    try:
        doc = json.loads((out / MARKER).read_text())
        files = doc["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [f for f in files if isinstance(f, str) and f and "/" not in f and f not in (".", "..")]


def _short(name: str, tag: str) -> str:
    """A hidden name beside ``name`` that fits any file system (a digest when ``name`` is long)."""
    if len(os.fsencode(name)) <= 180:
        return f".{name}.{tag}"
    return f".avlearn-{hashlib.sha1(os.fsencode(name)).hexdigest()[:16]}.{tag}"


def check_output(out: PathLike, inputs: Sequence[PathLike | None] = (), outputs: Sequence[str] = ()) -> Path:
    """Every check that can be made before a run starts; returns ``out`` as an absolute path.

    Args:
        out: the output folder (may not exist yet).
        inputs: files the run reads (``None`` entries are ignored).
        outputs: glob patterns of the names the run writes (``"speaker_*.wav"``).

    Raises:
        OutputError: ``out`` is an existing non-folder, is not writable (or the folder it would be made in
            is not), or a name in its path is too long.
        OverwriteInputError: an input is a file in ``out`` that this run's results would replace or remove.
    """
    out = Path(os.path.abspath(out))
    if os.path.islink(out) and os.path.isdir(out):  # stage beside the real folder (same file system)
        out = Path(os.path.realpath(out))
    limit = _name_max(out.parent)
    for part in out.parts:
        if len(os.fsencode(part)) > limit:
            raise OutputError(
                out,
                f"a name in the path is {len(os.fsencode(part))} bytes long and the file system allows "
                f"{limit}; choose a shorter --out",
            )
    if len(os.fsencode(str(out))) > 4000:
        raise OutputError(out, "the path is too long for the file system; choose a shorter --out")
    if os.path.lexists(out) and not out.is_dir():
        raise OutputError(out, "exists and is not a folder; choose a folder for --out")
    parent = _nearest_existing(out.parent)
    if not parent.is_dir():
        raise OutputError(out, f"{parent} is a file, not a folder; choose another --out")
    for folder in (out,) if out.is_dir() else (parent,):  # an existing out may stage inside itself
        if not os.access(folder, os.W_OK | os.X_OK):
            reason = "the file system is read-only" if _read_only(folder) else f"you cannot write into {folder}"
            raise OutputError(out, f"{reason}; choose a folder you can write to as --out")
    if out.is_dir():
        ids = {}
        for p in inputs:
            key = _file_id(p) if p is not None else None
            if key is not None:
                ids[key] = p
        if ids:
            doomed = set(_read_marker(out))
            with contextlib.suppress(OSError):
                doomed |= {n for n in os.listdir(out) if any(fnmatch.fnmatch(n, pat) for pat in outputs)}
            for name in sorted(doomed):
                key = _file_id(out / name)
                if key in ids:
                    raise OverwriteInputError(
                        ids[key],
                        f"is in --out {out}, where this run's results would replace it; "
                        "choose another --out (nothing was written)",
                    )
    return out


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Holds an exclusive lock on writing into ``out`` (a hidden file beside it, or in it when staging
    happens inside) for the block.

    Raises:
        OutputError: another process (or another block of this one) holds it.
    """
    path = out / ".avlearn-lock" if _stage_inside(out) else out.parent / _short(out.name, "avlearn-lock")
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise output_error(err, out) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise output_error(err, out) from None
            try:
                pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            finally:
                os.close(fd)
            raise OutputError(
                out,
                f"another avlearn run (pid {pid}) is writing into this folder; wait for it or choose another --out",
            ) from None
        # the holder before us may have removed the file after we opened it: lock the file that is there
        if _file_id(path) == (os.fstat(fd).st_dev, os.fstat(fd).st_ino):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _stage_inside(out: Path) -> bool:
    """Stage inside an existing ``out`` rather than beside it: when it is a mount point (or on another file
    system than its parent), or its parent is not writable. The results are then moved in file by file."""
    if not out.is_dir():
        return False
    try:
        other_fs = os.stat(out).st_dev != os.stat(out.parent).st_dev
    except OSError:
        other_fs = True
    return other_fs or os.path.ismount(out) or not os.access(out.parent, os.W_OK | os.X_OK)


def _remove_leftovers(out: Path, base: Path) -> None:
    """Removes the staging folders a killed run into ``out`` left in ``base`` (safe: we hold the lock, and
    every run into ``out`` does while its folders exist)."""
    prefix = _short(out.name, "avlearn-tmp-")
    with contextlib.suppress(OSError):
        for entry in os.scandir(base):
            if entry.name.startswith(prefix) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)


def _make_parents(folder: Path) -> list[Path]:
    """Creates ``folder`` and its missing parents; returns the folders created (deepest last)."""
    made = []
    for p in reversed([folder, *folder.parents]):
        if not os.path.lexists(p):
            os.mkdir(p)
            made.append(p)
    return made


def _commit(tmp: Path, out: Path, inputs: Sequence[PathLike | None], command: str) -> None:
    """Moves the results in ``tmp`` into ``out`` as a whole (see the module docstring)."""
    new = sorted(n for n in os.listdir(tmp) if n != MARKER)
    if not new:  # a run that wrote nothing replaces nothing
        return
    doc = {
        "command": command,
        "inputs": [os.path.abspath(p) for p in inputs if p is not None],
        "files": new,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (tmp / MARKER).write_text(json.dumps(doc, indent=1) + "\n")
    if not os.path.lexists(out):
        os.rename(tmp, out)
        return
    previous = set(_read_marker(out))
    ids = {_file_id(p) for p in inputs if p is not None} - {None}
    for name in sorted(previous | set(new)):  # last safety net: never replace or remove an input
        if _file_id(out / name) in ids:
            raise OverwriteInputError(out / name, "is an input of this run; choose another --out")
    for name in new:  # a rename onto a folder fails: find out before the first result moves
        if (out / name).is_dir() and not (out / name).is_symlink():
            reason = "is a folder where a result of this run goes; move it or choose another --out"
            raise OutputError(out / name, reason)
    # first the record lists both runs' files: a run killed while moving leaves nothing the next cannot clear
    moving = tmp / f"{MARKER}.moving"
    moving.write_text(json.dumps({**doc, "files": sorted(previous | set(new)), "finished": None}) + "\n")
    os.replace(moving, out / MARKER)
    for name in new:
        os.replace(tmp / name, out / name)
    for name in sorted(previous - set(new)):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.unlink(out / name)
    os.replace(tmp / MARKER, out / MARKER)


@contextlib.contextmanager
def locked_output(out: PathLike, inputs: Sequence[PathLike | None] = ()) -> Iterator[Path]:
    """Checks and locks ``out`` like :func:`staged_output`, creates it, and yields it to write into directly.

    For outputs that grow in place and must keep what is there (``avlearn synth`` adds clips to a data
    set): no staging, but an unusable ``out`` is refused before any work and two runs never write at once.
    """
    out = check_output(out, inputs)
    try:
        _make_parents(out.parent)
    except OSError as err:
        raise output_error(err, out) from None
    with output_lock(out):
        try:
            out.mkdir(exist_ok=True)
            yield out
        except OSError as err:
            if _is_output_oserror(err, [out]):
                raise output_error(err, out) from err
            raise


@contextlib.contextmanager
def staged_output(
    out: PathLike,
    inputs: Sequence[PathLike | None] = (),
    outputs: Sequence[str] = (),
    command: str = "avlearn",
) -> Iterator[Path]:
    """Yields a private temporary folder to write a run's results into; moves them into ``out`` at the end.

    See the module docstring for what is checked, locked, kept and replaced.

    Args:
        out: the output folder (created with its parents if missing).
        inputs: the files the run reads: never replaced or removed.
        outputs: glob patterns of the result names, for the check against ``inputs`` before the run.
        command: recorded in ``out/.avlearn.json``.

    Raises:
        OutputError: an unusable ``out`` (existing file, not writable, full disk, too-long name, locked).
        OverwriteInputError: an input lives where a result would land.
    """
    if Path(os.path.abspath(out)) in _ACTIVE:  # already a staging folder of this process: write straight in
        yield Path(out)
        return
    out = check_output(out, inputs, outputs)
    made: list[Path] = []
    roots = [out]
    try:
        try:
            made = _make_parents(out.parent)
        except OSError as err:
            raise output_error(err, out) from None
        with output_lock(out):
            base = out if _stage_inside(out) else out.parent
            _remove_leftovers(out, base)
            try:
                tmp = Path(tempfile.mkdtemp(prefix=_short(out.name, "avlearn-tmp-"), dir=base))
                os.chmod(tmp, 0o777 & ~_UMASK)
            except OSError as err:
                raise output_error(err, out) from None
            roots.append(tmp)
            _ACTIVE.add(tmp)
            try:
                yield tmp
                try:
                    _commit(tmp, out, inputs, command)
                except OSError as err:
                    raise output_error(err, out) from err
            finally:
                _ACTIVE.discard(tmp)
                shutil.rmtree(tmp, ignore_errors=True)
    except BaseException as err:
        for folder in reversed(made):  # folders created for out on the way, if still empty
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        if _is_output_oserror(err, roots):
            raise output_error(err, out) from err
        raise
