"""From a model and a past to logits, calibrated probabilities and spike trains: the decoder, calibration, drawing."""
