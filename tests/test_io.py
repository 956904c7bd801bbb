"""Loaders: bundled asdf figures, and round trips through every other format written from real data."""
import json

import numpy as np
import pandas as pd
import pytest

import spikeviz
from spikeviz import SpikevizError, load_recording
from spikeviz.errors import DataWarning
from spikeviz.data.io.maxwell import NEWER, write_maxwell
from spikeviz.data.io import write_recording
from spikeviz.data.io.table import write_table

# ../shared/data/README.md, measured on the files.
MEASURED = {
    "invitro_210511001_bh": (128, 943_716, 400.079, 18.4, 2.2, 0.018),
    "invitro_210511001_lh": (128, 912_624, 400.080, 17.8, 2.2, 0.018),
    "invivo_NYU-40_2021-04-14_001": (128, 458_082, 3541.2431, 1.0, 0.6, 0.0010),
}


@pytest.fixture(scope="module")
def vitro():
    return spikeviz.load_session("invitro_210511001_bh")


@pytest.fixture(scope="module")
def small(vitro):
    """The first 20 s of 12 real units: big enough to be real, small enough to write quickly."""
    return vitro.slice(0.0, 20.0).select_units(list(vitro.unit_ids[:12]))


def assert_same_trains(a, b, atol=0.0):
    assert [str(u) for u in a.unit_ids] == [str(u) for u in b.unit_ids]
    for ta, tb in zip(a.spike_times, b.spike_times):
        assert ta.shape == tb.shape
        np.testing.assert_allclose(ta, tb, rtol=0, atol=atol)


@pytest.mark.parametrize("name", sorted(MEASURED))
def test_bundled_sessions_reproduce_measured_figures(name):
    units, spikes, duration, mean_rate, median_rate, density = MEASURED[name]
    rec = spikeviz.load_session(name)
    assert (rec.n_units, rec.n_spikes) == (units, spikes)
    assert rec.duration_s == pytest.approx(duration, abs=1e-6)
    assert round(rec.rates_hz.mean(), 1) == mean_rate
    assert round(float(np.median(rec.rates_hz)), 1) == median_rate
    X = spikeviz.bin_spikes(rec).X
    assert round(X.mean(), 3 if density > 0.01 else 4) == density
    for t in rec.spike_times:
        assert t.dtype == np.float64 and np.all(np.diff(t) >= 0)


def test_asdf_ticks_are_scaled_by_the_tick_length():
    vivo = spikeviz.load_session("invivo")
    # First spike of unit 1 is tick 90083 of 0.1 ms (1-based): 9.0082 s.
    assert vivo.spike_times[0][0] == pytest.approx(90082 * 1e-4)
    assert vivo.source["tick_ms"] == 0.1


def test_asdf_without_tick_is_refused(tmp_path):
    with pytest.raises(SpikevizError, match="invivo_NYU-40.*does not state its tick length"):
        load_recording(spikeviz.data.catalog.session("invivo").path)


def test_nwb_round_trip_spike_for_spike(tmp_path, small):
    path = tmp_path / "small.nwb"
    write_recording(small, path)
    back = load_recording(path)
    assert back.source["format"] == "nwb"
    assert_same_trains(small, back)
    assert back.duration_s == pytest.approx(small.duration_s)
    # The copy of a copy keeps the first one's session start, subject and tick as resolution.
    again = tmp_path / "again.nwb"
    write_recording(back, again)
    assert load_recording(again).source["session_start_time"] == back.source["session_start_time"]
    assert load_recording(again).source["resolution"] == small.source["tick_ms"] / 1000


def test_nwb_copy_keeps_the_source_subject_and_session_and_options_override(tmp_path, small):
    from datetime import datetime, timezone

    import pynwb
    from pynwb.file import Subject

    started = datetime(2021, 4, 14, 9, 30, tzinfo=timezone.utc)
    source = tmp_path / "lab.nwb"
    nwb = pynwb.NWBFile(session_description="s", identifier="x", session_start_time=started,
                        institution="NYU", subject=Subject(subject_id="NYU-40", species="Mus musculus",
                                                           sex="F", age="P120D"))
    nwb.units = pynwb.misc.Units(name="units", description="sorted", resolution=1 / 30000)
    for t in small.spike_times:
        nwb.add_unit(spike_times=t)
    with pynwb.NWBHDF5IO(str(source), "w") as io:
        io.write(nwb)
    lab = load_recording(source)
    copy = tmp_path / "copy.nwb"
    write_recording(lab, copy, subject={"sex": "M"})
    with pynwb.NWBHDF5IO(str(copy), "r") as io:
        f = io.read()
        assert f.session_start_time == started and f.institution == "NYU"
        assert (f.subject.subject_id, f.subject.species, f.subject.sex, f.subject.age) == (
            "NYU-40", "Mus musculus", "M", "P120D")
        assert f.units.resolution == 1 / 30000


def test_nwb_reads_electrode_locations(tmp_path, small):
    from datetime import datetime, timezone

    import pynwb

    nwb = pynwb.NWBFile(session_description="s", identifier="x",
                        session_start_time=datetime(2021, 4, 14, tzinfo=timezone.utc))
    device = nwb.create_device("probe")
    group = nwb.create_electrode_group("shank", description="", location="CA1", device=device)
    for region in ("CA1", "DG"):
        nwb.add_electrode(group=group, location=region)
    nwb.add_unit_column("quality", "curation label")
    for i, train in enumerate(small.spike_times[:2]):
        nwb.add_unit(spike_times=train, electrodes=[i], quality=["good", "mua"][i])
    path = tmp_path / "probe.nwb"
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    rec = load_recording(path)
    assert rec.unit_info["location"].tolist() == ["CA1", "DG"]
    assert [str(q) for q in rec.unit_info["quality"]] == ["good", "mua"]
    for ours, theirs in zip(small.spike_times[:2], rec.spike_times):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("layout", ["legacy", *NEWER])
def test_maxwell_round_trip(tmp_path, small, layout):
    path = tmp_path / "rec.raw.h5"
    write_maxwell(small, path, layout=layout)
    back = load_recording(path)
    assert back.source["format"] == "maxwell" and back.source["sample_rate"] == 20000.0
    assert back.source["first_frame"] == 123456
    # Frames are 50 us: times come back within half a frame.
    assert_same_trains(small, back, atol=0.5 / 20000)
    assert "mean_abs_amplitude" in back.unit_info


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".npz"])
def test_table_round_trip(tmp_path, small, suffix):
    path = tmp_path / f"spikes{suffix}"
    write_table(small, path)
    back = load_recording(path)
    assert back.source["format"] == "table"
    assert_same_trains(small, back, atol=1e-9)


def test_a_decimal_comma_csv_reads_as_excel_wrote_it(tmp_path, small):
    """Excel in a decimal-comma locale separates columns with semicolons: 0,25 is 0.25 s."""
    path = tmp_path / "spikes.csv"
    write_table(small, path)
    frame = pd.read_csv(path)
    semi = tmp_path / "excel.csv"
    frame.to_csv(semi, sep=";", decimal=",", index=False)
    assert "," in semi.read_text().splitlines()[1]   # the times have decimal commas
    assert_same_trains(small, load_recording(semi), atol=1e-9)


def test_a_header_typed_with_spaces_and_a_header_alone(tmp_path):
    """"unit, time_s" as typed in a spreadsheet reads; a header with no rows says there is
    nothing in it (it said the time column held objects)."""
    spaced = tmp_path / "spaced.csv"
    spaced.write_text("unit, time_s\n1, 0.5\n2, 1.5\n")
    assert load_recording(spaced).n_spikes == 2
    alone = tmp_path / "alone.csv"
    alone.write_text("unit,time_s\n")
    with pytest.raises(SpikevizError, match="alone.csv: the file holds no units"):
        load_recording(alone)


def test_table_in_samples_needs_a_rate(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("unit,sample\n1,300\n1,600\n2,900\n")
    with pytest.raises(SpikevizError, match="s.csv: times are in samples.*--sample-rate"):
        load_recording(path)
    rec = load_recording(path, sample_rate=30000)
    np.testing.assert_allclose(rec.spike_times[0], [0.01, 0.02])


def write_phy(folder, rec, rate=30000.0, params=True, labels=None):
    """A Kilosort/phy folder from real spike times (what Kilosort writes, minus waveforms)."""
    folder.mkdir()
    samples = np.concatenate([np.round(t * rate).astype(np.uint64) for t in rec.spike_times])
    clusters = np.concatenate([np.full(t.size, i, dtype=np.int32) for i, t in enumerate(rec.spike_times)])
    order = np.argsort(samples, kind="stable")
    np.save(folder / "spike_times.npy", samples[order])
    np.save(folder / "spike_clusters.npy", clusters[order])
    if params:
        (folder / "params.py").write_text(
            f"dat_path = 'raw.bin'\nn_channels_dat = 385\ndtype = 'int16'\noffset = 0\n"
            f"sample_rate = {rate}\nhp_filtered = False\n")
    if labels is not False:   # False: a folder without cluster labels
        labels = labels or ["good"] * rec.n_units
        (folder / "cluster_KSLabel.tsv").write_text(
            "cluster_id\tKSLabel\n" + "".join(f"{i}\t{g}\n" for i, g in enumerate(labels)))
    return folder


def test_phy_folder_without_labels_keeps_clusters_at_0_1_hz_and_says_so(tmp_path, small, capsys):
    # Such a folder kept every cluster, some of one spike, without a word.
    import warnings

    from spikeviz.cli import main
    from spikeviz.errors import DataWarning
    from spikeviz.data.recording import Recording

    singles = tuple(t[:1].copy() for t in small.spike_times[:3])   # real spikes, one a cluster
    assert all(t.size >= 0.1 * small.duration_s for t in small.spike_times)
    rec = Recording("ks", np.arange(15), small.spike_times + singles, small.duration_s)
    folder = write_phy(tmp_path / "ks", rec, labels=False)
    with pytest.warns(DataWarning, match=r"no cluster labels .*kept the 12 of 15 clusters firing "
                                         r"at 0.1 Hz or more \(--min-rate HZ"):
        assert load_recording(folder).unit_ids.tolist() == list(range(12))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_recording(folder, min_rate_hz=0).n_units == 15
    assert main(["inspect", str(folder), "--min-rate", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["units"] < 12
    assert main(["inspect", str(folder), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["units"] == 12
    assert err.startswith("spikeviz: warning: ks: no cluster labels") and err.count("\n") == 1


def test_phy_folder_round_trip_and_noise(tmp_path, small):
    labels = ["good"] * 10 + ["noise", "mua"]
    folder = write_phy(tmp_path / "ks", small, labels=labels)
    (folder / "cluster_group.tsv").write_text("cluster_id\tgroup\n11\tnoise\n")
    rec = load_recording(folder)
    assert rec.source["format"] == "phy" and rec.source["sample_rate"] == 30000.0
    assert rec.unit_ids.tolist() == list(range(10))  # 10 (KS noise) and 11 (curated noise) dropped
    np.testing.assert_allclose(rec.spike_times[3], small.spike_times[3], atol=0.5 / 30000)
    with_noise = load_recording(folder, include_noise=True)
    assert with_noise.n_units == 12
    assert with_noise.unit_info["label"].tolist()[10:] == ["noise", "noise"]


def test_phy_folder_without_params_needs_sample_rate(tmp_path, small):
    folder = write_phy(tmp_path / "ks", small, params=False)
    with pytest.raises(SpikevizError, match="ks: no params.py.*--sample-rate"):
        load_recording(folder)
    assert load_recording(folder, sample_rate=30000).n_units == 12


def test_cli_inspect_on_phy_folder_without_params(tmp_path, small, capsys):
    from spikeviz.cli import main

    folder = write_phy(tmp_path / "ks", small, params=False)
    assert main(["inspect", str(folder), "--sample-rate", "30000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "phy" and out["units"] == 12 and out["spikes"] == small.n_spikes


@pytest.mark.parametrize("name", sorted(MEASURED))
def test_cli_inspect_reproduces_measured_counts(name, capsys):
    from spikeviz.cli import main

    units, spikes, duration, mean_rate, median_rate, density = MEASURED[name]
    assert main(["inspect", "--session", name, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {k: out[k] for k in ("format", "units", "spikes")} == {"format": "asdf", "units": units,
                                                                  "spikes": spikes}
    assert out["duration_s"] == pytest.approx(duration)
    assert round(out["mean_rate_hz"], 1) == mean_rate and round(out["median_rate_hz"], 1) == median_rate
    assert round(out["density_1ms"], 3 if density > 0.01 else 4) == density


MAXWELL_SPIKES = np.dtype([("frameno", "<i8"), ("channel", "<i4"), ("amplitude", "<f4")])


def maxwell_spikes(rec, first: int, rate: float = 20000.0) -> np.ndarray:
    rows = [(first + int(round(t * rate)), int(uid), -40.0) for uid, train in
            zip(rec.unit_ids, rec.spike_times) for t in train]
    return np.sort(np.array(rows, dtype=MAXWELL_SPIKES), order="frameno")


def test_maxwell_file_in_maxwells_own_newer_layout(tmp_path, small):
    """The layout MaxWell's software writes from version 20190530 (as its users' scripts read it):
    data in data_store/data0000 hard-linked as recordings/rec0000/well000, the rate an array, the
    routed frames in frame_nos, no n_frames attribute, and spikes detected before and after the
    saved recording (left out)."""
    import h5py

    first, rate = 2_000_000, 20000.0
    n = int(round(small.duration_s * rate))
    spikes = maxwell_spikes(small, first)
    stray = np.array([(first - 500, 0, -40.0), (first + n + 10, 1, -40.0)], dtype=MAXWELL_SPIKES)
    path = tmp_path / "data.raw.h5"
    with h5py.File(path, "w") as f:
        f["version"] = np.array([b"20190530"])
        data = f.create_group("data_store/data0000")
        data["spikes"] = np.sort(np.concatenate([spikes, stray]), order="frameno")
        data["settings/sampling"] = np.array([rate])
        data["settings/mapping"] = np.array(
            [(int(u), 1000 + int(u), 17.5 * int(u), 35.0) for u in small.unit_ids],
            dtype=[("channel", "<i4"), ("electrode", "<i4"), ("x", "<f8"), ("y", "<f8")])
        data["groups/routed/frame_nos"] = np.arange(first, first + n, dtype=np.int64)
        data["start_time"], data["stop_time"] = np.array([0]), np.array([int(small.duration_s * 1e3)])
        f["recordings/rec0000/well000"] = data   # a hard link, as MaxWell writes it
    with pytest.warns(DataWarning, match="2 of .* spikes lie outside the recorded frames"):
        back = load_recording(path)
    assert back.source["sample_rate"] == rate and back.source["first_frame"] == first
    assert back.source["spikes_outside_recording"] == 2
    assert back.duration_s == pytest.approx(n / rate)
    assert_same_trains(small.select_units([u for u, t in zip(small.unit_ids, small.spike_times)
                                           if t.size]), back, atol=0.5 / rate)


def test_maxwell_file_in_the_legacy_layout_takes_its_length_from_sig(tmp_path, small):
    """Legacy MaxOne files: /sig is (1028, frames), its last two rows the first frame number;
    the recording lasts as many frames as /sig has columns, not until the last spike, and a
    spike after them is left out with a warning (it was an error: "after the stated duration")."""
    import h5py

    first, rate = 70_000 + (3 << 16), 20000.0
    n = int(round(small.duration_s * rate)) + 4000
    path = tmp_path / "legacy.raw.h5"
    with h5py.File(path, "w") as f:
        f["version"] = np.array([b"20160704"])
        sig = f.create_dataset("sig", (1028, n), dtype="<u2")
        sig[1026, 0], sig[1027, 0] = first & 0xFFFF, first >> 16
        # The chip detects spikes after the saved frames too: left out, as the newer layout's.
        stray = np.array([(first + n + 10, 1, -40.0)], dtype=MAXWELL_SPIKES)
        f["proc0/spikeTimes"] = np.concatenate([maxwell_spikes(small, first), stray])
    with pytest.warns(DataWarning, match="1 of .* spikes lie outside the recorded frames"):
        back = load_recording(path)
    assert back.source["layout"] == "legacy" and back.source["first_frame"] == first
    assert back.duration_s == pytest.approx(n / rate) and back.source["spikes_outside_recording"] == 1
    assert_same_trains(small.select_units([u for u, t in zip(small.unit_ids, small.spike_times)
                                           if t.size]), back, atol=0.5 / rate)


def test_phy_cluster_info_and_spike_templates(tmp_path, small):
    """phy's cluster_info.tsv (labels and per-cluster columns, ids in 'id' or 'cluster_id') and a
    Kilosort folder that has only spike_templates.npy (no curation yet)."""
    folder = write_phy(tmp_path / "ks", small)
    (folder / "cluster_KSLabel.tsv").unlink()
    (folder / "spike_clusters.npy").rename(folder / "spike_templates.npy")
    rows = "".join(f"{i}\t{'noise' if i == 3 else 'good'}\t{20.0 * i}\t{i + 100}\n"
                   for i in range(small.n_units))
    (folder / "cluster_info.tsv").write_text("id\tgroup\tdepth\tch\n" + rows)
    rec = load_recording(folder)
    assert rec.n_units == small.n_units - 1 and 3 not in rec.unit_ids.tolist()
    assert rec.unit_info["depth"].tolist() == [20.0 * i for i in rec.unit_ids]
    assert rec.unit_info["label"].tolist() == ["good"] * rec.n_units
    for cluster, train in zip(rec.unit_ids, rec.spike_times):   # cluster i is unit i of small
        np.testing.assert_allclose(train, small.spike_times[cluster], rtol=0, atol=0.5 / 30000)
    everything = load_recording(folder, include_noise=True)
    assert everything.n_units == small.n_units
    assert everything.unit_info["label"][3] == "noise"
