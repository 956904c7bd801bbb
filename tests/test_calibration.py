"""Target calibration: recovers a known temperature and offsets, shrinks sparse units, and is fitted strictly before what it generates."""
import numpy as np
import pytest

from spikeviz import SpikevizError
from spikeviz.calibration import fit_target_calibration, identity


def synthetic(T=60_000, N=12, temperature=2.0, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(-6.0, 1.5, (T, N))           # the model's logits: rare spikes, ~1-20 Hz
    offsets = np.linspace(-1.0, 1.5, N)
    Y = (rng.random((T, N)) < 1 / (1 + np.exp(-(z / temperature + offsets)))).astype(np.uint8)
    return z, Y, offsets


def test_recovers_temperature_and_offsets():
    z, Y, offsets = synthetic()
    cal = fit_target_calibration(z, Y)
    assert cal.temperature == pytest.approx(2.0, rel=0.1)
    np.testing.assert_allclose(cal.offsets, offsets, atol=0.25)
    np.testing.assert_allclose(cal.apply(z[:3]), z[:3] / cal.temperature + cal.offsets, rtol=1e-5)
    # Calibrated expected counts match the real ones unit by unit.
    np.testing.assert_allclose(cal.probabilities(z).sum(0), Y.sum(0), rtol=0.05)
    np.testing.assert_allclose(cal.rates, Y.mean(0), rtol=0.1)


def test_sparse_units_are_shrunk_toward_the_shared_bias():
    rng = np.random.default_rng(1)
    z = rng.normal(-5.0, 1.0, (4000, 10))
    Y = (rng.random(z.shape) < 1 / (1 + np.exp(-z))).astype(np.uint8)   # ~40 spikes a unit
    Y[:, 0] = 0                                  # silent in the warm-up
    Y[:, 1] = 0
    Y[[100, 2000, 3900], 1] = 1                  # three spikes
    cal = fit_target_calibration(z, Y)
    shared = np.median(cal.offsets[2:])
    expected = (1 / (1 + np.exp(-(z[:, 1] / cal.temperature + shared)))).sum()
    # A silent unit is pulled down, but not to -inf; the one with three spikes less far, and
    # less far than its own maximum-likelihood offset.
    assert shared - 3 < cal.offsets[0] < cal.offsets[1] < shared
    assert cal.offsets[1] > shared + np.log(3 / expected) + 0.2
    assert 0 < cal.rates[0] < cal.rates[1] < np.median(cal.rates[2:])


def test_no_spikes_or_bad_shapes():
    z, Y, _ = synthetic(T=1000, N=3)
    cal = fit_target_calibration(z, np.zeros_like(Y))
    assert cal.temperature == 1.0 and not cal.offsets.any()
    np.testing.assert_array_equal(identity(3).apply(z[:5]), z[:5].astype(np.float32))
    with pytest.raises(SpikevizError, match="shape"):
        fit_target_calibration(z, Y[:, :2])
