"""Binning: bin edges, unit selection, padding, collisions, windows and bit-packing."""
import numpy as np
import pytest

import spikeviz
from spikeviz import SpikevizError, bin_spikes
from spikeviz.data.recording import Recording, from_unit_times


def rec(trains, duration=1.0, ids=None):
    ids = np.arange(len(trains)) if ids is None else np.asarray(ids)
    return Recording("toy", ids, tuple(np.asarray(t, dtype=np.float64) for t in trains), duration,
                     {"format": "test", "path": "toy.csv"})


def test_bin_edges_are_exact_despite_float_noise():
    # 0.204 s * 1000 is 203.99999999999997 in floating point: it belongs to bin 204.
    b = bin_spikes(rec([[0.0, 0.204, 0.999]]), n_units=1, select="recorded")
    assert b.X.shape == (1000, 1)
    assert np.flatnonzero(b.X[:, 0]).tolist() == [0, 204, 999]


def test_collisions_counted():
    b = bin_spikes(rec([[0.0101, 0.0102, 0.0109, 0.5]]), n_units=1, select="recorded")
    assert b.X.sum() == 2 and b.collisions == 2


def test_rate_selection_keeps_recorded_order():
    trains = [[0.1], [0.1, 0.2, 0.3], [0.1, 0.2], [0.1, 0.2, 0.3, 0.4]]
    b = bin_spikes(rec(trains, ids=[10, 11, 12, 13]), n_units=2, select="rate")
    assert b.unit_ids.tolist() == [11, 13]
    assert b.X.sum(axis=0).tolist() == [3, 4]
    assert bin_spikes(rec(trains), n_units=2, select="recorded").unit_ids.tolist() == [0, 1]
    assert bin_spikes(rec(trains), n_units=2, select=[3, 0]).unit_ids.tolist() == [3, 0]


def test_too_few_units_is_an_error_or_padded():
    r = rec([[0.1], [0.2]])
    with pytest.raises(SpikevizError, match="toy.csv: the recording has 2 units but 4 were asked"):
        bin_spikes(r, n_units=4)
    b = bin_spikes(r, n_units=4, pad=True)
    assert b.padded == 2 and b.X.shape == (1000, 4) and b.X[:, 2:].sum() == 0


@pytest.mark.parametrize("bad", [0, -1, float("nan")])
def test_bad_bin_size(bad):
    with pytest.raises(SpikevizError, match="bin size"):
        bin_spikes(rec([[0.1]]), bin_ms=bad, n_units=1)


def test_window_and_bin_size():
    r = rec([[0.05, 0.15, 0.25, 0.95]], duration=1.0)
    b = bin_spikes(r, bin_ms=100, n_units=1, start_s=0.1, stop_s=0.3)
    assert b.X[:, 0].tolist() == [1, 1] and b.start_s == 0.1
    np.testing.assert_allclose(b.times_s(), [0.1, 0.2])
    with pytest.raises(SpikevizError, match="empty time window"):
        bin_spikes(r, n_units=1, start_s=0.5, stop_s=0.5)


def test_packbits_round_trip_and_size_of_an_hour():
    vivo = spikeviz.load_session("invivo")
    b = bin_spikes(vivo)
    packed = b.packbits()
    assert packed.nbytes < 60e6  # one hour x 128 units at 1 ms
    np.testing.assert_array_equal(packed.unpack(1000, 5000), b.X[1000:5000])
    assert packed.n_bins == b.n_bins == 3_541_244


def test_from_unit_times_keeps_silent_units_and_checks_lengths():
    r = from_unit_times("t", np.array([2, 2, 5]), np.array([0.3, 0.1, 0.2]), 1.0,
                        {"path": "t.csv"}, unit_order=np.array([2, 3, 5]))
    assert r.unit_ids.tolist() == [2, 3, 5]
    assert [t.tolist() for t in r.spike_times] == [[0.1, 0.3], [], [0.2]]
    with pytest.raises(SpikevizError, match="t.csv: 2 unit labels but 3 spike times"):
        from_unit_times("t", np.array([1, 2]), np.array([0.1, 0.2, 0.3]), 1.0, {"path": "t.csv"})
