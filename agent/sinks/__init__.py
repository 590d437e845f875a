"""Sinks: where batches are delivered. One type per module."""
