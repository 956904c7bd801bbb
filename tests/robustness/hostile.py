"""A generated set of hostile checkpoints: pickles in every disguise, truncated and lying safetensors.

Every pickle carries a live payload that creates MARKER beside the file when unpickled, so a test
proves that nothing was ever unpickled by checking MARKER is absent."""
from __future__ import annotations

import json
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Callable

import torch

from spikeviz.models.checkpoint import save_checkpoint
from spikeviz.models.build import build_model
from spikeviz.models.model import preset_config

MARKER = "HOSTILE_PAYLOAD_RAN"


class Touch:
    """Unpickling this creates the file at `path`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def good_checkpoint(path: Path, n_units: int = 10, preset: str = "fast", **meta) -> Path:
    """A small valid spikeviz checkpoint (random weights)."""
    torch.manual_seed(0)
    model = build_model(preset_config(preset, n_units)).eval()
    save_checkpoint(model, path, {"n_units": n_units, "bin_ms": 1.0, "loss": "focal", "preset": preset,
                                  "unit_ids": [str(i) for i in range(n_units)]} | meta)
    return path


def _split(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _assemble(header, data: bytes, announce: int | None = None) -> bytes:
    blob = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(blob) if announce is None else announce) + blob + data


def _edit_meta(base: Path, edit: Callable[[dict], object]) -> bytes:
    header, data = _split(base)
    meta = json.loads(header["__metadata__"]["spikeviz"])
    edit(meta)
    header["__metadata__"]["spikeviz"] = json.dumps(meta)
    return _assemble(header, data)


def _edit_header(base: Path, edit: Callable[[dict, bytes], bytes | None]) -> bytes:
    header, data = _split(base)
    data = edit(header, data) or data
    return _assemble(header, data)


def _first_tensor(header: dict) -> str:
    return sorted(k for k in header if k != "__metadata__")[0]


def _set(d: dict, key: str, value) -> None:
    d[key] = value


def cases() -> dict[str, Callable[[Path, Path], bytes | None]]:
    """name -> writer(base, target): bytes to store at `target` (a *.safetensors name, or the name
    the case chooses), built from the valid checkpoint `base`. A writer returning None wrote the
    target itself."""
    def payload(target: Path) -> Touch:
        return Touch(target.parent / MARKER)

    def torch_zip(target: Path) -> None:
        torch.save({"weights": payload(target)}, target)

    def zip_with_pickle(target: Path) -> None:
        with zipfile.ZipFile(target, "w") as z:
            z.writestr("archive/data.pkl", pickle.dumps(payload(target)))

    def tensor_edit(fn):
        def edit(header, data):
            fn(header[_first_tensor(header)], header)
        return edit

    out: dict[str, Callable[[Path, Path], bytes | None]] = {
        # pickles, whatever their name or protocol, and torch.save's zip of pickles
        **{f"pickle-protocol-{p}": (lambda p: lambda base, t: pickle.dumps(payload(t), protocol=p))(p)
           for p in range(0, 6)},
        "torch-save-zip": lambda base, t: torch_zip(t),
        "zip-holding-a-pickle": lambda base, t: zip_with_pickle(t),
        "pickle-after-8-bytes": lambda base, t: b"\x10" + b"\x00" * 7 + pickle.dumps(payload(t)),
        # truncated or padded
        "empty": lambda base, t: b"",
        "four-bytes": lambda base, t: base.read_bytes()[:4],
        "header-only": lambda base, t: base.read_bytes()[:8 + struct.unpack("<Q", base.read_bytes()[:8])[0]],
        "truncated-data": lambda base, t: base.read_bytes()[:-100],
        "truncated-header": lambda base, t: base.read_bytes()[:300],
        "trailing-bytes": lambda base, t: base.read_bytes() + b"\x00" * 16,
        # the header length lies
        "huge-header-length": lambda base, t: _assemble(_split(base)[0], _split(base)[1], 2**63),
        "header-length-past-end": lambda base, t: _assemble(_split(base)[0], b"", 10**6),
        # the header is not the JSON it should be
        "header-not-json": lambda base, t: _assemble(b"{not json at all", b""),
        "header-json-array": lambda base, t: _assemble(b"[1, 2, 3]", b""),
        "header-json-string": lambda base, t: _assemble(b'"abc"', b""),
        "header-invalid-utf8": lambda base, t: _assemble(b'{"\xff\xfe": 1}', b""),
        "metadata-not-a-dict": lambda base, t: _edit_header(base, lambda h, d: _set(h, "__metadata__", [1])),
        "metadata-not-strings": lambda base, t: _edit_header(base, lambda h, d: _set(h, "__metadata__", {"spikeviz": {"a": 1}})),
        "no-spikeviz-metadata": lambda base, t: _edit_header(base, lambda h, d: _set(h, "__metadata__", {})),
        "spikeviz-metadata-not-json": lambda base, t: _edit_header(base, lambda h, d: _set(h["__metadata__"], "spikeviz", "{oops")),
        "spikeviz-metadata-a-list": lambda base, t: _edit_header(base, lambda h, d: _set(h["__metadata__"], "spikeviz", "[1]")),
        # tensor entries that lie about their extent
        "offsets-out-of-range": lambda base, t: _edit_header(base, tensor_edit(lambda e, h: _set(e, "data_offsets", [0, 10**12]))),
        "offsets-past-end": lambda base, t: _edit_header(base, lambda h, d: _set(
            h[max((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][1])],
            "data_offsets", [len(d) + 4, len(d) + 4])),
        "offsets-reversed": lambda base, t: _edit_header(base, tensor_edit(lambda e, h: _set(e, "data_offsets", e["data_offsets"][::-1]))),
        "offsets-negative": lambda base, t: _edit_header(base, tensor_edit(lambda e, h: _set(e, "data_offsets", [-8, e["data_offsets"][1]]))),
        "offsets-not-ints": lambda base, t: _edit_header(base, tensor_edit(lambda e, h: _set(e, "data_offsets", ["0", "1"]))),
        "offsets-overlap": lambda base, t: _edit_header(base, lambda h, d: [
            _set(h[k], "data_offsets", [0, h[k]["data_offsets"][1] - h[k]["data_offsets"][0]])
            for k in h if k != "__metadata__"] and None),
        "shape-lies": lambda base, t: _edit_header(base, tensor_edit(lambda e, h: _set(e, "shape", [10**6, 10**6]))),
        "shape-negative": lambda base, t: _edit_header(base, tensor_edit(lambda e, h: _set(e, "shape", [-1]))),
        "unknown-dtype": lambda base, t: _edit_header(base, tensor_edit(lambda e, h: _set(e, "dtype", "PICKLE"))),
        "entry-not-a-dict": lambda base, t: _edit_header(base, lambda h, d: _set(h, "evil", "x")),
        # the spikeviz metadata lies
        "n-units-lies-in-config": lambda base, t: _edit_meta(base, lambda m: _set(m["config"], "n_units", 12)),
        "n-units-lies-in-metadata": lambda base, t: _edit_meta(base, lambda m: _set(m, "n_units", 12)),
        "huge-config": lambda base, t: _edit_meta(base, lambda m: m["config"].update(d_model=2**20, d_ff=2**24)),
        "large-config-not-matching": lambda base, t: _edit_meta(base, lambda m: m["config"].update(d_model=4096, n_layers=32)),
        "unknown-preset": lambda base, t: _edit_meta(base, lambda m: _set(m["config"], "preset", "os.system")),
        "unknown-config-key": lambda base, t: _edit_meta(base, lambda m: _set(m["config"], "__class__", "x")),
        "config-not-a-dict": lambda base, t: _edit_meta(base, lambda m: _set(m, "config", "fast")),
        "no-config": lambda base, t: _edit_meta(base, lambda m: m.pop("config")),
        "config-string-sizes": lambda base, t: _edit_meta(base, lambda m: _set(m["config"], "context", "256")),
        "config-negative-tau": lambda base, t: _edit_meta(base, lambda m: _set(m["config"], "trace_taus", [-1.0])),
        "format-version-2": lambda base, t: _edit_meta(base, lambda m: _set(m, "format_version", 2)),
        "bin-ms-zero": lambda base, t: _edit_meta(base, lambda m: _set(m, "bin_ms", 0)),
        "bin-ms-string": lambda base, t: _edit_meta(base, lambda m: _set(m, "bin_ms", "1")),
        "calibration-nan": lambda base, t: _edit_meta(base, lambda m: _set(m, "calibration", {"scale": float("nan"), "shift": 0})),
        "calibration-string": lambda base, t: _edit_meta(base, lambda m: _set(m, "calibration", "x")),
        "unit-ids-wrong-length": lambda base, t: _edit_meta(base, lambda m: _set(m, "unit_ids", ["1"])),
        "seconds-string": lambda base, t: _edit_meta(base, lambda m: _set(m, "seconds", "all")),
        "data-path-not-a-string": lambda base, t: _edit_meta(base, lambda m: _set(m, "data_path", {"a": 1})),
        "missing-tensor": lambda base, t: _without_tensor(base),
    }
    return out


def _without_tensor(base: Path) -> bytes:
    from safetensors.torch import load_file, save_file

    header, _ = _split(base)
    tensors = load_file(str(base))
    tensors.pop(sorted(tensors)[0])
    tmp = base.with_name("without.safetensors")
    save_file(tensors, str(tmp), metadata=header["__metadata__"])
    data = tmp.read_bytes()
    tmp.unlink()
    return data


def build(name: str, folder: Path, base: Path | None = None, filename: str | None = None) -> Path:
    """Write hostile case `name` in `folder` (from a fresh valid checkpoint unless `base`)."""
    base = base or good_checkpoint(folder / "good-base.safetensors")
    target = folder / (filename or f"{name}.safetensors")
    data = cases()[name](base, target)
    if data is not None:
        target.write_bytes(data)
    return target
