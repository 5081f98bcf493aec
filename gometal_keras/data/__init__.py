"""Data: every input `fit` takes as one stream of batches, streaming to the device, input checks,
the demo's synthetic data and data sets the user has on disk."""
