"""The processes around the agent in the TCP scenarios: a load generator and a counting receiver.

Both run as ``python -m agent.bench.peers send|receive ...`` in their own
process, so their CPU is not charged to the agent (``RUSAGE_SELF``), and
talk to the parent over stdin/stdout, one JSON object per line:

* ``receive --lines N``: listens on 127.0.0.1 (a free port), prints
  ``{"port": P}``, counts the bytes and newlines of every connection, prints
  ``{"lines": .., "bytes": .., "done": true}`` once N lines have arrived and a
  final report (``"final": true``) when its stdin closes, then exits.
  With ``--check-order`` it also checks that the lines of each connection
  carry consecutive line numbers (see :func:`numbered_lines`) from 0, and
  reports ``"out_of_order"``: the lines whose number is not the previous + 1
  (a second connection, after a reconnection, starts mid-sequence and counts
  too), and ``"partial_line_bytes"`` left after the last complete line.
* ``send --port P --lines N --connections C``: connects C times (retrying
  until the agent listens), prints ``{"ready": true}``, waits for a line on
  stdin, then sends N newline-terminated lines of ``LINE_BYTES`` bytes split
  across the connections, each from its own thread by ``sendall`` of a
  pre-built buffer of a few MiB. Prints ``{"sent_lines": .., "sent_bytes": ..}``.
* ``write --path F --lines N``: prints ``{"ready": true}``, waits for a line
  on stdin, then appends N numbered lines of ``LINE_BYTES`` bytes
  (:func:`numbered_lines`) to F, 4,096 lines (1 MiB) per ``write``, as fast as
  it can. Prints ``{"written_lines": .., "written_bytes": .., "wall_s": ..}``.
* ``bulk --documents N``: a minimal Elasticsearch for the ``elasticsearch``
  sink (raw asyncio HTTP/1.1 with keep-alive, see :func:`bulk`): listens on
  127.0.0.1, prints ``{"port": P}``, answers ``GET /`` with an ES 8 banner
  and ``X-Elastic-Product: Elasticsearch``, takes ``POST /_bulk`` (plain,
  gzip or zstd bodies), counts the action/document pairs, the distinct
  ``_id`` values and the documents per index, and answers each request with a
  correct bulk response: one ``201 created`` item per action, in order.
  Prints ``{"documents": .., "distinct_ids": .., "done": true, ...}`` once N
  documents have arrived and a final report (``"final": true``) when its
  stdin closes; both carry its own CPU seconds since it started listening.
* ``remote_write``: a Prometheus remote-write 1.0 receiver: listens on
  127.0.0.1, prints ``{"port": P}``, takes ``POST /api/v1/write`` (snappy,
  protobuf), decodes every request and counts its series, samples, ``up``
  samples (and those not 1) and stale markers; a body that does not decode
  is answered 400 and counted as ``refused``. Each line on stdin gets the
  counts so far, the end of stdin the final ones (``"final": true``).
* ``targets --targets N --series S``: N simulated exporters on N ports of
  127.0.0.1 (prints ``{"ports": [...]}``), each page S series whose values
  change at every scrape; counts the scrapes it answered. A line on stdin
  gets the counts; ``freeze`` first stops answering (later requests are
  held), so the count is final.

The roles live in :mod:`~agent.bench.peers.load` (``send``, ``write``,
``receive``), :mod:`~agent.bench.peers.elasticsearch` (``bulk``),
:mod:`~agent.bench.peers.remote_write` and :mod:`~agent.bench.peers.targets`,
their command line in ``__main__``. This package imports only the standard library
so the peers start fast (the ``bulk`` role also uses orjson, imported when it
starts, ``remote_write`` cramjam); the parent-side handles (:class:`Receiver`,
:class:`LoadGenerator`, :class:`FileWriter`, :class:`BulkReceiver`,
:class:`RemoteWriteReceiver`, :class:`ScrapeTargets`, in :mod:`~agent.bench.peers.handles`)
make sure a child is always terminated and reaped.
"""

from agent.bench.peers.handles import (
    BulkReceiver,
    FileWriter,
    LoadGenerator,
    PeerError,
    Receiver,
    RemoteWriteReceiver,
    ScrapeTargets,
)

__all__ = ["BulkReceiver", "FileWriter", "LoadGenerator", "PeerError", "Receiver", "RemoteWriteReceiver",
           "ScrapeTargets"]
