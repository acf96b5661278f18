"""Where hftl keeps files and how it writes them: whole or not at all.

A file hftl writes for later (a run's ``run_info.json``, a checkpoint's marker, a WiSE-FT end
point, the EWC Fisher, re-keyed timm weights) is written to a temporary file in the same folder,
flushed to disk and renamed over the target, so a crash leaves the old file or the new one, never
half of one. :func:`cache_dir` is hftl's own cache (``$HFTL_CACHE``): assets and cached features.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """hftl's cache: ``$HFTL_CACHE``, default ``~/.cache/hftl``."""
    return Path(os.environ.get("HFTL_CACHE") or Path.home() / ".cache" / "hftl")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``path`` so that it is either absent, the old file, or the whole new text: a
    temporary file in the same folder, flushed to disk, then renamed over ``path``."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_dir(path.parent)


def atomic_save_tensors(tensors: dict, path: Path, metadata: dict | None = None) -> None:
    """``tensors`` as the safetensors file ``path``, written as :func:`atomic_write_text` writes
    text: absent, the old file, or the whole new one (tensors moved to the CPU, contiguous)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    state = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    save_file(state, str(temporary), metadata={"format": "pt", **(metadata or {})})
    os.replace(temporary, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(descriptor)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(descriptor)
