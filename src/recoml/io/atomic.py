"""One way to write a file or directory that is never seen half-written, and one way to clean up.

:func:`atomic_output` reserves a temporary name beside the target, created exclusively (``O_EXCL``,
``O_NOFOLLOW``: a planted file or symlink is never written through) with an unpredictable part, yields it
to the writer, then fsyncs and renames it over the target. Any failure removes it and leaves the target
as it was. A write error of the operating system (disk full, file-size limit) becomes one sentence, a
:class:`~recoml.errors.DataError` naming the target.

Every temporary name is ``.<target name>.recoml-tmp-<pid>-<random><suffix>`` (suffix: the target's);
:func:`remove_stale_temporaries` knows that scheme and deletes those of processes that no longer run
(a killed run of any entry point).
"""

from __future__ import annotations

import errno
import glob
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from recoml.errors import DataError

log = logging.getLogger(__name__)

MARK = ".recoml-tmp-"
_TEMP_RE = re.compile(re.escape(MARK) + r"(?P<pid>\d+)-[0-9a-f]{16}")


def temp_path(target: str | os.PathLike, suffix: str | None = None) -> Path:
    """A fresh temporary name for ``target`` in its directory (not created: see :func:`atomic_output`).
    It ends with ``suffix``, by default the target's own (writers that choose a format by it still do)."""
    target = Path(target)
    suffix = target.suffix if suffix is None else suffix
    return target.with_name(f".{target.name}{MARK}{os.getpid()}-{secrets.token_hex(8)}{suffix}")


def reserve(target: str | os.PathLike, suffix: str | None = None, directory: bool = False) -> Path:
    """Create a temporary file (or directory) for ``target`` exclusively; never follows a symlink."""
    for _ in range(16):
        tmp = temp_path(target, suffix)
        try:
            if directory:
                os.mkdir(tmp, 0o755)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
            return tmp
        except FileExistsError:
            continue
    raise DataError(f"{target}: could not reserve a temporary name beside it")  # pragma: no cover


@contextmanager
def atomic_output(
    target: str | os.PathLike, *, suffix: str | None = None, overwrite: bool = True
) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``target`` (fsynced), on failure it is removed.

    ``suffix``: the temporary's extension (default: the target's, which some writers read).
    ``overwrite=False``: refuse when ``target`` appeared
    meanwhile.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = reserve(target, suffix)
    try:
        yield tmp
        if not tmp.is_file():
            raise DataError(f"{target}: the writer left no output at its temporary name {tmp.name}")
        _fsync_file(tmp)
        if target.exists() and not overwrite:
            raise DataError(f"{target} appeared while writing; set overwrite=true to replace it")
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except OSError as err:
        remove_path(tmp)
        raise write_error(target, err) from err
    except BaseException:
        remove_path(tmp)
        raise


def write_error(target: str | os.PathLike, err: BaseException) -> DataError:
    """One sentence for an operating-system write failure (disk full, file-size limit, permissions)."""
    code = getattr(err, "errno", None)
    reason = {
        errno.ENOSPC: "the disk is full",
        errno.EFBIG: "the file-size limit was reached",
        errno.EDQUOT: "the disk quota is exhausted",
        errno.EACCES: "permission denied",
        errno.EROFS: "the file system is read-only",
    }.get(code or -1, str(err).splitlines()[0] if str(err) else type(err).__name__)
    return DataError(f"{target}: writing failed ({reason}); nothing was written under that name")


def write_text(target: str | os.PathLike, text: str) -> Path:
    """``text`` under ``target``, atomically."""
    with atomic_output(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def remove_path(path: Path) -> None:
    """Remove a file or directory if present; never raises (a cleanup step)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:  # pragma: no cover - e.g. permissions changed underneath
        log.warning("could not remove temporary %s: %s", path, exc)


def remove_stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """Delete the temporaries of ``target`` left by processes that no longer run (every write calls this
    first), so that a restarted run starts clean and never mistakes a half-written file for output."""
    target = Path(target)
    removed: list[Path] = []
    if not target.parent.is_dir():
        return removed
    for path in target.parent.glob(f".{glob.escape(target.name)}{MARK}*"):
        m = _TEMP_RE.search(path.name)
        if m and int(m.group("pid")) != os.getpid() and not psutil.pid_exists(int(m.group("pid"))):
            remove_path(path)
            removed.append(path)
    if removed:
        log.warning("removed %d leftover temporary file(s) of an interrupted run: %s", len(removed), removed)
    return removed


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)
