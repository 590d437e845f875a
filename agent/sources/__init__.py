"""Sources: where batches come from. One type per module."""
