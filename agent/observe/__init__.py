"""Self-observation: per-component stats, Prometheus exposition, structured logs, the HTTP API."""
