"""A checkpoint's safetensors header, metadata and config, read without its weights or torch."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from ..data.catalog import resolve_checkpoint
from ..data.units import silent_units
from ..errors import SpikevizError
from .config import ModelConfig

FORMAT_VERSION = 1
META_KEY = "spikeviz"


def _refuse_foreign(head: bytes, path: Path) -> None:
    if len(head) >= 2 and head[0] == 0x80 and 1 <= head[1] <= 5:
        raise SpikevizError("a Python pickle (torch.save .pt/.pkl?), not safetensors: spikeviz never "
                            "unpickles files, since loading one can run arbitrary code; export the "
                            "weights with safetensors", path)
    if head.startswith(b"PK\x03\x04"):
        raise SpikevizError("a zip archive (torch.save's format, which holds pickles), not "
                            "safetensors: refused without unpickling", path)


def read_header(path: str | Path) -> dict[str, Any]:
    """The safetensors header of `path`: "__metadata__" and each tensor's dtype and shape.

    Pickles and zip archives are refused from their first bytes; the safetensors library checks
    the rest (lengths, JSON, dtypes, shapes against offsets, overlaps, truncation, trailing bytes).
    Nothing in the file is executed or deserialised beyond JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise SpikevizError("no such checkpoint file", path)
    with open(path, "rb") as fh:
        _refuse_foreign(fh.read(8), path)
    try:
        # NumPy's view of the file: its header read without importing torch.
        with safe_open(str(path), framework="numpy") as f:
            header: dict[str, Any] = {"__metadata__": f.metadata() or {}}
            for name in f.keys():
                view = f.get_slice(name)
                header[name] = {"dtype": view.get_dtype(), "shape": view.get_shape()}
    except (SafetensorError, OSError) as exc:
        reason = str(exc).removeprefix("Error while deserializing header: ")
        raise SpikevizError(f"not a valid safetensors file ({reason})", path) from exc
    return header


def read_meta(path: str | Path) -> dict[str, Any]:
    """The spikeviz metadata of a checkpoint (a JSON object in its header)."""
    raw = read_header(path).get("__metadata__", {}).get(META_KEY)
    if raw is None:
        raise SpikevizError("a safetensors file without spikeviz metadata: not a spikeviz "
                            "checkpoint", path)
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise SpikevizError(f"corrupt spikeviz metadata ({exc})", path) from exc
    if not isinstance(meta, dict):
        raise SpikevizError("corrupt spikeviz metadata (not a JSON object)", path)
    return meta


def trained_on(meta: dict[str, Any]) -> list[str]:
    """The names of the recordings a checkpoint was trained on: bundled sessions by their
    catalog name, other recordings (a file's, a corpus recording's) by the name in "data"."""
    sessions = meta.get("sessions")
    if not isinstance(sessions, list) or not sessions:
        one = meta.get("session") or meta.get("data")
        return [str(one)] if one else []
    names = str(meta.get("data") or "").split(" + ")
    if len(names) != len(sessions):
        names = [""] * len(sessions)
    return [str(s or n) for s, n in zip(sessions, names) if s or n]


def check_format(meta: dict[str, Any], path: Path) -> None:
    if meta.get("format_version") != FORMAT_VERSION:
        raise SpikevizError(f"checkpoint format {meta.get('format_version')!r}, this spikeviz "
                            f"reads {FORMAT_VERSION}", path)


def stored_config(meta: dict[str, Any], path: Path) -> ModelConfig:
    """The model config in the metadata (its values are checked against the weights on loading:
    checkpoint.checked_config)."""
    raw = meta.get("config")
    if not isinstance(raw, dict):
        raise SpikevizError("no model config in the checkpoint metadata", path)
    try:
        return ModelConfig.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise SpikevizError(f"corrupt model config ({exc})", path) from exc


@dataclass(frozen=True, eq=False)
class CheckpointSpec:
    """What a checkpoint says about itself, without its weights: enough to choose its units, their
    order and its window as a loaded model would (evaluation.stretch.setup)."""

    meta: dict[str, Any]
    config: ModelConfig


def read_spec(path: str | Path) -> CheckpointSpec:
    """The metadata and config of the checkpoint at `path` (resolved as --checkpoint is), with
    the path in the metadata as a loaded model has it (checkpoint.load_model)."""
    path = resolve_checkpoint(path)
    meta = read_meta(path)
    check_format(meta, path)
    meta, cfg = real_units(meta, stored_config(meta, path))   # as load_model loads it
    return CheckpointSpec(meta | {"path": str(path)}, cfg)


def real_units(meta: dict[str, Any], cfg: ModelConfig) -> tuple[dict[str, Any], ModelConfig]:
    """A per-unit checkpoint trained with `train --pad` as the model of its real units: its
    metadata (`silent_units` their number) and config without the silent units; any other as it is."""
    ids = meta.get("unit_ids") or []
    k = 0 if cfg.shared_units else silent_units(ids)
    if not 0 < k < cfg.n_units:
        return meta, cfg
    real = cfg.n_units - k
    return (meta | {"unit_ids": ids[:real], "n_units": real, "silent_units": k},
            dataclasses.replace(cfg, n_units=real))
