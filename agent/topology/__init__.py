"""Wiring components into a running pipeline, and changing it while it runs."""
