"""SpikeInterface and pynapple bridges: round trips and a cross-check of the hand-written loaders;
exports of generated trains. Each test skips alone when the bridge it needs is not installed."""
import importlib.util
import subprocess
import sys

import numpy as np
import pytest

import spikeviz
from spikeviz import SpikevizError, load_recording

from .test_io import write_phy

NO_SPIKEINTERFACE = pytest.mark.skipif(importlib.util.find_spec("spikeinterface") is None,
                                       reason="needs spikeinterface (the interop extra)")


@pytest.fixture
def si():
    return pytest.importorskip("spikeinterface.core")


@pytest.fixture
def se():
    return pytest.importorskip("spikeinterface.extractors")


@pytest.fixture
def nap():
    return pytest.importorskip("pynapple")


@pytest.fixture(scope="module")
def small():
    vivo = spikeviz.load_session("invivo")
    units = list(vivo.unit_ids[:10])
    rec = vivo.slice(0.0, 300.0).select_units(units)
    info = {"depth": np.linspace(20.0, 3800.0, 10), "quality": np.array(["good", "mua"] * 5)}
    return spikeviz.Recording(rec.name, rec.unit_ids, rec.spike_times, rec.duration_s, rec.source, info)


def test_sorting_round_trip(small, si):
    sorting = spikeviz.to_sorting(small, sampling_frequency=30000.0)
    assert isinstance(sorting, si.BaseSorting)
    back = spikeviz.from_sorting(sorting, name="x")
    assert back.unit_ids.tolist() == small.unit_ids.tolist()
    for a, b in zip(small.spike_times, back.spike_times):
        np.testing.assert_allclose(a, b, atol=0.5 / 30000)
    assert back.unit_info["quality"].tolist() == small.unit_info["quality"].tolist()
    np.testing.assert_allclose(back.unit_info["depth"], small.unit_info["depth"])


def test_segments_concatenate_or_pick_one(si):
    sorting = si.NumpySorting.from_unit_dict(
        [{0: np.array([10, 20]), 1: np.array([5])}, {0: np.array([3]), 1: np.array([7, 8])}], 1000.0)
    rec = spikeviz.from_sorting(sorting)
    first_len = 21  # no recording attached: a segment ends one sample after its last spike
    np.testing.assert_allclose(rec.spike_times[0], np.array([10, 20, first_len + 3]) / 1000.0)
    second = spikeviz.from_sorting(sorting, segment=1)
    np.testing.assert_allclose(second.spike_times[1], [0.007, 0.008])
    with pytest.raises(SpikevizError, match="segment 5 does not exist"):
        spikeviz.from_sorting(sorting, segment=5)


def test_tsgroup_round_trip(small, nap):
    group = spikeviz.to_tsgroup(small)
    assert isinstance(group, nap.TsGroup) and len(group) == small.n_units
    assert "depth" in group.metadata_columns
    back = spikeviz.from_tsgroup(group, name="g")
    assert back.unit_ids.tolist() == small.unit_ids.tolist()
    for a, b in zip(small.spike_times, back.spike_times):
        np.testing.assert_array_equal(a, b)
    assert back.duration_s == pytest.approx(small.duration_s)
    np.testing.assert_allclose(back.unit_info["depth"], small.unit_info["depth"])


def test_saved_sorting_folder_opens_with_format_spikeinterface(tmp_path, small, si):
    sorting = spikeviz.to_sorting(small, sampling_frequency=30000.0)
    folder = tmp_path / "sorting_saved"
    sorting.save(folder=folder)
    rec = load_recording(folder, format="spikeinterface")
    assert rec.source["format"] == "spikeinterface" and rec.n_units == small.n_units
    np.testing.assert_allclose(rec.spike_times[4], small.spike_times[4], atol=0.5 / 30000)


class _Touch:
    """Unpickling this creates the file at `path`: what a malicious pickle would carry."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        from pathlib import Path
        return (Path.touch, (Path(self.path),))


def test_what_spikeinterface_would_run_is_refused_before_it_sees_it(tmp_path, small, si):
    """SpikeInterface's loader unpickles .pkl files and calls any class a JSON description names:
    neither may run, and the message says which file and why."""
    import json
    import pickle

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(_Touch(marker)))
    legacy = tmp_path / "legacy"          # a v0.94 folder: no si_folder.json, a cached.pkl
    legacy.mkdir()
    (legacy / "cached.pkl").write_bytes(evil.read_bytes())
    # Live: SpikeInterface 0.105 runs `subprocess.run(args=...)` from this description.
    called = {"class": "subprocess.run", "module": "subprocess", "kwargs": {"args": ["touch", str(marker)]},
              "version": "0.105.3", "annotations": {}, "properties": {}, "relative_paths": False}
    described = tmp_path / "described.json"
    described.write_text(json.dumps(called))
    saved = tmp_path / "saved"            # a real sorting folder whose description was swapped
    spikeviz.to_sorting(small, sampling_frequency=30000.0).save(folder=saved)
    (saved / "si_folder.json").write_text(json.dumps(called))
    for path, why in ((evil, "evil.pkl is a Python pickle"), (legacy, "cached.pkl is a Python pickle"),
                      (described, "names the class 'subprocess.run'"),
                      (saved, "si_folder.json names the class 'subprocess.run'")):
        with pytest.raises(SpikevizError, match=why) as refused:
            load_recording(path, format="spikeinterface")
        assert path.name in str(refused.value)
    assert not marker.exists()


def test_a_phy_folder_with_phys_own_pickles_still_opens(tmp_path, small, se):
    """phy's GUI caches pickles in the folder: SpikeInterface's loader is not tried on it, its phy
    reader (which reads .npy and .tsv files only) is."""
    folder = write_phy(tmp_path / "ks", small, labels=["good"] * 10)
    (folder / ".phy").mkdir()
    (folder / ".phy" / "spikes_per_cluster.pkl").write_bytes(b"not read")
    rec = load_recording(folder, format="spikeinterface")
    assert rec.n_units == small.n_units


def test_cross_check_phy_loader_against_spikeinterface(tmp_path, small, se):
    folder = write_phy(tmp_path / "ks", small, labels=["good"] * 9 + ["noise"])
    ours = load_recording(folder, include_noise=True)
    theirs = spikeviz.from_sorting(se.read_phy(folder))
    assert sorted(theirs.unit_ids.tolist()) == ours.unit_ids.tolist()
    for uid, train in zip(ours.unit_ids, ours.spike_times):
        np.testing.assert_array_equal(train, theirs.spike_times[theirs.unit_ids.tolist().index(uid)])
    via_cli_format = load_recording(folder, format="spikeinterface")
    assert via_cli_format.n_spikes == ours.n_spikes


def test_cross_check_nwb_loader_against_spikeinterface(tmp_path, small, se):
    from spikeviz.data.io.nwb import write_nwb

    path = tmp_path / "units.nwb"
    write_nwb(small, path)
    ours = load_recording(path)
    theirs = spikeviz.from_sorting(se.read_nwb_sorting(path, sampling_frequency=30000.0))
    assert [str(u) for u in theirs.unit_ids] == [str(u) for u in ours.unit_ids]
    for a, b in zip(ours.spike_times, theirs.spike_times):
        np.testing.assert_allclose(a, b, atol=0.5 / 30000)


def test_bridges_say_which_extra_is_missing():
    code = ("import sys; sys.modules['spikeinterface'] = None; sys.modules['pynapple'] = None\n"
            "import spikeviz\nrec = spikeviz.load_session('invitro_210511001_bh')\n"
            "try:\n    spikeviz.to_tsgroup(rec)\nexcept spikeviz.SpikevizError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'spikeviz[interop]'" in out


@pytest.mark.parametrize("suffix", [".nwb", ".csv", ".parquet", ".npz",
                                    pytest.param(".si", marks=NO_SPIKEINTERFACE)])
def test_generated_trains_export_and_read_back(tmp_path, suffix):
    from spikeviz import generate_recording, write_recording

    model = spikeviz.load_model("models/invitro_210511001_bh-focal.safetensors")
    rec = spikeviz.load_session("invitro_210511001_bh")
    generated = generate_recording(model, rec, "teacher", seconds=2.0, start_s=250.0,
                                   threshold=0.2, seed=4)
    made = generated.source["generated_by"]
    assert made["mode"] == "teacher" and made["threshold"] == 0.2 and made["seed"] == 4
    assert made["checkpoint"].endswith("invitro_210511001_bh-focal.safetensors")
    path = tmp_path / f"gen{suffix}"
    write_recording(generated, path)
    back = load_recording(path)
    assert [str(u) for u in back.unit_ids] == [str(u) for u in generated.unit_ids]
    for a, b in zip(generated.spike_times, back.spike_times):
        np.testing.assert_allclose(a, b, atol=1e-9)
    assert back.source["generated_by"] == made and back.duration_s == generated.duration_s
    if suffix == ".si":
        si = pytest.importorskip("spikeinterface.core")
        assert isinstance(si.load(path), si.BaseSorting)
