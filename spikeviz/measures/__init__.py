"""Measures of spikes and predictions with no model inside: curves and AUCs, likelihoods, block-bootstrap intervals, firing statistics."""
