"""Fluent Bit and the agent side by side: the same files, the same receiver, one process after the other.

``python -m agent.bench.versus`` (or ``benchmarks/vs_fluent_bit.py``) writes ``--lines`` Docker
json-file lines (~385 B, an app's JSON record inside ``log``, seeded: the same bytes every time) into
four files, once, then for each scenario runs Fluent Bit on its config from
``../shared/tools/fluent-bit-configs`` and the agent on the equivalent YAML it generates (checked by
the agent's config loader), alternating which goes first on each ``--repeats``. Each run reads the
files (warmed with ``cat`` just before) from the beginning into a fresh bench receiver on 127.0.0.1
(the ``bulk`` peer of :mod:`agent.bench.peers`, which counts NDJSON lines on ``/ingest`` and
documents on ``/_bulk``), or into the null output.

Measured of the process, from ``/proc``: CPU (utime + stime + its children's) every 20 ms and at the
moment the receiver reports the last event, and peak RSS (``VmHWM``). The figure is CPU seconds per
million events over the steady part of the run (:func:`~agent.bench.versus.measure.steady_window`);
next to it the whole-run CPU (start-up included), events/s over the steady part, and the ratio agent
/ Fluent Bit of each. A run that delivers fewer or more events than it read fails instead of
reporting a rate.

Modules: :mod:`~agent.bench.versus.data` (the files), :mod:`~agent.bench.versus.sides` (finding
Fluent Bit, the scenarios and both processes' configs), :mod:`~agent.bench.versus.measure` (``/proc``
and the steady window), :mod:`~agent.bench.versus.run` (one measured run),
:mod:`~agent.bench.versus.report` (machine, table, ratios) and :mod:`~agent.bench.versus.cli`.
"""
