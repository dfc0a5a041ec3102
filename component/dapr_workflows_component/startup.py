"""The start of `dapr-workflows serve`: its addresses are checked before anything is created, and
what a start that fails created is removed again.

The addresses are probed with a bind of our own, because gRPC's failed bind logs its own error
lines (C-core's `add_port.cc`) before ours and does not say why it failed.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path

import grpc

from .http_api import parse_address
from .store import Store
from .store.sqlite import sqlite_files

log = logging.getLogger("dapr_workflows")

# The flags of the TCP addresses `serve` listens on.
LISTEN_FLAGS = ("engine-address", "durabletask-address", "http-address")
# Who else usually listens on an address of these flags, said when the address is taken.
_LIKELY_HOLDERS = {
    "durabletask-address": "another dapr-workflows serve, or a durabletask sidecar?",
}
_DEFAULT_HOLDER = "another dapr-workflows serve?"


def _bind_error(address: str) -> OSError | None:
    """The error a listener on `address` would get now; None when the address is free (or is not
    HOST:PORT, which the server's own bind reports)."""
    try:
        host, port = parse_address(address)
    except ValueError:
        return None
    if port == 0:
        return None
    try:
        candidates = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return None
    for family, kind, proto, _, sockaddr in candidates:
        with socket.socket(family, kind, proto) as probe:
            # As gRPC and aiohttp bind: connections of an earlier process in TIME_WAIT do not count.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
            except OSError as err:
                return err
    return None


def _listing(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def check_addresses(addresses: Sequence[tuple[str, str]]) -> None:
    """Stops the start with one line when an address cannot be listened on.

    `addresses` are (flag, HOST:PORT) pairs; empty addresses (disabled listeners) are skipped.
    """
    taken: list[tuple[str, str]] = []
    other: list[tuple[str, str, OSError]] = []
    for flag, address in addresses:
        if not address:
            continue
        err = _bind_error(address)
        if err is None:
            continue
        if err.errno == errno.EADDRINUSE:
            taken.append((flag, address))
        else:
            other.append((flag, address, err))
    if taken:
        flags = [f"--{flag}" for flag, _ in taken]
        holder = _LIKELY_HOLDERS.get(taken[0][0], _DEFAULT_HOLDER) if len(taken) == 1 else _DEFAULT_HOLDER
        if len(taken) == 1:
            what = f"{taken[0][1]}: it is already in use ({holder}); choose another address with {flags[0]}"
        else:
            what = (
                f"{_listing([a for _, a in taken])}: they are already in use ({holder}); "
                f"choose other addresses with {_listing(flags)}"
            )
        raise SystemExit(f"dapr-workflows: cannot listen on {what}")
    if other:
        flag, address, err = other[0]
        raise SystemExit(f"dapr-workflows: cannot listen on {address} (--{flag}): {err.strerror or err}")


class Startup:
    """What a start creates, undone when it fails before it is ready: the gRPC servers it started
    are stopped, and a new SQLite store (the database, its `-wal` and `-shm`) and the component
    socket are removed. A store that existed before the start is never touched."""

    def __init__(self, store_url: str) -> None:
        self._store_files: list[Path] = []
        self._paths: list[Path] = []
        self._ready = False
        self.store: Store | None = None
        self.servers: list[grpc.aio.Server] = []
        if store_url.startswith("sqlite://"):
            try:
                files = [Path(name) for name in sqlite_files(store_url)]
            except ValueError:
                files = []  # opening the store reports the URL
            if files and not os.path.lexists(files[0]):
                self._store_files = files

    def creates(self, path: Path) -> None:
        """`path` is removed after a failed start unless it exists now."""
        if not os.path.lexists(path):
            self._paths.append(path)

    def ready(self) -> None:
        """The start has succeeded: from now on nothing is undone."""
        self._ready = True

    async def close(self) -> None:
        if self._ready:
            return
        await asyncio.gather(*(server.stop(None) for server in self.servers))
        for path in self._paths:
            path.unlink(missing_ok=True)
        if self.store is None:
            return  # the store was not opened: its files, if any, are another engine's
        store, self.store = self.store, None
        database = self._store_files[0] if self._store_files else None
        ours = _identity(database) if database is not None else None
        await store.close()
        if database is not None and ours is not None and _remove_store(database, ours):
            log.debug("removed the new store %s: the start failed", database)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _remove_store(database: Path, identity: tuple[int, int]) -> bool:
    """Removes the database this process created, with its -wal and -shm, under the store's own
    lock (an exclusive flock on the file), so that no engine that opened it since loses it."""
    try:
        fd = os.open(database, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # another engine took it since: its store now
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != identity:
            return False
        for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
            path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)
