"""Training a model on recordings: the epoch loop and early stopping, memory estimates, several processes."""
