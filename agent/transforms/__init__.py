"""Transforms: plain functions over batches. One type per module."""
