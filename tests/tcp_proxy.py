"""A TCP proxy on loopback that a test can cut: every connection reset, new ones refused."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

from tests.smtp_server import free_port


class TcpProxy:
    """`with TcpProxy(("127.0.0.1", 5432)) as proxy:` — connect to proxy.port instead.

    `cut()` resets every open connection (both sides see a RST, as when a database host
    restarts or a firewall drops state) and closes the listening socket, so new connections are
    refused; `restore()` listens again on the same port. `freeze()` makes the store go silent
    instead, as a network partition does: connections stay open and nothing more passes (new ones
    are accepted and hear nothing) until `thaw()`.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._open: set[socket.socket] = set()
        self._reset: set[socket.socket] = set()  # cut: closed without a FIN
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.connections = 0  # accepted so far
        self._frozen = threading.Event()

    def __enter__(self) -> TcpProxy:
        self.restore()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()
        with self._lock:  # nothing may outlive the proxy: a relay stuck in sendall included
            sockets, self._reset = list(self._reset), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            listener.close()
        with self._lock:
            sockets, self._open = list(self._open), set()
            self._reset.update(sockets)
        for sock in sockets:
            try:
                # Linger 0: the close that follows sends a RST; SHUT_RD wakes the relaying thread
                # without telling the peer anything first.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def _check(self, sock: socket.socket) -> None:
        with self._lock:
            if sock in self._reset:
                raise ConnectionResetError("cut")

    def freeze(self) -> None:
        self._frozen.set()

    def thaw(self) -> None:
        self._frozen.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            # Relays wake every 0.2 s, so a cut or a freeze reaches one blocked in a send too.
            client.settimeout(0.2)
            server.settimeout(0.2)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    server.close()
                    continue
                self._open.update((client, server))
                self.connections += 1
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._relay, args=(source, target), daemon=True).start()

    def _relay(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    self._check(source)
                    continue
                if not data:
                    break
                view = memoryview(data)
                while view:
                    try:
                        if self._frozen.is_set():
                            raise TimeoutError  # hold what came: the peer hears nothing
                        view = view[target.send(view) :]
                    except TimeoutError:
                        self._check(target)
                        time.sleep(0.05 if self._frozen.is_set() else 0)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with self._lock:
                    self._open.discard(sock)
                    reset = sock in self._reset
                if not reset:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                sock.close()
