"""Checkpoints: round trip, metadata, and refusal of pickles, truncated files and mismatched data."""
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from spikeviz import SpikevizError
from spikeviz.data.binning import BinnedSpikes
from spikeviz.models.checkpoint import (FORMAT_VERSION, check_data, load_model, read_header,
                                 save_checkpoint)
from spikeviz.models.build import build_model
from spikeviz.models.model import SpikeTransformer, preset_config
from spikeviz.generation.predict import predict_next


class Touch:
    """Unpickling this creates the file at `path`: the payload a malicious checkpoint would carry."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.fixture()
def ckpt(tmp_path):
    torch.manual_seed(0)
    model = SpikeTransformer(preset_config("fast", 10)).eval()
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path, {"n_units": 10, "bin_ms": 1.0, "loss": "focal", "seed": 3,
                                  "split": {"train": [0, 50]}, "content_hash": "abc"})
    return model, path


def test_round_trip_keeps_weights_predictions_and_metadata(ckpt):
    model, path = ckpt
    loaded = load_model(path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    X = (np.random.default_rng(0).random((300, 10)) < 0.1).astype(np.uint8)
    np.testing.assert_array_equal(predict_next(model, X), predict_next(loaded, X))
    meta = loaded.meta
    assert meta["format_version"] == FORMAT_VERSION and meta["loss"] == "focal"
    assert meta["config"]["preset"] == "fast" and meta["split"] == {"train": [0, 50]}
    assert meta["content_hash"] == "abc" and meta["seed"] == 3 and "spikeviz_version" in meta


def _refused(path, match):
    with pytest.raises(SpikevizError, match=match) as err:
        load_model(path)
    assert path.name in str(err.value)


def test_torch_save_and_plain_pickles_are_refused(ckpt, tmp_path):
    model, _ = ckpt
    pt = tmp_path / "model.pt"
    torch.save(model.state_dict(), pt)
    _refused(pt, "zip archive")
    pkl = tmp_path / "model.pkl"
    pkl.write_bytes(pickle.dumps(model.state_dict(), protocol=4))
    _refused(pkl, "pickle")


def test_a_pickle_renamed_safetensors_never_runs(tmp_path):
    # The payload is live: unpickling it does create its file...
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Touch(probe)))
    assert probe.exists()
    # ...but handed to spikeviz under a .safetensors name it is refused before anything runs.
    marker = tmp_path / "pwned"
    for protocol in (2, 4, 5):
        evil = tmp_path / f"evil{protocol}.safetensors"
        evil.write_bytes(pickle.dumps(Touch(marker), protocol=protocol))
        _refused(evil, "pickle")
    assert not marker.exists()


def test_truncated_and_garbage_files_are_refused(ckpt, tmp_path):
    _, path = ckpt
    data = path.read_bytes()
    # The safetensors library's own words for a file cut in its data, its header, its length.
    for n, match in ((len(data) - 10, "not fully covered"), (200, "invalid header length"),
                     (5, "header too small")):
        cut = tmp_path / f"cut{n}.safetensors"
        cut.write_bytes(data[:n])
        _refused(cut, match)
    (tmp_path / "junk.safetensors").write_bytes(struct.pack("<Q", 20) + b"not json at all....." )
    _refused(tmp_path / "junk.safetensors", "invalid JSON")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    _refused(empty, "header too small")
    _refused(tmp_path / "missing.safetensors", "no such")
    header = read_header(path)
    assert "__metadata__" in header


def test_other_unit_count_or_bin_size_is_refused_naming_both(ckpt):
    _, path = ckpt
    model = load_model(path)
    model.meta["bin_ms"] = 1.0
    with pytest.raises(SpikevizError, match=r"12 units.*trained on 10 units: start from a generalist"):
        predict_next(model, np.zeros((50, 12), np.uint8))
    binned = BinnedSpikes(np.zeros((50, 10), np.uint8), np.arange(10), 2.0, 0.0)
    with pytest.raises(SpikevizError, match=r"bin size 2 ms.*trained on 1 ms"):
        predict_next(model, binned)
    check_data(model, 10, 1.0)  # matching data passes


def test_transfer_checkpoints_take_any_unit_count_but_not_another_bin_size(tmp_path):
    model = SpikeTransformer(preset_config("transfer", 10)).eval()
    path = tmp_path / "t.safetensors"
    save_checkpoint(model, path, {"n_units": 10, "bin_ms": 1.0})
    loaded = load_model(path)
    check_data(loaded, 37, 1.0)
    with pytest.raises(SpikevizError, match=r"bin size 5 ms.*1 ms"):
        check_data(loaded, 37, 5.0)


def test_existing_file_is_not_replaced_without_force(ckpt):
    model, path = ckpt
    before = path.read_bytes()
    with pytest.raises(SpikevizError, match="exists"):
        save_checkpoint(model, path, {}, force=False)
    assert path.read_bytes() == before
    assert not [p for p in os.listdir(path.parent) if ".tmp" in p]


@pytest.mark.parametrize("preset, ids, ok", [("generalist", 3, True), ("generalist", 0, False),
                                             ("fast", 3, False), ("fast", 10, True)])
def test_unit_ids_need_one_name_a_column_only_for_per_unit_models(tmp_path, preset, ids, ok):
    # A generalist fine-tuned on a 3-unit recording keeps its 3 units' names (issue: evaluate
    # refused it); a per-unit model's names must match its columns.
    path = tmp_path / "m.safetensors"
    save_checkpoint(build_model(preset_config(preset, 10)), path,
                    {"unit_ids": [f"u{k}" for k in range(ids)]})
    if ok:
        assert len(load_model(path).meta["unit_ids"]) == ids
    else:
        with pytest.raises(SpikevizError, match="unit_ids is not a list of"):
            load_model(path)


def test_load_model_resolves_a_shipped_name_from_any_folder(tmp_path, monkeypatch):
    """From Python as on the command line (--checkpoint): a shipped checkpoint's name or its
    models/ path works outside the project folder."""
    from spikeviz.models.checkpoint import load_model

    monkeypatch.chdir(tmp_path)
    for name in ("generalist-focal", "models/generalist-focal.safetensors"):
        assert load_model(name).meta["preset"] == "generalist"


def test_a_padded_model_is_its_real_units_model(tmp_path):
    """`train --pad` adds silent units pad0.. to fill a per-unit model: loaded, it is the model of
    the real units only, its logits on them the trained model's (with the silent columns
    present and empty), so its own recording is scored and generated as it is."""
    from spikeviz.data.recording import Recording
    from spikeviz.data.units import with_silent_units
    from spikeviz.models.header import read_spec

    torch.manual_seed(0)
    model = SpikeTransformer(preset_config("fast", 7)).eval()
    with torch.no_grad():   # weights on the silent columns that matter if mishandled
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    ids = ["a", "b", "c", "d", "e", "pad0", "pad1"]
    path = tmp_path / "padded.safetensors"
    save_checkpoint(model, path, {"n_units": 7, "bin_ms": 1.0, "unit_ids": ids})
    loaded = load_model(path)
    assert loaded.config.n_units == 5 and loaded.meta["unit_ids"] == ids[:5]
    assert loaded.meta["silent_units"] == 2
    spec = read_spec(path)   # the header alone says the same (the page's opening view reads it)
    assert spec.config == loaded.config and spec.meta["unit_ids"] == ids[:5]
    rng = np.random.default_rng(0)
    X = np.zeros((400, 7), np.uint8)
    X[:, :5] = rng.random((400, 5)) < 0.1
    model.meta = {"bin_ms": 1.0}
    np.testing.assert_allclose(predict_next(loaded, X[:, :5]), predict_next(model, X)[:, :5],
                               rtol=1e-5, atol=1e-7)
    rec = Recording("r", np.array(ids[:5]), tuple(np.sort(rng.random(9)) for _ in range(5)), 1.0, {})
    assert with_silent_units(rec, 7).unit_ids.tolist() == ids
