"""Judging models on recordings they did not train on: evaluation against the baselines, the results table, the grid."""
