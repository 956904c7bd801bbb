"""On-disk store: checksummed cache entries, corrupt entries recomputed, memory-mapped packed spikes."""
import numpy as np
import pytest

import spikeviz
from spikeviz import SpikevizError
from spikeviz.data.store import Cache, content_key, load_packed, quantize_probabilities, save_packed


def test_cache_round_trip_and_corruption_is_recomputed(tmp_path):
    cache = Cache(tmp_path)
    key = content_key("session-hash", {"loss": "focal"})
    calls = []

    def compute():
        calls.append(1)
        return np.arange(1000, dtype=np.float32)

    first = cache.array(key, "p.npy", compute)
    again = cache.array(key, "p.npy", compute)
    assert len(calls) == 1 and isinstance(again, np.memmap)
    np.testing.assert_array_equal(first, again)
    path = cache.path(key, "p.npy")
    data = bytearray(path.read_bytes())
    data[-7] ^= 0xFF  # one flipped byte in the payload
    path.write_bytes(bytes(data))
    recomputed = cache.array(key, "p.npy", compute)
    assert len(calls) == 2
    np.testing.assert_array_equal(recomputed, np.arange(1000, dtype=np.float32))


def test_json_entries_and_keys(tmp_path):
    cache = Cache(tmp_path)
    assert content_key("a", 1) == content_key("a", 1) != content_key("a", 2)
    assert cache.get_json("k" * 32) is None
    cache.put_json("k" * 32, {"roc_auc": 0.9})
    assert cache.get_json("k" * 32) == {"roc_auc": 0.9}
    cache.path("k" * 32, "result.json").write_text('{"roc_auc": 1.0}')  # tampered
    assert cache.get_json("k" * 32) is None


def test_packed_spikes_are_memory_mapped(tmp_path):
    binned = spikeviz.bin_spikes(spikeviz.load_session("invitro_210511001_bh"))
    save_packed(binned, tmp_path / "bh.npy")
    packed = load_packed(tmp_path / "bh.npy")
    assert isinstance(packed.bits, np.memmap)
    np.testing.assert_array_equal(packed.unpack(5000, 9000), binned.X[5000:9000])
    assert packed.unit_ids.tolist() == [str(u) for u in binned.unit_ids]
    (tmp_path / "bh.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(SpikevizError, match="bh.npy: missing, or its checksum does not match"):
        load_packed(tmp_path / "bh.npy")


def test_quantized_probabilities():
    P = np.array([0.0, 1e-4, 0.0123, 0.5, 1.0])
    Q = quantize_probabilities(P)
    assert Q.dtype == np.float16
    np.testing.assert_allclose(Q.astype(float), P, rtol=1e-3)
    with pytest.raises(SpikevizError, match="must lie in"):
        quantize_probabilities(np.array([0.5, np.nan]))


def test_an_empty_cache_variable_is_unset(monkeypatch, tmp_path):
    """`SPIKEVIZ_CACHE= cmd` once filled the current folder (a repository) with cache entries."""
    from spikeviz.data.store import cache_root

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SPIKEVIZ_CACHE", "")
    assert cache_root() == tmp_path / ".cache" / "spikeviz"
    monkeypatch.setenv("SPIKEVIZ_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"


def test_keys_follow_the_librarys_source(tmp_path, monkeypatch):
    """Predictions cached by other code (a baseline or fitted model changed since) are not read:
    the page once showed a model's old scores after its code changed."""
    from spikeviz.data import store

    (tmp_path / "spikeviz").mkdir()
    module = tmp_path / "spikeviz" / "model.py"
    module.write_text("P = 1\n")
    monkeypatch.setattr(store, "PACKAGE", tmp_path / "spikeviz")
    store.source_digest.cache_clear()
    try:
        before = content_key("predictions", "states")
        module.write_text("P = 2\n")
        store.source_digest.cache_clear()
        assert content_key("predictions", "states") != before
    finally:
        store.source_digest.cache_clear()


def test_a_memo_that_cannot_write_computes_and_a_store_refuses(tmp_path, monkeypatch):
    """A cache folder that cannot be written (here: its root is a file) costs a memo only its
    recomputation; `spikeviz evaluate` and the page go on. The grid's store says so instead."""
    from spikeviz.data.catalog import load_session
    from spikeviz.evaluation.evaluate import fit_baseline
    from spikeviz.evaluation.stretch import setup

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    memo, store = Cache(blocked / "cache", memo=True), Cache(blocked / "cache")
    key = content_key("x")
    value = memo.array(key, "p.npy", lambda: np.arange(5.0))
    np.testing.assert_array_equal(value, np.arange(5.0))
    memo.put_json(key, {"a": 1})
    memo.put_arrays(key, "f.npz", {"a": np.ones(2)})
    assert memo.get_json(key) is None and memo.get_arrays(key, "f.npz") is None
    with pytest.raises(OSError):
        store.put_json(key, {"a": 1})
    monkeypatch.setenv("SPIKEVIZ_CACHE", str(blocked / "cache"))
    su = setup(None, load_session("invitro_210511001_bh").slice(0.0, 60.0), seconds=5,
               warmup_s=12, n_units=8)
    assert fit_baseline("glm-coupled", su).predict(su.stretch.X).shape == su.stretch.X.shape
