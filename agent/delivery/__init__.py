"""Shared HTTP delivery: batching, compression, concurrency, retries, TLS, auth and dead letters.

A request sink supplies an encoder (events -> request bodies, pure) and a
service (one HTTP exchange -> an outcome); :class:`~agent.delivery.driver.HttpDriver`
does everything else, the same way for every sink.
"""
