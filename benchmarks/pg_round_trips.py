"""A TCP relay between an engine and PostgreSQL that counts the engine's round trips.

A client waits for the server once per Sync message (the end of an extended-protocol batch: one
pipeline) and once per simple Query; the relay reads the client's side of the protocol and counts
both. The first messages of a connection carry no type byte (SSL or GSS encryption requests, then
the startup message); the benchmark's server refuses encryption, so the rest is plain.
"""

from __future__ import annotations

import socket
import struct
import threading
from urllib.parse import urlsplit, urlunsplit

# The codes of the untyped requests a client may send before its startup message.
_ENCRYPTION_REQUESTS = (80877103, 80877104)  # SSLRequest, GSSENCRequest


class RoundTripRelay:
    """Listens on a free loopback port and relays each connection to the server of `url`."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        assert parts.hostname and parts.port, url
        self._target = (parts.hostname, parts.port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{port}"
        self.url = urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))
        self._lock = threading.Lock()
        self.round_trips = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()
            threading.Thread(target=self._count, args=(client, server), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            sink.close()

    def _count(self, client: socket.socket, server: socket.socket) -> None:
        buffer = b""
        typed = False
        try:
            while data := client.recv(65536):
                server.sendall(data)
                buffer += data
                trips = 0
                while True:
                    if not typed:
                        if len(buffer) < 8:
                            break
                        length, code = struct.unpack("!ii", buffer[:8])
                        if len(buffer) < length:
                            break
                        buffer = buffer[length:]
                        typed = code not in _ENCRYPTION_REQUESTS
                        continue
                    if len(buffer) < 5:
                        break
                    kind = buffer[:1]
                    (length,) = struct.unpack("!i", buffer[1:5])
                    if len(buffer) < 1 + length:
                        break
                    buffer = buffer[1 + length :]
                    if kind in (b"S", b"Q"):
                        trips += 1
                if trips:
                    with self._lock:
                        self.round_trips += trips
        except OSError:
            pass
        finally:
            server.close()

    def close(self) -> None:
        self._listener.close()
