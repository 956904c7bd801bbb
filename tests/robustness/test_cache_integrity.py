"""Nothing lost, nothing corrupt used: cache entries failing their checksum are recomputed (through
the grid's real consumer), cache writes are atomic and complete. (An evaluation cell's tampered
result: tests/test_grid.py.)"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spikeviz import SpikevizError
from spikeviz.models.checkpoint import load_model
from spikeviz.data.store import Cache, load_packed, save_packed

VITRO = "invitro_210511001_bh"


def entries(root: Path, name: str) -> list[Path]:
    return sorted(p for p in root.rglob(name) if p.is_file())


def test_grid_train_cell_recomputes_a_corrupt_checkpoint(tmp_path):
    from spikeviz.evaluation.grid import GridSpec, train_cell

    spec = GridSpec(sessions=(VITRO,), losses=("focal",), epochs=1, seconds=5.0)
    first = train_cell(VITRO, "focal", spec, str(tmp_path))
    assert not first["cached"]
    path = Path(first["checkpoint"])
    good = path.read_bytes()
    weights = load_model(path).state_dict()
    assert train_cell(VITRO, "focal", spec, str(tmp_path))["cached"]
    path.write_bytes(good[:-50] + bytes(50))   # bit rot in the weights
    again = train_cell(VITRO, "focal", spec, str(tmp_path))
    assert not again["cached"]
    # The same deterministic training, written again (timings in its metadata differ).
    for k, v in load_model(path).state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def test_corrupt_array_json_and_file_entries_are_recomputed(tmp_path):
    cache = Cache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return np.arange(10.0)

    # Names without ".npy" too: the entry itself must hold the array.
    for name in ("P", "P.npy"):
        calls.clear()
        np.testing.assert_array_equal(cache.array("k1", name, compute), np.arange(10.0))
        np.testing.assert_array_equal(cache.array("k1", name, compute), np.arange(10.0))
        assert len(calls) == 1
        path = cache.path("k1", name)
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))
        np.testing.assert_array_equal(cache.array("k1", name, compute), np.arange(10.0))
        assert len(calls) == 2
    cache.put_json("k2", {"a": 1})
    cache.path("k2", "result.json").write_text('{"a": 2}')
    assert cache.get_json("k2") is None and not cache.path("k2", "result.json").exists()
    src = tmp_path / "src.bin"
    src.write_bytes(b"weights")
    cache.put_file("k3", "model.safetensors", src)
    cache.path("k3", "model.safetensors").write_bytes(b"weightz")
    assert cache.get_file("k3", "model.safetensors") is None
    # A missing checksum is as bad as a wrong one.
    cache.put_json("k4", {"a": 1})
    cache.path("k4", "result.json.sha256").unlink()
    assert cache.get_json("k4") is None
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def test_packed_spikes_refuse_corruption(tmp_path):
    from spikeviz.data.binning import BinnedSpikes

    X = (np.random.default_rng(0).random((100, 12)) < 0.2).astype(np.uint8)
    binned = BinnedSpikes(X, np.arange(12), 1.0, 0.0)
    for name in ("spikes.npy", "spikes.bin"):
        path = tmp_path / name
        save_packed(binned, path)
        np.testing.assert_array_equal(load_packed(path).unpack(), X)
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))
        with pytest.raises(SpikevizError, match="checksum"):
            load_packed(path)
