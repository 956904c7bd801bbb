"""The population stack: a recording's own coupled-GLM logit plus a learned residual over each unit's features and the population's activity at six time scales, with a guard fitted on held-out bins and chosen again on a scored stretch's warm-up."""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ..errors import SpikevizError
from ..measures.uncertainty import MIN_BLOCK_BINS, MIN_BLOCKS, BlockScores, guarded_choice
from .glm import _ROWS, CoupledGLMPredictor, WindowSums, _as_binary

# The population's recent activity beyond the GLM's own 1 and 2-10 ms: bursts build and end
# over tens to hundreds of ms, and a silent gap precedes them.
SLOW_POPULATION_MS = ((11, 30), (31, 100), (101, 300), (301, 1000))
GUARD_STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)   # the residual's share, chosen on held-out bins


class Residual(nn.Module):
    """logit correction = MLP(features); the output layer starts at 0, so the untrained stack is
    its GLM."""

    def __init__(self, n_in: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                                 nn.GELU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, F: torch.Tensor) -> torch.Tensor:
        return self.net(F).squeeze(-1)


class StackPredictor:
    """logit = GLM logit + alpha * residual, for each unit of one recording.

    The base is the coupled GLM (`CoupledGLMPredictor`) fitted on the training stretch: the best
    baseline a user fits in seconds, so the learned part only has to find what it misses. The
    residual is an MLP, shared by the units, over the GLM's features and logit plus the fraction
    of the other units spiking 11-30, 31-100, 101-300 and 301-1000 ms back: nonlinear in the
    population state (a burst changes how a unit's own history counts). It is trained on the first
    (1 - holdout) of the stretch (at least 10 s held out), on every spike and a `neg_fraction`
    sample of the silent cells (offset-corrected); epochs stop on the held-out bins, and the guard
    `alpha_` keeps the residual only where it gains log-likelihood there beyond doubt (`_fit_guard`):
    a residual that does not carry to later bins is turned off. The GLM is fitted on the whole
    stretch, exactly as the glm-coupled baseline is, so the held-out bins are in its sample: the
    guard judges the residual against the very base it would replace. On a stretch to score,
    `on_warmup` chooses the share again on its warm-up (as `spikeviz evaluate` does). Fitted on
    one recording's units, in its order.
    """

    name = "stack"

    def __init__(self, bin_ms: float = 1.0, hidden: int = 64, epochs: int = 8, patience: int = 2,
                 neg_fraction: float = 0.05, holdout: float = 0.15, lr: float = 2e-3,
                 batch_size: int = 4096, max_fit_bins: int = 300_000, seed: int = 0):
        if not 0 < neg_fraction <= 1 or not 0 < holdout < 1:
            raise SpikevizError(f"neg_fraction must be in (0, 1] and holdout in (0, 1), got "
                                f"{neg_fraction} and {holdout}")
        self.bin_ms, self.hidden, self.epochs, self.patience = float(bin_ms), hidden, epochs, patience
        self.neg_fraction, self.holdout, self.lr = neg_fraction, holdout, lr
        self.batch_size, self.max_fit_bins, self.seed = batch_size, max_fit_bins, seed
        to_bins = lambda ms: max(1, int(round(ms / self.bin_ms)))  # noqa: E731
        self.slow_windows = [(to_bins(a), max(to_bins(a), to_bins(b)))
                             for a, b in SLOW_POPULATION_MS]
        self.glm_: CoupledGLMPredictor | None = None

    def _inputs(self, window, n_units: int) -> tuple[np.ndarray, np.ndarray]:
        """Residual inputs (rows, N, d) float32 and GLM logits (rows, N) from window sums."""
        feats = self.glm_.features_from(window, n_units)
        z = self.glm_.logit_of(feats)
        n_other = max(n_units - 1, 1)
        feats += [window.others(a, b) / (n_other * (b - a + 1)) for a, b in self.slow_windows]
        return np.stack(feats + [z], -1), z

    def _chunks(self, X: np.ndarray, start: int, stop: int):
        """(first bin, inputs, GLM logits) of the bins [start, stop) in chunks."""
        for s in range(start, stop, _ROWS):
            e = min(s + _ROWS, stop)
            yield (s,) + self._inputs(self.glm_._window_sums(X, s, e), X.shape[1])

    def _sample(self, X: np.ndarray, start: int, stop: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, ...]:
        """Inputs, GLM logits, labels and weights of every spike and a neg_fraction sample of
        the silent cells predicted from bins [start, stop); weights undo the sampling."""
        parts = []
        for s, F, z in self._chunks(X, start, stop):
            y = X[s + 1:s + 1 + len(F)].astype(bool)
            keep = y | (rng.random(y.shape, dtype=np.float32) < self.neg_fraction)
            parts.append((F[keep], z[keep], y[keep]))
        F, z, y = (np.concatenate(p) for p in zip(*parts))
        return F, z, y.astype(np.float32), np.where(y, 1.0, 1.0 / self.neg_fraction).astype(np.float32)

    def fit(self, X_train: np.ndarray) -> "StackPredictor":
        X = _as_binary(X_train)
        X = X[max(0, len(X) - self.max_fit_bins):]
        # At least MIN_BLOCKS bootstrap blocks held out: the guard needs an interval.
        held = max(int(len(X) * self.holdout), MIN_BLOCKS * MIN_BLOCK_BINS)
        if held > len(X) // 2:
            raise SpikevizError(f"the stack needs a training stretch of at least "
                                f"{2 * MIN_BLOCKS * MIN_BLOCK_BINS} bins (it holds out "
                                f"{MIN_BLOCKS * MIN_BLOCK_BINS} or {self.holdout:.0%} to choose "
                                f"its guard), got {len(X)}")
        cut = len(X) - held
        self.glm_ = CoupledGLMPredictor(self.bin_ms, seed=self.seed).fit(X)
        rng = np.random.default_rng(self.seed)
        F, z, y, _ = self._sample(X, 0, cut - 1, rng)
        Fh, zh, yh, wh = self._sample(X, cut - 1, len(X) - 1, rng)
        if not y.any() or not yh.any():
            raise SpikevizError("the stack needs spikes in both parts of its training stretch")
        self.mean_, self.scale_ = F.mean((0,)), F.std((0,)) + 1e-6
        # Inputs are clipped to the range trained on: a free run that wanders outside it (a
        # population rate never seen) meets the residual's edge, not its extrapolation.
        self.low_, self.high_ = F.min((0,)), F.max((0,))
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))  # noqa: E731
        F, Fh = t(self._standard(F)), t(self._standard(Fh))
        # Sampled silent cells shift the training log-odds by -log(neg_fraction).
        z, zh, y, yh, wh = t(z - np.log(self.neg_fraction)), t(zh), t(y), t(yh), t(wh)
        torch.manual_seed(self.seed)
        net = Residual(F.shape[1], self.hidden)
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=1e-4)
        bce = nn.functional.binary_cross_entropy_with_logits

        def held_out() -> float:
            with torch.no_grad():
                return float(bce(zh + net(Fh), yh, weight=wh))

        best, best_state, waited = held_out(), None, 0
        gen = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epochs):
            order = torch.randperm(len(y), generator=gen)
            for b in range(0, len(order), self.batch_size):
                i = order[b:b + self.batch_size]
                opt.zero_grad()
                bce(z[i] + net(F[i]), y[i]).backward()
                opt.step()
            loss = held_out()
            if loss < best:
                best, best_state, waited = loss, {k: v.clone() for k, v in net.state_dict().items()}, 0
            else:
                waited += 1
                if waited >= self.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        self.net_ = net.eval()
        self._fit_guard(X, cut)
        return self

    def _fit_guard(self, X: np.ndarray, cut: int) -> None:
        """alpha_ and guard_ from the held-out bins X[cut:] (`_choose_share`)."""
        self.alpha_, self.guard_ = self._choose_share(X, cut, len(X))

    def _choose_share(self, X: np.ndarray, start: int, stop: int) -> tuple[float, dict]:
        """The share of the residual in GUARD_STEPS with the best log-likelihood on every cell
        of X[start:stop] (each predicted from the bins before it), kept only if its gain over
        the GLM alone has a 95 % block-bootstrap interval above 0; else 0, the GLM. With the
        evidence."""
        Y = X[start:stop]
        z, r = np.empty(Y.shape, np.float32), np.empty(Y.shape, np.float32)
        for s, F, zc in self._chunks(X, start - 1, stop - 1):
            rows = slice(s - start + 1, s - start + 1 + len(F))
            z[rows], r[rows] = zc, self._residual(F)
        with np.errstate(over="ignore"):
            P = {a: 1.0 / (1.0 + np.exp(-(z + np.float32(a) * r))) for a in GUARD_STEPS}
        share, evidence = guarded_choice({a: BlockScores.from_scores(Y, p) for a, p in P.items()},
                                         self.seed)
        return share, evidence | {"bins": len(Y)}

    def on_warmup(self, X: np.ndarray, start: int, stop: int) -> "StackPredictor":
        """This stack with its guard chosen again on X[start:stop], the warm-up of a stretch to
        score (its bins before the scored ones, never a scored bin), and kept only if it was
        kept on the held-out training bins too.

        The held-out bins end where the train split ends; the warm-up ends where the scoring
        starts. A residual that gained on the first but not on the recording as it is later
        (Aplysia May2214's test split is far less synchronous than its train split: -0.069
        bits/spike against its GLM, though the held-out gain was +0.034 [+0.026, +0.042]) is
        turned off there, and the share follows the later recording (benchmarks/bench_stack.py).
        The fit itself is shared, not copied; a stack whose held-out guard is 0 is its GLM
        whatever the warm-up says, and is returned as it is."""
        X = self._check(X)
        if not 1 <= start < stop <= len(X):
            raise SpikevizError(f"a warm-up needs 1 <= start < stop <= {len(X)} bins, got "
                                f"{start} and {stop}")
        if self.alpha_ == 0:
            return self
        adapted = copy.copy(self)
        share, evidence = self._choose_share(X, start, stop)
        adapted.alpha_ = share
        adapted.guard_ = {**self.guard_, "warm_up": evidence}
        return adapted

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = _as_binary(X)
        if self.glm_ is None:
            raise SpikevizError("the stack is not fitted: call fit(X_train) first")
        if len(self.glm_.intercept_) != X.shape[1]:
            raise SpikevizError(f"stack fitted on {len(self.glm_.intercept_)} units, data has "
                                f"{X.shape[1]}")
        return X

    def _standard(self, F: np.ndarray) -> np.ndarray:
        return (np.clip(F, self.low_, self.high_) - self.mean_) / self.scale_

    def _probabilities(self, F: np.ndarray, z: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):      # a logit under -88 is a probability of 0
            return 1.0 / (1.0 + np.exp(-self._logits(F, z)))

    def _residual(self, F: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.net_(torch.from_numpy(self._standard(F)).float()).numpy()

    def _logits(self, F: np.ndarray, z: np.ndarray) -> np.ndarray:
        return z if self.alpha_ == 0 else z + np.float32(self.alpha_) * self._residual(F)

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = self._check(X)
        P = np.empty(X.shape, np.float32)
        for s, F, z in self._chunks(X, 0, len(X)):
            P[s:s + len(F)] = self._probabilities(F, z)
        return P

    def simulate(self, X_past: np.ndarray, n_bins: int, seed: int = 0) -> np.ndarray:
        """Free running: `n_bins` bins (n_bins, N) uint8 after the real past X_past, each drawn
        from the model given the real past and the bins drawn before it.

        Not yet a population generator: like its coupled GLM, a free run feeds its own spikes back
        through positive couplings and runs away on most recordings (benchmarks/bench_stack.py:
        10 of 13 overshoot, up to 1000x the real count). For measuring that, not for use."""
        X_past = self._check(X_past)
        past = X_past[max(0, len(X_past) - self.glm_.long):]
        T0, N = len(past), X_past.shape[1]
        C = np.zeros((T0 + n_bins + 1, N), np.int32)   # C[k]: spikes in bins 0..k-1
        np.cumsum(past, axis=0, dtype=np.int32, out=C[1:T0 + 1])
        out = np.zeros((n_bins, N), np.uint8)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)        # one tiny forward a bin: thread hand-offs cost more
        try:
            self._run(C, T0, out, np.random.default_rng(seed))
        finally:
            torch.set_num_threads(threads)
        return out

    def _run(self, C: np.ndarray, T0: int, out: np.ndarray, rng: np.random.Generator) -> None:
        N = out.shape[1]
        for k in range(len(out)):
            t = T0 - 1 + k                                    # the last bin known
            F, z = self._inputs(WindowSums(C, 0, np.array([t])), N)
            p = self._probabilities(F, z)[0]
            out[k] = rng.random(N) < p
            C[t + 2] = C[t + 1] + out[k]
