"""Checkpoints: safetensors weights with JSON metadata, checked by the safetensors library, never unpickled."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import _atomic
from ..errors import SpikevizError
from ..data.catalog import resolve_checkpoint
from .build import build_model
from .model import TRACE_EPS, ModelConfig, SpikeTransformer
from .._version import __version__
from .model import PRESETS
from .header import FORMAT_VERSION, META_KEY, check_format, read_header, read_meta, real_units, stored_config  # noqa: F401

# Bounds a stored config must respect before any weights are allocated for it.
_CONFIG_LIMITS = {"n_units": 100_000, "d_model": 8192, "n_heads": 256, "n_layers": 64,
                  "d_ff": 65_536, "context": 1_000_000}


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                  force: bool = True) -> None:
    """Write tensors and JSON-able `meta` as one safetensors file, atomically."""
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    with _atomic.target(path, force=force) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and spikeviz metadata of a safetensors file written by `write_tensors`."""
    meta = read_meta(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:   # changed on disk since read_header
        raise SpikevizError(f"not a valid safetensors file ({exc})", path) from exc
    return tensors, meta


def save_checkpoint(model: SpikeTransformer, path: str | Path, meta: dict[str, Any],
                    force: bool = True) -> None:
    """Write `model`'s weights with `meta` plus its config and the format version."""
    full = {"format_version": FORMAT_VERSION, "spikeviz_version": __version__,
            "config": model.config.to_dict()} | meta
    write_tensors(path, model.state_dict(), full, force=force)


def checked_config(meta: dict[str, Any], tensors: dict[str, torch.Tensor], path: Path
                    ) -> ModelConfig:
    """The stored config, refused unless it is sane and its weights have exactly the stored shapes
    (checked on a weightless "meta"-device model, so a lying config allocates nothing)."""
    cfg = stored_config(meta, path)
    if cfg.preset not in PRESETS:
        raise SpikevizError(f"unknown preset {cfg.preset!r} (known: {', '.join(PRESETS)})", path)
    for name, top in _CONFIG_LIMITS.items():
        value = getattr(cfg, name)
        if not _is_int(value) or not 1 <= value <= top:
            raise SpikevizError(f"model config {name}={value!r} is not an integer in [1, {top}]",
                                path)
    numbers = [cfg.dropout, cfg.rope_base, *cfg.trace_taus]
    if (not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                for x in numbers) or not 0 <= cfg.dropout < 1 or not cfg.rope_base > 0
            or not all(t > 0 for t in cfg.trace_taus) or len(cfg.trace_taus) > 16
            or not all(isinstance(b, bool) for b in (cfg.shared_units, cfg.population,
                                                     cfg.normalize))):
        raise SpikevizError("model config has invalid dropout, rope_base, trace_taus, "
                            "shared_units, population or normalize", path)
    with torch.device("meta"):
        skeleton = build_model(cfg)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        diff = sorted(set(expected) ^ set(found)) or sorted(
            k for k in expected if expected[k] != found[k])
        raise SpikevizError(f"weights do not match the stored config (n_units "
                            f"{cfg.n_units}, d_model {cfg.d_model}): {', '.join(diff[:3])}", path)
    return cfg


def _check_meta(meta: dict[str, Any], cfg: ModelConfig, path: Path) -> None:
    """The metadata commands rely on: unit count, bin size, unit ids and calibration."""
    n = meta.get("n_units", cfg.n_units)
    if not _is_int(n) or n != cfg.n_units:
        raise SpikevizError(f"metadata says n_units={n!r}, but the weights are for "
                            f"{cfg.n_units} units", path)
    bin_ms = meta.get("bin_ms", 1.0)
    if (not isinstance(bin_ms, (int, float)) or isinstance(bin_ms, bool)
            or not math.isfinite(bin_ms) or not bin_ms > 0):
        raise SpikevizError(f"metadata bin_ms={bin_ms!r} is not a positive number", path)
    ids = meta.get("unit_ids")
    # A unit-agnostic model (generalist, transfer) keeps the units it was trained or fine-tuned
    # on, however many; a per-unit model has one column per unit.
    count_ok = bool(ids) if cfg.shared_units else isinstance(ids, list) and len(ids) == cfg.n_units
    if ids is not None and (not isinstance(ids, list) or not count_ok
                            or not all(isinstance(u, str) for u in ids)):
        raise SpikevizError("metadata unit_ids is not a list of "
                            + ("names" if cfg.shared_units else f"{cfg.n_units} names"), path)
    cal = meta.get("calibration")
    if cal is not None and not (isinstance(cal, dict) and all(
            isinstance(cal.get(k, 0.0), (int, float)) and not isinstance(cal.get(k), bool)
            and math.isfinite(cal.get(k, 0.0)) for k in ("scale", "shift"))):
        raise SpikevizError(f"metadata calibration {cal!r} is not two finite numbers", path)
    seconds = meta.get("seconds")
    if seconds is not None and (not isinstance(seconds, (int, float)) or isinstance(seconds, bool)
                                or not math.isfinite(seconds) or not seconds > 0):
        raise SpikevizError(f"metadata seconds={seconds!r} is not a positive number", path)
    for key in ("session", "domain", "data", "data_path", "content_hash", "loss"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise SpikevizError(f"metadata {key} is not a string", path)


def load_model(path: str | Path) -> SpikeTransformer:
    """A model from a spikeviz checkpoint, in eval mode, its metadata in `.meta`.

    `path` resolves as the command line's --checkpoint does (data.catalog.resolve_checkpoint: a
    shipped checkpoint's name works from any folder). Everything is checked before use: the
    file's structure (read_header), the config against the weights' shapes, and the metadata the
    commands read (unit count, bin size, unit ids).
    """
    path = resolve_checkpoint(path)
    tensors, meta = read_tensors(path)
    check_format(meta, path)
    cfg = checked_config(meta, tensors, path)
    _check_meta(meta, cfg, path)
    try:
        model = build_model(cfg)
        model.load_state_dict(tensors)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise SpikevizError(f"weights do not match the stored config ({exc})", path) from exc
    model.meta = meta | {"path": str(path)}
    cal = meta.get("calibration") or {}
    model.calibration = (float(cal.get("scale", 1.0)), float(cal.get("shift", 0.0)))
    return without_silent_units(model.eval())


def without_silent_units(model: SpikeTransformer) -> SpikeTransformer:
    """A per-unit model trained with `train --pad`, as the same model of its real units only.

    Silent units only ever feed the network the same constant features (no spike, empty
    traces), so their input weights fold into the embedding's bias and their outputs are
    dropped: on the real units the logits are the trained model's, to rounding (a test checks),
    and the recording it was trained on is scored, generated and fine-tuned as it is, silent
    units neither added nor scored. `meta["silent_units"]` keeps their number."""
    cfg = model.config
    meta, smaller_cfg = real_units(model.meta, cfg)
    if smaller_cfg is cfg:
        return model
    real, n_feat = smaller_cfg.n_units, 1 + len(cfg.trace_taus)
    weights = model.state_dict()
    embed = weights["embed.weight"].view(-1, n_feat, cfg.n_units)
    silent = torch.tensor([0.0] + [math.log(TRACE_EPS) / 4.0] * len(cfg.trace_taus))
    weights["embed.bias"] = weights["embed.bias"] + (embed[:, :, real:] * silent.view(1, -1, 1)).sum((1, 2))
    weights["embed.weight"] = embed[:, :, :real].reshape(-1, n_feat * real)
    weights["head.weight"], weights["head.bias"] = weights["head.weight"][:real], weights["head.bias"][:real]
    weights["own"] = weights["own"][:, :real]
    smaller = build_model(smaller_cfg)
    smaller.load_state_dict(weights)
    smaller.meta = meta
    smaller.calibration = model.calibration
    return smaller.eval()


def check_data(model: SpikeTransformer, n_units: int, bin_ms: float | None, where=None) -> None:
    """Refuse data of another bin size, or another unit count (not for unit-agnostic models:
    generalist, transfer)."""
    ckpt = model.meta.get("path", "the model")
    trained = model.meta.get("bin_ms")
    if bin_ms is not None and trained is not None and abs(float(bin_ms) - trained) > 1e-9:
        raise SpikevizError(f"bin size {bin_ms:g} ms, but the checkpoint {Path(ckpt).name} was "
                            f"trained on {trained:g} ms bins", where)
    if not model.config.shared_units and n_units != model.config.n_units:
        raise SpikevizError(f"{n_units} units, but the checkpoint {Path(ckpt).name} was trained "
                            f"on {model.config.n_units} units: start from a generalist (e.g. "
                            f"generalist-focal), which takes any unit count", where)
