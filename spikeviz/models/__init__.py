"""Predictors of the next bin: the spike transformer, the generalist, the baselines (rate, EWMA, GLMs), losses and checkpoints."""
