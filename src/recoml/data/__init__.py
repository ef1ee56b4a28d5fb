"""Event store, lazy datasets, batches, splits, the DataModule and on-device representations."""
