"""The population-state model: a Markov chain over the population's activity patterns in 10-ms blocks drives every unit, so free runs keep the recording's bursts, synchrony and correlations without feeding spikes back."""
from __future__ import annotations

import warnings

import numba
import numpy as np

from ..errors import SpikevizError
from ..measures.population import CORR_MS, count_correlations, similarity, window_sums
from .glm import _as_binary

BLOCK_MS = 10.0             # a state holds for one block: bursts build and end over tens of ms
STATE_COUNTS = (8, 16, 32)  # candidates, chosen on held-out bins
_LOW, _HIGH = 1e-6, 0.9     # a unit's spike probability in a state stays inside (0, 1)
_SAMPLE_ROWS = 65_536       # bins drawn per chunk (an hour of 128 units never sits in memory)


@numba.njit(cache=True, nogil=True)
def _filter(X, rates, transitions, start, block):  # pragma: no cover - compiled
    """Forward filter: row t of the returned (T, K) matrix is the state distribution of bin t+1
    given X[..t]; bins whose index is a multiple of `block` start a block (the state moves on
    along `transitions`)."""
    T, N = X.shape
    K = len(start)
    logit = np.log(rates) - np.log1p(-rates)
    silent = np.log1p(-rates).sum(axis=1)
    out = np.empty((T, K))
    pi = start.copy()
    for t in range(T):
        lw = np.log(pi + 1e-300) + silent
        for u in range(N):
            if X[t, u]:
                for k in range(K):
                    lw[k] += logit[k, u]
        pi = np.exp(lw - lw.max())
        pi /= pi.sum()
        if (t + 1) % block == 0:
            pi = pi @ transitions
        out[t] = pi
    return out


def _inverse_cdf(cdf: np.ndarray, u):
    """The state each uniform number `u` draws from cumulative probabilities `cdf` (last axis);
    rounding that leaves the last cdf under 1 never gives a state past the last one."""
    return np.minimum((np.asarray(u)[..., None] > cdf).sum(-1), cdf.shape[-1] - 1)


class PopulationStates:
    """A hidden population state, one per 10-ms block, that sets every unit's spike probability.

    Fitting labels each block of the training stretch by its activity pattern (k-means on the
    leading principal components of sqrt(count / unit rate), so a state is *which* units fire
    together, not only how many; by="level" clusters the population count alone, the ablation),
    then counts the block-to-block transitions and each unit's rate in each state. The number of
    states is chosen among `n_states` by what a generator is for: fitted on the first
    1 - `holdout` of the stretch, two free runs as long as the rest are compared with it by the
    similarity of their 20-ms count correlations (the next bin's likelihood picks the fewest
    states, whose runs lose most of the correlations); then it is refitted on all of it.

    Within a block, units are independent given the state; across units the shared state carries
    bursts, synchrony and correlations. `predict` filters the state from the past (a hidden Markov
    model's forward pass: causal); `sample` draws each bin's units jointly from one state drawn
    from that filter; `simulate` runs the chain on from the past. A free run cannot run away: no
    spike is fed back, and each state's rates are the recording's. What it lacks is each unit's
    own history (refractoriness, a unit's own bursts): within a state a unit fires like a
    Bernoulli process.
    """

    name = "states"

    def __init__(self, bin_ms: float = 1.0, n_states: tuple[int, ...] = STATE_COUNTS,
                 by: str = "pattern", n_components: int = 10, holdout: float = 0.15,
                 max_fit_bins: int = 300_000, seed: int = 0):
        if not n_states or min(n_states) < 2 or not 0 < holdout < 1:
            raise SpikevizError(f"n_states needs counts of at least 2 and holdout a fraction in "
                                f"(0, 1), got {n_states} and {holdout}")
        if by not in ("pattern", "level"):
            raise SpikevizError(f"states are found by 'pattern' or 'level', got by={by!r}")
        self.bin_ms, self.n_states, self.by = float(bin_ms), tuple(n_states), by
        self.n_components = n_components
        self.holdout, self.max_fit_bins, self.seed = holdout, max_fit_bins, seed
        self.block = max(1, int(round(BLOCK_MS / self.bin_ms)))
        self.rates_: np.ndarray | None = None

    def fit(self, X_train: np.ndarray) -> "PopulationStates":
        X = _as_binary(X_train)
        X = X[max(0, len(X) - self.max_fit_bins):]
        n_blocks = len(X) // self.block
        fit_blocks = int(n_blocks * (1 - self.holdout))
        candidates = [k for k in self.n_states if 20 * k <= fit_blocks]
        if not candidates or n_blocks - fit_blocks < 10:
            raise SpikevizError(f"the population-state model needs {20 * min(self.n_states)} "
                                f"blocks of {BLOCK_MS:g} ms to fit and 10 to check on; the "
                                f"training stretch has {n_blocks}")
        if not X.any():
            raise SpikevizError("the population-state model needs spikes in its training stretch")
        cut = fit_blocks * self.block
        held = X[cut:]
        w = max(1, int(round(CORR_MS / self.bin_ms)))
        real = count_correlations(window_sums(held, w))
        past = X[max(0, cut - 1000 * self.block):cut]    # whole blocks: the chain keeps its phase
        self.selection_ = {}
        for k in candidates:
            self._fit_states(X[:cut], k)
            sims = [similarity(real, count_correlations(window_sums(
                self.simulate(past, len(held), seed=self.seed + i), w))) for i in range(2)]
            self.selection_[k] = float(np.mean([-1.0 if v is None else v for v in sims]))
        self.n_states_ = max(self.selection_, key=self.selection_.get)
        self._fit_states(X, self.n_states_)
        return self

    def _fit_states(self, X: np.ndarray, k: int) -> None:
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA
        from sklearn.exceptions import ConvergenceWarning

        n = len(X) // self.block
        B = X[:n * self.block].reshape(n, self.block, -1).sum(1, dtype=np.float32)
        if self.by == "level":
            Z = B.sum(1, keepdims=True)
        else:
            Z = np.sqrt(B / (B.mean(0) + 1e-3))
            Z = PCA(min(self.n_components, *Z.shape), random_state=self.seed).fit_transform(Z)
        with warnings.catch_warnings():
            # Fewer distinct patterns than k (a sparse level): the empty clusters are dropped.
            warnings.simplefilter("ignore", ConvergenceWarning)
            labels = KMeans(k, n_init=3, random_state=self.seed).fit_predict(Z)
        labels = np.unique(labels, return_inverse=True)[1]
        k = labels.max() + 1
        counts = np.zeros((k, k))
        np.add.at(counts, (labels[:-1], labels[1:]), 1)
        counts += 0.1                       # a transition never seen stays possible
        self.transitions_ = counts / counts.sum(1, keepdims=True)
        occupancy = np.bincount(labels, minlength=k).astype(np.float64)
        spikes = np.zeros((k, X.shape[1]))
        np.add.at(spikes, labels, B)
        self.rates_ = np.clip((spikes + 0.01) / (self.block * occupancy + 1)[:, None], _LOW, _HIGH)
        self.occupancy_ = occupancy / occupancy.sum()

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = _as_binary(X)
        if self.rates_ is None:
            raise SpikevizError("the population-state model is not fitted: call fit(X_train) first")
        if X.shape[1] != self.rates_.shape[1]:
            raise SpikevizError(f"the population-state model was fitted on {self.rates_.shape[1]} "
                                f"units, data has {X.shape[1]}")
        return np.ascontiguousarray(X, np.uint8)

    def posterior(self, X: np.ndarray) -> np.ndarray:
        """(T, K): row t is the distribution of the state of bin t+1 given X[..t]."""
        return _filter(self._check(X), self.rates_, self.transitions_, self.occupancy_, self.block)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """P[t, i]: probability that unit i spikes in bin t+1 given X[..t]."""
        return (self.posterior(X) @ self.rates_).astype(np.float32)

    def sample(self, X: np.ndarray, seed: int = 0) -> np.ndarray:
        """Teacher-forced trains (T, N) uint8 aligned with `predict`: row t draws one state from
        the filter given the real X[..t], then every unit from that state, jointly. The bins of a
        block share one uniform number for their state draws, so a block keeps one state as far
        as the filter allows (each bin's state is still distributed as the filter says)."""
        Pi = self.posterior(X)
        rng = np.random.default_rng(seed)
        u = rng.random(len(Pi) // self.block + 2)[(np.arange(len(Pi)) + 1) // self.block]
        return self._draw(_inverse_cdf(np.cumsum(Pi, 1), u), rng)

    def simulate(self, X_past: np.ndarray, n_bins: int, seed: int = 0) -> np.ndarray:
        """Free running: `n_bins` bins (n_bins, N) uint8 after the real past X_past. The state of
        the first is drawn from the filter given the past; the chain moves on at each block."""
        X_past = self._check(X_past)
        if len(X_past) == 0:
            raise SpikevizError("a free run needs at least one bin of real past")
        rng = np.random.default_rng(seed)
        # The state changes at the bins that start a block, counted on from the past.
        first = (-len(X_past)) % self.block or self.block
        starts = np.arange(first, n_bins, self.block)
        chain = np.empty(len(starts) + 1, np.int64)
        chain[0] = _inverse_cdf(np.cumsum(self.posterior(X_past)[-1]), rng.random())
        cdf, u = np.cumsum(self.transitions_, 1), rng.random(len(starts))
        for i in range(len(starts)):
            chain[i + 1] = _inverse_cdf(cdf[chain[i]], u[i])
        return self._draw(np.repeat(chain, np.diff(np.r_[0, starts, n_bins])), rng)

    def _draw(self, states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = np.empty((len(states), self.rates_.shape[1]), np.uint8)
        rates = self.rates_.astype(np.float32)
        for s in range(0, len(states), _SAMPLE_ROWS):
            rows = states[s:s + _SAMPLE_ROWS]
            out[s:s + len(rows)] = rng.random((len(rows), out.shape[1]), dtype=np.float32) < rates[rows]
        return out
