"""Checkpoints: safetensors weights with JSON metadata, checked byte by byte before parsing, never unpickled."""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from . import _atomic
from .errors import SpikevizError
from .model import ModelConfig, SpikeTransformer

FORMAT_VERSION = 1
META_KEY = "spikeviz"
_MAX_HEADER = 100 * 2**20


def _refuse_foreign(head: bytes, path: Path) -> None:
    if len(head) >= 2 and head[0] == 0x80 and 1 <= head[1] <= 5:
        raise SpikevizError("a Python pickle (torch.save .pt/.pkl?), not safetensors: spikeviz never "
                            "unpickles files, since loading one can run arbitrary code; export the "
                            "weights with safetensors", path)
    if head.startswith(b"PK\x03\x04"):
        raise SpikevizError("a zip archive (torch.save's format, which holds pickles), not "
                            "safetensors: refused without unpickling", path)


def read_header(path: str | Path) -> dict[str, Any]:
    """The safetensors JSON header of `path`, after checking magic, lengths and offsets.

    Raises SpikevizError for pickles, zip archives, truncated files and anything else that is not a
    complete safetensors file; nothing in the file is executed or deserialised beyond JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise SpikevizError("no such checkpoint file", path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        _refuse_foreign(head, path)
        if len(head) < 8:
            raise SpikevizError(f"truncated or not a safetensors file ({size} bytes)", path)
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER or 8 + n > size:
            raise SpikevizError(f"not a safetensors file or truncated: header of {n} bytes "
                                f"announced in a file of {size} bytes", path)
        raw = fh.read(n)
    if not raw.startswith(b"{"):
        raise SpikevizError("not a safetensors file (its header is not JSON)", path)
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise SpikevizError(f"corrupt safetensors header ({exc})", path) from exc
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    expected = 8 + n + max(ends, default=0)
    if expected != size:
        what = "truncated" if size < expected else "has trailing bytes"
        raise SpikevizError(f"{what}: {size} bytes where the header describes {expected}", path)
    return header


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                  force: bool = True) -> None:
    """Write tensors and JSON-able `meta` as one safetensors file, atomically."""
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    with _atomic.target(path, force=force) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and spikeviz metadata of a safetensors file written by `write_tensors`."""
    header = read_header(path)
    raw = header.get("__metadata__", {}).get(META_KEY)
    if raw is None:
        raise SpikevizError("a safetensors file without spikeviz metadata: not a spikeviz "
                            "checkpoint", path)
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise SpikevizError(f"corrupt spikeviz metadata ({exc})", path) from exc
    return load_file(str(path)), meta


def save_checkpoint(model: SpikeTransformer, path: str | Path, meta: dict[str, Any],
                    force: bool = True) -> None:
    """Write `model`'s weights with `meta` plus its config and the format version."""
    from . import __version__

    full = {"format_version": FORMAT_VERSION, "spikeviz_version": __version__,
            "config": model.config.to_dict()} | meta
    write_tensors(path, model.state_dict(), full, force=force)


def load_model(path: str | Path) -> SpikeTransformer:
    """A model from a spikeviz checkpoint, in eval mode, its metadata in `.meta`."""
    tensors, meta = read_tensors(path)
    if meta.get("format_version") != FORMAT_VERSION:
        raise SpikevizError(f"checkpoint format {meta.get('format_version')!r}, this spikeviz "
                            f"reads {FORMAT_VERSION}", path)
    try:
        model = SpikeTransformer(ModelConfig.from_dict(meta["config"]))
        model.load_state_dict(tensors)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise SpikevizError(f"weights do not match the stored config ({exc})", path) from exc
    model.meta = meta | {"path": str(path)}
    cal = meta.get("calibration") or {}
    model.calibration = (float(cal.get("scale", 1.0)), float(cal.get("shift", 0.0)))
    return model.eval()


def check_data(model: SpikeTransformer, n_units: int, bin_ms: float | None, where=None) -> None:
    """Refuse data of another bin size, or another unit count (not for transfer models)."""
    ckpt = model.meta.get("path", "the model")
    trained = model.meta.get("bin_ms")
    if bin_ms is not None and trained is not None and abs(float(bin_ms) - trained) > 1e-9:
        raise SpikevizError(f"bin size {bin_ms:g} ms, but the checkpoint {Path(ckpt).name} was "
                            f"trained on {trained:g} ms bins", where)
    if not model.config.shared_units and n_units != model.config.n_units:
        raise SpikevizError(f"{n_units} units, but the checkpoint {Path(ckpt).name} was trained "
                            f"on {model.config.n_units} units (only transfer-preset models take "
                            f"any unit count)", where)
