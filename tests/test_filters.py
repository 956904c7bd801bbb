"""The compiled exponential filter gives scipy.signal.lfilter's numbers to the bit, whole or in
pieces, into a strided view, for the spike matrices and floats it is given."""
import numpy as np
import pytest
from scipy.signal import lfilter

from spikeviz.models.filters import exponential_filter


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_the_filter_is_lfilter(dtype):
    rng = np.random.default_rng(0)
    X = (rng.random((5_000, 7)) < 0.05).astype(dtype)
    a = float(np.exp(-1 / 20))
    expected = lfilter([1.0 - a], [1.0, -a], X.astype(np.float64), axis=0).astype(np.float32)
    np.testing.assert_array_equal(exponential_filter(X, a), expected)
    # In pieces, the state carried: the same numbers.
    state = np.zeros(7)
    pieces = [exponential_filter(X[s:s + 1_234], a, state) for s in range(0, 5_000, 1_234)]
    np.testing.assert_array_equal(np.concatenate(pieces), expected)
    # From a given state, into a strided view of a larger array.
    start = rng.random(7)
    out = np.zeros((5_000, 3, 7), np.float32)
    exponential_filter(X, a, start.copy(), out[:, 1])
    zi = (a * start)[None]
    expected = lfilter([1.0 - a], [1.0, -a], X.astype(np.float64), axis=0, zi=zi)[0]
    np.testing.assert_array_equal(out[:, 1], expected.astype(np.float32))
    assert not out[:, 0].any() and not out[:, 2].any()


def test_the_filter_refuses_a_vector():
    with pytest.raises(ValueError, match=r"\(T, N\) matrix"):
        exponential_filter(np.zeros(10), 0.5)
