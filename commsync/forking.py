"""Work done by a forked child process, its results streamed back to the parent through a pipe.

A commsync command is one Python thread, and the machine has more cores: a large send's messages
are built by a child forked for the purpose (delivery/ahead.py). The child gets the parent's
memory as it stood — compiled templates, open connections, everything — and must never use what
the parent holds: its collector leaves every inherited object alone (`gc.freeze`: a connection
it finalized would close under the parent), it touches neither the store nor the terminal, and
it ends with `os._exit`, so no cleanup of the parent's runs twice. It ignores Ctrl-C (the parent
stops it) and ends on its own when the parent does, at its next read or write of a closed pipe.

Messages are pickled, each behind its length.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import pickle
import signal
import struct
from collections.abc import Callable
from typing import Any

_FRAME = struct.Struct("!I")
# what crosses is megabytes a message; Linux lets a process grow a pipe to 1 MiB by default
# (/proc/sys/fs/pipe-max-size), so that the writer gets a whole message out and goes on
_PIPE_SIZES = (4 * 2**20, 2**20)
_READ = 2**20


def can_fork() -> bool:
    return hasattr(os, "fork")


def grow(fd: int) -> None:
    for size in _PIPE_SIZES:
        with contextlib.suppress(OSError, AttributeError):  # a small pipe: only more turns
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
            return


def write(fd: int, message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_FRAME.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _exactly(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, _READ))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read(fd: int) -> Any:
    """The next message from a pipe; None at its end (or in a message cut short)."""
    header = _exactly(fd, _FRAME.size)
    body = _exactly(fd, _FRAME.unpack(header)[0]) if header is not None else None
    return pickle.loads(body) if body is not None else None


def fork(child: Callable[[], None]) -> int:
    """Fork; in the child, run `child` and end (status 1 if it raised); the child's pid here."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its coverage is not collected
        code = 0
        try:
            gc.freeze()
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            child()
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    return pid


def end(pid: int) -> None:
    """Stop a child at once and reap it (for children that hold nothing but their pipes)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    os.waitpid(pid, 0)
