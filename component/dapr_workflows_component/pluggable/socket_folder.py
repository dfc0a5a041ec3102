"""The component socket's folder and file, made safe against other users of the folder.

The folder is often shared (`/tmp/dapr-components-sockets`, a pod's volume). Whoever may rename
entries in it could swap our socket for a symlink while we work on it, so nothing here acts on the
socket by its path: the socket gets its mode from the umask when it is bound, inside a private
folder only this process may change, and is then renamed into place relative to open folder
descriptors. A folder that other users control is refused unless the operator says it may be used.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Who may connect: daprd often runs as another user in another container that shares the folder,
# so the default lets every user connect (as daprd's own sockets do); tighten it to the group or
# the user when daprd runs as one of those.
DEFAULT_SOCKET_MODE = 0o777


class SocketFolderError(RuntimeError):
    """The socket cannot be served safely here; the message says why and what to do."""


def parse_socket_mode(text: str) -> int:
    """An octal mode such as 0777, 0770 or 660."""
    try:
        mode = int(text, 8)
    except ValueError:
        raise ValueError(f"{text!r} is not an octal mode such as 0777 or 0770") from None
    if not 0 <= mode <= 0o777:
        raise ValueError(f"{text!r} is not a mode between 0000 and 0777")
    return mode


def _trusted_owner(uid: int) -> bool:
    return uid in (0, os.geteuid())


def check_folder(folder: Path, allow_foreign: bool) -> None:
    """Refuses a folder (or a symlink to one) that another non-root user owns, or that others may
    write without the sticky bit, unless `allow_foreign`."""
    if allow_foreign:
        return
    hint = "; use a folder of your own, or allow it with --allow-foreign-socket-folder"
    link = os.lstat(folder)
    if stat.S_ISLNK(link.st_mode) and not _trusted_owner(link.st_uid):
        raise SocketFolderError(
            f"the socket folder {folder} is a symlink owned by user {link.st_uid}, who could point it "
            f"elsewhere{hint}"
        )
    st = os.stat(folder)
    if not _trusted_owner(st.st_uid):
        raise SocketFolderError(
            f"the socket folder {folder} is owned by user {st.st_uid}, who could replace the "
            f"component's socket{hint}"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        raise SocketFolderError(
            f"the socket folder {folder} (mode {stat.S_IMODE(st.st_mode):04o}) may be written by other "
            f"users and has no sticky bit, so they could replace the component's socket{hint}"
        )


def socket_in_use(path: Path) -> bool:
    """Whether a process accepts connections on the Unix socket `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@dataclass
class PlacedSocket:
    """The socket file this process put in the folder, known by its inode (not by its path)."""

    folder: Path
    name: str
    device: int
    inode: int

    def remove(self) -> None:
        """Unlinks the socket if the entry is still the one this process made."""
        with _folder_fd(self.folder) as fd:
            try:
                st = os.lstat(self.name, dir_fd=fd)
            except FileNotFoundError:
                return
            if (st.st_dev, st.st_ino) == (self.device, self.inode):
                os.unlink(self.name, dir_fd=fd)


@contextlib.contextmanager
def _folder_fd(folder: Path) -> Iterator[int]:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


def preflight(folder: Path, name: str, allow_foreign: bool) -> None:
    """The checks of `place_socket`, made before anything listens: a refusal then stops nothing."""
    folder.mkdir(parents=True, exist_ok=True)
    check_folder(folder, allow_foreign)
    with _folder_fd(folder) as fd:
        _check_stale(fd, folder, name, probe=False)


def _check_stale(fd: int, folder: Path, name: str, probe: bool = True) -> bool:
    """Whether `folder/name` is there and a stale socket of ours; refuses anything else there (with
    `probe`, also a socket some process serves)."""
    try:
        st = os.lstat(name, dir_fd=fd)
    except FileNotFoundError:
        return False
    path = folder / name
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
        raise SocketFolderError(
            f"{path} exists and is not a socket of this user (uid {os.geteuid()}); it is left alone: "
            "remove it yourself or choose another --socket-name"
        )
    if probe and socket_in_use(path):
        raise SocketFolderError(
            f"another process is serving the component socket {path}; stop it or choose another "
            "--socket-name"
        )
    return True


def place_socket(folder: Path, name: str, mode: int, bind: Callable[[str], None]) -> PlacedSocket:
    """Binds the socket `folder/name` with `mode`: `bind(path)` binds a listener to a path.

    The listener is bound in a private folder inside `folder`, with a umask that gives the mode at
    creation, then renamed into place (replacing only a stale socket of ours).
    """
    with _folder_fd(folder) as fd:
        if _check_stale(fd, folder, name):
            os.unlink(name, dir_fd=fd)
        private = Path(tempfile.mkdtemp(prefix=".bind-", dir=folder))  # mode 0700, ours
        try:
            with _folder_fd(private) as private_fd:
                with _umask(0o777 & ~mode):
                    bind(str(private / name))
                st = os.lstat(name, dir_fd=private_fd)
                if not stat.S_ISSOCK(st.st_mode):
                    raise SocketFolderError(f"binding {folder / name} made no socket")
                os.rename(name, name, src_dir_fd=private_fd, dst_dir_fd=fd)
        finally:
            with contextlib.suppress(OSError):
                os.rmdir(private)
    return PlacedSocket(folder, name, st.st_dev, st.st_ino)
