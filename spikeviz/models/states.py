"""The population-state model: a Markov chain over the population's activity patterns in 10-ms blocks drives every unit, so free runs keep the recording's bursts, synchrony and correlations without feeding spikes back."""
from __future__ import annotations

import copy
import warnings

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import SpikevizError
from ..measures.population import CORR_MS, count_correlations, similarity, window_sums
from ..measures.uncertainty import BlockScores, guarded_choice
from .glm import _as_binary

BLOCK_MS = 10.0             # a state holds for one block: bursts build and end over tens of ms
STATE_COUNTS = (8, 16, 32)  # candidates, chosen on held-out bins
_LOW, _HIGH = 1e-6, 0.9     # a unit's spike probability in a state stays inside (0, 1)
_SAMPLE_ROWS = 65_536       # bins drawn per chunk (an hour of 128 units never sits in memory)
REFRACTORY_MS = 20.0        # a unit's own spike can lower its probability for this long after it
_RECOVERY_PRIOR = 0.5       # pseudo-spikes that pull a lag's recovery towards 1 (no suppression)
_RECOVERY_FLOOR = 1e-3      # a spike inside a dead time stays possible (finite log-likelihood)
_NEVER = -(1 << 40)         # "last spike" of a unit with none seen: every lag is past the window
WARMUP_SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)   # the warm-up's share of the chain's evidence
_TRANSITION_PRIOR = 0.1     # pseudo-count per transition: one never seen stays possible


@numba.njit(cache=True, nogil=True)
def _filter(X, rates, transitions, start, block, recovery):  # pragma: no cover - compiled
    """Forward filter: row t of the returned (T, K) matrix is the state distribution of bin t+1
    given X[..t]; bins whose index is a multiple of `block` start a block (the state moves on
    along `transitions`). A unit that spiked lag <= R bins before bin t (R = recovery's columns)
    spikes there with probability rate * recovery[unit, lag - 1]: the exact emission given the
    observed past."""
    T, N = X.shape
    K = len(start)
    R = recovery.shape[1]
    logit = np.log(rates) - np.log1p(-rates)
    silent_each = np.log1p(-rates)
    silent = silent_each.sum(axis=1)
    out = np.empty((T, K))
    pi = start.copy()
    last = np.full(N, _NEVER, np.int64)
    for t in range(T):
        lw = np.log(pi + 1e-300) + silent
        for u in range(N):
            lag = t - last[u]
            if lag <= R:
                h = recovery[u, lag - 1]
                for k in range(K):
                    p = rates[k, u] * h
                    if X[t, u]:
                        lw[k] += np.log(p) - silent_each[k, u]
                    else:
                        lw[k] += np.log1p(-p) - silent_each[k, u]
            elif X[t, u]:
                for k in range(K):
                    lw[k] += logit[k, u]
            if X[t, u]:
                last[u] = t
        pi = np.exp(lw - lw.max())
        pi /= pi.sum()
        if (t + 1) % block == 0:
            pi = pi @ transitions
        out[t] = pi
    return out


@numba.njit(cache=True, nogil=True)
def _factors(X, recovery, last):  # pragma: no cover - compiled
    """(T, N) float32: row t is each unit's recovery factor in bin t+1 given its spikes in X[..t]
    (1 when its last spike is more than R bins back). `last` holds each unit's last spike as a
    row index of X (negative: before it) and is moved on by len(X) on return, for the next chunk."""
    T, N = X.shape
    R = recovery.shape[1]
    out = np.ones((T, N), np.float32)
    for t in range(T):
        for u in range(N):
            if X[t, u]:
                last[u] = t
            lag = t + 1 - last[u]
            if lag <= R:
                out[t, u] = recovery[u, lag - 1]
    last -= T
    return out


@numba.njit(cache=True, nogil=True)
def _free_draw(rates, states, recovery, U, last):  # pragma: no cover - compiled
    """Free-running draws (n, N) uint8: unit u spikes in bin i when U[i, u] < its state's rate times
    its recovery factor, the lag counted from its own last spike (drawn here, or in the past:
    `last` holds it as a row index, negative before row 0, and is moved on by n on return)."""
    n, N = U.shape
    R = recovery.shape[1]
    out = np.zeros((n, N), np.uint8)
    for i in range(n):
        s = states[i]
        for u in range(N):
            p = rates[s, u]
            lag = i - last[u]
            if lag <= R:
                p *= recovery[u, lag - 1]
            if U[i, u] < p:
                out[i, u] = 1
                last[u] = i
    last -= n
    return out


@numba.njit(cache=True, nogil=True)
def _hazard(X, rates, transitions, start, block, window):  # pragma: no cover - compiled
    """For fitting on X (T, N): per unit and lag 1..`window` since its own last spike, the spikes
    seen (N, window) and the spikes the states alone predict there (N, window): the forward
    filter's probability given everyone's past (as `_filter` without recovery), so a spike that
    tells of its state is not taken for a spike the state had to have."""
    T, N = X.shape
    K = len(start)
    logit = np.log(rates) - np.log1p(-rates)
    silent = np.log1p(-rates).sum(axis=1)
    seen = np.zeros((N, window))
    expected = np.zeros((N, window))
    last = np.full(N, _NEVER, np.int64)
    pi = start.copy()
    for t in range(T):
        lw = np.log(pi + 1e-300) + silent
        for u in range(N):
            lag = t - last[u]
            if lag <= window:
                p = 0.0
                for k in range(K):
                    p += pi[k] * rates[k, u]
                expected[u, lag - 1] += p
                if X[t, u]:
                    seen[u, lag - 1] += 1.0
            if X[t, u]:
                last[u] = t
                for k in range(K):
                    lw[k] += logit[k, u]
        pi = np.exp(lw - lw.max())
        pi /= pi.sum()
        if (t + 1) % block == 0:
            pi = pi @ transitions
    return seen, expected


@numba.njit(cache=True, nogil=True)
def _exposure(X, states, n_states, recovery):  # pragma: no cover - compiled
    """Per state and unit, the sum of the recovery factors over the state's bins (K, N): a
    state's rate divides its spikes by it, so that suppression keeps the unit's count."""
    T, N = X.shape
    R = recovery.shape[1]
    out = np.zeros((n_states, N))
    last = np.full(N, _NEVER, np.int64)
    for t in range(T):
        s = states[t]
        for u in range(N):
            lag = t - last[u]
            out[s, u] += recovery[u, lag - 1] if lag <= R else 1.0
            if X[t, u]:
                last[u] = t
    return out


@numba.njit(cache=True, nogil=True)
def _recovery(seen, expected, prior, floor):  # pragma: no cover - compiled
    """(N, R) recovery factors from the spikes seen and predicted at lags 1..R (`_hazard`): per
    unit, their ratio at each lag, pulled towards 1 (no suppression) by `prior` pseudo-spikes,
    made non-decreasing in the lag (pooled adjacent violators: a unit recovers from its own
    spike, it does not relapse) and kept in [floor, 1]: it can only suppress."""
    N, R = seen.shape
    out = np.ones((N, R))
    so, se = np.empty(R), np.empty(R)
    size = np.empty(R, np.int64)
    for u in range(N):
        m = 0
        for k in range(R):
            so[m], se[m], size[m] = seen[u, k], expected[u, k], 1
            m += 1
            while m > 1 and ((so[m - 2] + prior) / (se[m - 2] + prior)
                             > (so[m - 1] + prior) / (se[m - 1] + prior)):
                so[m - 2] += so[m - 1]
                se[m - 2] += se[m - 1]
                size[m - 2] += size[m - 1]
                m -= 1
        k = 0
        for b in range(m):
            h = min(1.0, max(floor, (so[b] + prior) / (se[b] + prior)))
            for j in range(size[b]):
                out[u, k + j] = h
            k += size[b]
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
    spike is fed back to the population, and each state's rates are the recording's.

    Refractoriness: for `refractory_ms` after a unit's own spike, its probability is its state's
    rate times a recovery factor h(lag) in [0, 1], fitted per unit on the training stretch (the
    spikes seen at each lag over those the states alone predict there, by the filter given the
    real past; pulled towards 1 where the data are few, non-decreasing in the lag, capped at 1).
    The factor can only suppress, so a unit cannot excite itself into a runaway; each state's
    rates are divided by the mean factor its bins saw, so a unit keeps its count. A unit's own
    bursts beyond its state's rate are not modelled (the factor stays at 1 there).
    refractory_ms=0 leaves units without it: the model before it, draw for draw.

    A recording drifts: `on_warmup` re-estimates the chain on a stretch's warm-up where that
    predicts the warm-up better beyond doubt (the states and their rates stay).
    """

    name = "states"

    def __init__(self, bin_ms: float = 1.0, n_states: tuple[int, ...] = STATE_COUNTS,
                 by: str = "pattern", n_components: int = 10, holdout: float = 0.15,
                 max_fit_bins: int = 300_000, refractory_ms: float = REFRACTORY_MS,
                 seed: int = 0):
        if not n_states or min(n_states) < 2 or not 0 < holdout < 1:
            raise SpikevizError(f"n_states needs counts of at least 2 and holdout a fraction in "
                                f"(0, 1), got {n_states} and {holdout}")
        if by not in ("pattern", "level"):
            raise SpikevizError(f"states are found by 'pattern' or 'level', got by={by!r}")
        self.bin_ms, self.n_states, self.by = float(bin_ms), tuple(n_states), by
        self.n_components = n_components
        self.holdout, self.max_fit_bins, self.seed = holdout, max_fit_bins, seed
        self.block = max(1, int(round(BLOCK_MS / self.bin_ms)))
        self.refractory_ms = float(refractory_ms)
        self.lags = max(0, int(round(self.refractory_ms / self.bin_ms)))
        self.rates_: np.ndarray | None = None
        self.recovery_: np.ndarray | None = None   # (N, lags); (N, 0) when fitted without

    def fit(self, X_train: np.ndarray) -> "PopulationStates":
        # KMeans adds its threads' partial sums in the order they finish, and LAPACK splits the
        # PCA by thread count: on one thread every process and machine finds the same states (a
        # page with one BLAS thread and `generate` with two found different ones, so their trains
        # differed depending on which had filled the disk cache).
        with threadpool_limits(1):
            return self._fit(_as_binary(X_train))

    def _fit(self, X: np.ndarray) -> "PopulationStates":
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
        scores = []
        for k in candidates:
            self._fit_states(X[:cut], k)
            sims = [similarity(real, count_correlations(window_sums(
                self.simulate(past, len(held), seed=self.seed + i), w))) for i in range(2)]
            scores.append(float(np.mean([-1.0 if v is None else v for v in sims])))
        # Arrays only, as every fitted attribute here: a fit is stored and read back as arrays
        # (models.registry.fitted_arrays), so `generate` after the page does not fit it again.
        self.candidates_, self.similarities_ = np.array(candidates), np.array(scores)
        self.n_states_ = int(self.candidates_[np.argmax(self.similarities_)])
        self._fit_states(X, self.n_states_)
        return self

    @property
    def selection(self) -> dict[int, float]:
        """The state counts tried, each with its free runs' correlation similarity."""
        return dict(zip(self.candidates_.tolist(), self.similarities_.tolist()))

    def _fit_states(self, X: np.ndarray, k: int) -> None:
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA
        from sklearn.exceptions import ConvergenceWarning

        B = self._blocks(X)
        n = len(B)
        self.unit_means_ = B.mean(0)
        # The projection to the leading components (none: the population count, by="level").
        self.projection_ = np.zeros((0, X.shape[1]), np.float32)
        if self.by == "pattern":
            pca = PCA(min(self.n_components, *B.shape), random_state=self.seed).fit(self._scaled(B))
            self.projection_ = pca.components_.astype(np.float32)
            self.projection_mean_ = pca.mean_.astype(np.float32)
        Z = self._features(B)
        with warnings.catch_warnings():
            # Fewer distinct patterns than k (a sparse level): the empty clusters are dropped.
            warnings.simplefilter("ignore", ConvergenceWarning)
            kmeans = KMeans(k, n_init=3, random_state=self.seed).fit(Z)
        kept, labels = np.unique(kmeans.labels_, return_inverse=True)
        self.centers_ = kmeans.cluster_centers_[kept]
        k = len(kept)
        self.counts_ = self._transition_counts(labels, k)
        self.transitions_ = self._chain(self.counts_)
        occupancy = np.bincount(labels, minlength=k).astype(np.float64)
        spikes = np.zeros((k, X.shape[1]))
        np.add.at(spikes, labels, B)
        self.rates_ = np.clip((spikes + 0.01) / (self.block * occupancy + 1)[:, None], _LOW, _HIGH)
        self.occupancy_ = occupancy / occupancy.sum()
        self.recovery_ = np.ones((X.shape[1], 0))
        if self.lags:
            # The recovery given the states' rates, then the rates given the recovery: a state's
            # spikes over the factors its bins saw, so that suppression keeps the count.
            Xb = np.ascontiguousarray(X[:n * self.block], np.uint8)
            states = np.repeat(labels, self.block)
            seen, expected = _hazard(Xb, self.rates_, self.transitions_, self.occupancy_,
                                     self.block, self.lags)
            recovery = _recovery(seen, expected, _RECOVERY_PRIOR, _RECOVERY_FLOOR)
            exposure = _exposure(Xb, states, k, recovery)
            self.rates_ = np.clip((spikes + 0.01) / (exposure + 1), _LOW, _HIGH)
            self.recovery_ = recovery

    def _blocks(self, X: np.ndarray) -> np.ndarray:
        """(blocks, N) float32: each unit's spike count in each whole block of X."""
        n = len(X) // self.block
        return X[:n * self.block].reshape(n, self.block, -1).sum(1, dtype=np.float32)

    def _labels(self, B: np.ndarray) -> np.ndarray:
        """The state of each block of counts B: its nearest state centre, in the features the
        states were clustered in."""
        Z = self._features(B)
        return ((Z[:, None, :] - self.centers_[None]) ** 2).sum(-1).argmin(1)

    def _scaled(self, B: np.ndarray) -> np.ndarray:
        return np.sqrt(B / (self.unit_means_ + 1e-3))

    def _features(self, B: np.ndarray) -> np.ndarray:
        """What blocks of counts B are clustered by: the leading principal components of their
        scaled counts, or the population count (by="level": no projection)."""
        if not len(self.projection_):
            return B.sum(1, keepdims=True)
        return (self._scaled(B) - self.projection_mean_) @ self.projection_.T

    @staticmethod
    def _transition_counts(labels: np.ndarray, k: int) -> np.ndarray:
        counts = np.zeros((k, k))
        np.add.at(counts, (labels[:-1], labels[1:]), 1)
        return counts

    def _chain(self, counts: np.ndarray, warm: np.ndarray | None = None,
               share: float = 0.0) -> np.ndarray:
        """Transition probabilities from the training stretch's counts, with the share `share`
        of the evidence from `warm`'s (scaled to as many transitions as the training's)."""
        if warm is not None and share > 0 and warm.sum() > 0:
            counts = (1 - share) * counts + share * warm * (counts.sum() / warm.sum())
        counts = counts + _TRANSITION_PRIOR
        return counts / counts.sum(1, keepdims=True)

    def on_warmup(self, X: np.ndarray, start: int, stop: int) -> "PopulationStates":
        """This model with its chain adapted to X[start:stop], the warm-up of a stretch to score
        (its bins before the scored ones, never a scored bin).

        A recording drifts: on the Aplysia recordings the test split is 2-50x less synchronous
        than the train split, so a chain fitted on the train split spends too long in its burst
        states. The warm-up's blocks are labelled with the fitted states, and their transitions
        get a share (WARMUP_SHARES) of the chain's evidence: the share whose chain best predicts
        the warm-up's bins (log-likelihood of the filter; each half predicted by a chain counted
        on the other half), kept only if its gain over the chain as fitted has a 95 %
        block-bootstrap interval above 0; then counted on the whole warm-up. The states' rates
        are kept. A warm-up of fewer than four blocks leaves the model as it is."""
        X = self._check(X)
        if not 1 <= start < stop <= len(X):
            raise SpikevizError(f"a warm-up needs 1 <= start < stop <= {len(X)} bins, got "
                                f"{start} and {stop}")
        k = len(self.transitions_)
        blocks = self._labels(self._blocks(X[start:stop]))
        half = len(blocks) // 2
        mid = start + half * self.block
        if half < 2:
            return self
        # Two folds: each half's bins predicted by a chain counted on the other half, so that
        # every bin of the warm-up is judged and none by counts that include it.
        folds = [(self._transition_counts(blocks[half:], k), start, mid),
                 (self._transition_counts(blocks[:half], k), mid, stop)]
        Y = np.concatenate([X[a + 1:b] for _, a, b in folds])
        scores = {}
        for share in WARMUP_SHARES:
            model = copy.copy(self)
            parts = []
            for counts, a, b in folds:
                model.transitions_ = self._chain(self.counts_, counts, share)
                parts.append(model.predict(X[start:b - 1])[a - start:])
            scores[share] = BlockScores.from_scores(Y, np.concatenate(parts))
        share, evidence = guarded_choice(scores, self.seed)
        adapted = copy.copy(self)
        adapted.warmup_ = {"share": share, **evidence, "bins": len(Y)}
        if share:
            adapted.transitions_ = self._chain(
                self.counts_, self._transition_counts(blocks, k), share)
        return adapted

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = _as_binary(X)
        if self.rates_ is None:
            raise SpikevizError("the population-state model is not fitted: call fit(X_train) first")
        if X.shape[1] != self.rates_.shape[1]:
            raise SpikevizError(f"the population-state model was fitted on {self.rates_.shape[1]} "
                                f"units, data has {X.shape[1]}")
        return np.ascontiguousarray(X, np.uint8)

    def _recovery_of(self) -> np.ndarray:
        """The (N, R) recovery factors; R = 0 (no refractoriness) when there are none."""
        if self.recovery_ is None:
            return np.ones((self.rates_.shape[1], 0))
        return np.ascontiguousarray(self.recovery_, np.float64)

    def posterior(self, X: np.ndarray) -> np.ndarray:
        """(T, K): row t is the distribution of the state of bin t+1 given X[..t]."""
        return _filter(self._check(X), self.rates_, self.transitions_, self.occupancy_, self.block,
                       self._recovery_of())

    def predict(self, X: np.ndarray) -> np.ndarray:
        """P[t, i]: probability that unit i spikes in bin t+1 given X[..t] (the state filtered
        from everyone's past, the recovery factor from the unit's own)."""
        X = self._check(X)
        P = (self.posterior(X) @ self.rates_).astype(np.float32)
        recovery = self._recovery_of()
        if recovery.shape[1]:
            P *= _factors(X, recovery, np.full(X.shape[1], _NEVER, np.int64))
        return P

    def sample(self, X: np.ndarray, seed: int = 0) -> np.ndarray:
        """Teacher-forced trains (T, N) uint8 aligned with `predict`: row t draws one state from
        the filter given the real X[..t], then every unit from that state, jointly. The bins of a
        block share one uniform number for their state draws, so a block keeps one state as far
        as the filter allows (each bin's state is still distributed as the filter says)."""
        X = self._check(X)
        Pi = self.posterior(X)
        rng = np.random.default_rng(seed)
        u = rng.random(len(Pi) // self.block + 2)[(np.arange(len(Pi)) + 1) // self.block]
        return self._draw(_inverse_cdf(np.cumsum(Pi, 1), u), rng, teacher=X)

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
        # Each unit's last spike in the past, as a row index before the run's first bin.
        last = np.full(X_past.shape[1], _NEVER, np.int64)
        fired = X_past.any(0)
        last[fired] = (len(X_past) - 1 - np.argmax(X_past[::-1, fired], axis=0)) - len(X_past)
        return self._draw(np.repeat(chain, np.diff(np.r_[0, starts, n_bins])), rng, last=last)

    def _draw(self, states: np.ndarray, rng: np.random.Generator, teacher: np.ndarray | None = None,
              last: np.ndarray | None = None) -> np.ndarray:
        """Each bin's units from its state, the recovery factor from the unit's own last spike:
        in `teacher`'s real rows (row t gives bin t+1's), or else drawn here after `last`."""
        N = self.rates_.shape[1]
        out = np.empty((len(states), N), np.uint8)
        rates = self.rates_.astype(np.float32)
        recovery = self._recovery_of()
        last = np.full(N, _NEVER, np.int64) if last is None else last.astype(np.int64)
        for s in range(0, len(states), _SAMPLE_ROWS):
            rows = states[s:s + _SAMPLE_ROWS]
            U = rng.random((len(rows), N), dtype=np.float32)
            if teacher is None:
                out[s:s + len(rows)] = _free_draw(rates, rows, recovery, U, last)
            elif recovery.shape[1]:
                out[s:s + len(rows)] = U < rates[rows] * _factors(teacher[s:s + len(rows)],
                                                                  recovery, last)
            else:
                out[s:s + len(rows)] = U < rates[rows]
        return out
