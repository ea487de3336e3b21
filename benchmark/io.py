"""The one atomic-write helper and the checksummed files built on it.

Every file the suite writes goes through :func:`atomic_write_bytes`: the bytes go
to a uniquely named temporary file in the same folder (never just the PID, which two
containers can share), are flushed and fsynced, then renamed over the target, so
a reader sees the old file or the new one, never a part. The temporary file is
removed on any failure, a full disk included, and a failed write raises an
``OSError`` that names the target file.

A write is never cut by the SIGTERM/SIGINT handler of the command line
(:func:`on_signal`): inside :func:`signals_held` the handler only records the
signal, and :class:`Interrupted` is raised when the outermost held section ends.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class Interrupted(BaseException):
    """A SIGTERM or SIGINT reached the run (raised by :func:`on_signal`).

    A ``BaseException``, so that no ``except Exception`` of a cell or a sink turns it
    into a failed result. ``exit_code`` is 128 + the signal number (143, 130)."""

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message or signal.Signals(signum).name)
        self.signum = int(signum)
        self.message = message

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_held = 0
_received: int | None = None  # the first signal of this process, if any


def received_signal() -> int | None:
    """The signal :func:`on_signal` received, or None."""
    return _received


def on_signal(signum: int, frame: Any = None) -> None:
    """The SIGTERM/SIGINT handler: records the signal and raises :class:`Interrupted`,
    unless a held section is running (it then raises when the section ends). Later
    signals are ignored: the first one is being handled."""
    global _received
    if _received is not None:
        return
    _received = int(signum)
    if _held == 0:
        raise Interrupted(signum)


def reset_signal() -> None:
    """Forgets a received signal (tests, and the start of a command)."""
    global _received
    _received = None


@contextmanager
def signals_held() -> Iterator[None]:
    """A section that a signal does not cut: :class:`Interrupted` is raised at its end."""
    global _held
    _held += 1
    try:
        yield
    finally:
        _held -= 1
    if _held == 0 and _received is not None:
        raise Interrupted(_received)


@contextmanager
def signals_released() -> Iterator[None]:
    """Inside a held section, a part that a signal cuts at once: :class:`Interrupted` is raised
    there (at entry, for a signal that arrived while held), and the section around stays held."""
    global _held
    saved, _held = _held, 0
    try:
        if _received is not None:
            raise Interrupted(_received)
        yield
    finally:
        _held = saved


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Writes ``data`` to ``path`` through a unique temporary file and a rename."""
    path = Path(path)
    with signals_held():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(path)) from e
        try:
            os.fchmod(fd, 0o644)  # mkstemp makes it private; caches and results may be shared
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(e, OSError) and e.errno is not None:
                # the target, not the temporary name, so that the error line says what was lost
                raise OSError(e.errno, e.strerror, str(path)) from e
            raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, **kw: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, **kw))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to memory, then one atomic write; the SHA-256 sidecar goes last."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    with signals_held():  # the file and its sidecar together
        path = atomic_write_bytes(path, data)
        atomic_write_text(path.with_name(path.name + ".sha256"), sha256_bytes(data))
    return path


def atomic_savez(path: str | os.PathLike[str], **arrays: Any) -> Path:
    """``np.savez`` to memory, then one atomic write."""
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getbuffer())


def load_checked(path: str | os.PathLike[str], what: str) -> Any | None:
    """Loads a file written by :func:`atomic_torch_save` (``weights_only``); None, with one
    warning line, if it is missing its sidecar, truncated or corrupt."""
    import torch

    path = Path(path)
    side = path.with_name(path.name + ".sha256")
    if not path.exists():
        return None
    try:
        data = path.read_bytes()
        if not side.exists() or side.read_text().strip() != sha256_bytes(data):
            raise ValueError("checksum mismatch")
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable cache means: rebuild it
        print(f"warning: cached {what} {path} is corrupt ({type(e).__name__}: {str(e)[:80]}); rebuilding it",
              flush=True)
        return None


def state_sha256(state: Any) -> str:
    """SHA-256 of a model's state (a ``state_dict`` or a module): every tensor's name,
    dtype, shape and bytes, in name order. What a cache of a model's outputs or curves
    names, so that it is never used for another model."""
    import torch

    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    h = hashlib.sha256(b"unlearn-bench state v1")
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
