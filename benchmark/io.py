"""The one atomic-write helper and the checksummed files built on it.

Every file the suite writes goes through :func:`atomic_write_bytes`: the bytes go
to a uniquely named temporary file in the same folder (never just the PID, which two
containers can share), are flushed and fsynced, then renamed over the target, so
a reader sees the old file or the new one, never a part. The temporary file is
removed on any failure, a full disk included.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Writes ``data`` to ``path`` through a unique temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it private; caches and results may be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
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
    path = atomic_write_bytes(path, data)
    atomic_write_text(path.with_name(path.name + ".sha256"), sha256_bytes(data))
    return path


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
