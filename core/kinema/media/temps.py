"""Temporary files that a killed process cannot leave behind for long.

A clip is written to a temp file and renamed into place, so a failed or
cancelled save leaves nothing. ``kill -9`` runs no cleanup, though, so every
temp is *claimed*: its creator holds an exclusive lock on it for as long as it
writes, and the OS drops the lock when the process dies, however it dies. The
next save into the same folder sweeps every kinema temp whose lock it can take
(``sweep``): those are the leftovers of dead writers, never a live one's.

Temps beside an output are named ``.<name>.<8 hex>.kinema.part`` and are never
playable under that name; the unsigned clip that C2PA signing reads is made in
a private (0700) workspace under the data directory (``workspace``), never beside
the output, and swept the same way. Names that older kinema versions left
(``.<name>.<hex>.unsigned.mp4``, ``….unsigned.mp4.<hex>.part``, ``….signed.part``)
are swept too.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from kinema.home import kinema_home

SUFFIX = ".kinema.part"
_HEX = r"\.[0-9a-f]{8}"
# Ours, and what kinema before the claims left: a whole unsigned clip, its own temp, and a signing temp.
STALE = re.compile(rf"^\..+{_HEX}(\.kinema\.part|\.unsigned\.mp4|\.unsigned\.mp4{_HEX}\.part|\.signed\.part)$")
WORKSPACE_PREFIX = "work-"
LOCK_FILE = ".lock"


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock on ``fd`` without waiting; False if another process holds it."""
    if sys.platform == "win32":  # no fcntl: lock the first byte (Windows also refuses to delete an open file)
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.path.samestat(os.stat(path), os.fstat(fd))
    except OSError:
        return False


def claim(directory: Path, stem: str) -> tuple[Path, int]:
    """Create ``directory/.<stem>.<hex>.kinema.part``, empty and locked; the caller closes the fd when done.

    ``os.open(..., 0o666)`` honours the umask, so the renamed clip gets the usual
    permissions. Raises ``OSError`` as ``os.open`` does.
    """
    for _ in range(8):
        path = directory / f".{stem[:200]}.{secrets.token_hex(4)}{SUFFIX}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        # A sweep may have taken the new file's lock before us and removed it: then it is not ours, try again.
        if _try_lock(fd) and _same_file(path, fd):
            return path, fd
        os.close(fd)
    raise FileExistsError(f"could not create a temporary file in {directory}")


def sweep(directory: Path) -> list[Path]:
    """Remove the kinema temps in ``directory`` that no live process holds; return what was removed."""
    removed: list[Path] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not STALE.match(name):
            continue
        path = directory / name
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            if _try_lock(fd) and _same_file(path, fd):
                os.unlink(path)
                removed.append(path)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def _workspace_root() -> Path:
    root = kinema_home() / "tmp"
    root.mkdir(exist_ok=True)
    with contextlib.suppress(OSError):  # file systems without modes
        os.chmod(root, 0o700)
    return root


def sweep_workspaces(root: Path | None = None) -> list[Path]:
    """Remove the workspaces under ``root`` whose owners died (their lock is free)."""
    root = root or _workspace_root()
    removed: list[Path] = []
    for folder in root.glob(f"{WORKSPACE_PREFIX}*"):
        try:
            fd = os.open(folder / LOCK_FILE, os.O_RDONLY)
        except OSError:
            continue  # no lock yet: being created this instant
        try:
            if _try_lock(fd) and _same_file(folder / LOCK_FILE, fd):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        finally:
            os.close(fd)
    return removed


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    """A private folder under ``kinema_home()/tmp``, held while in use and removed after; dead ones are swept first."""
    root = _workspace_root()
    sweep_workspaces(root)
    while True:
        folder = Path(os.path.realpath(root / f"{WORKSPACE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"))
        folder.mkdir(mode=0o700)
        fd = os.open(folder / LOCK_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
        if _try_lock(fd) and _same_file(folder / LOCK_FILE, fd):
            break
        os.close(fd)  # swept between mkdir and lock: make another
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)
