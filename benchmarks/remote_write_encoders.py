"""The agent's hand-written remote-write encoder against the `protobuf` package, on the same requests.

    .venv/bin/pip install protobuf        # not a dependency of the agent: only this comparison needs it
    .venv/bin/python benchmarks/remote_write_encoders.py [--requests 200]

Builds `prometheus.WriteRequest` (TimeSeries, Label, Sample) from a FileDescriptorProto at run time (no
protoc), encodes the same 2,000-sample requests of node-exporter-like series three ways, checks that
protobuf decodes all three to equal messages (proto3 leaves out a zero value or timestamp, the hand-written
encoder writes it: the bytes may differ, the messages may not), and prints microseconds per sample (the
best of 5 rounds; snappy left out: it compresses the same bytes either way):

- the protobuf package, each request's messages built from labels and samples;
- `encode_write_request`, the hand-written encoder from labels and samples;
- `encode_groups` with each series' labels encoded once beforehand, which is what the sink does (it
  remembers every series' encoded labels across scrapes; protobuf messages cannot take pre-encoded bytes).

Issue 10 asks for the protobuf package unless an own encoder is clearly faster.
"""

from __future__ import annotations

import argparse
import time

from agent.prometheus.remote_write import Point, encode_groups, encode_labels, encode_write_request


def message_classes() -> tuple[type, type, type, type]:
    """WriteRequest, TimeSeries, Label and Sample of remote-write 1.0's .proto, built at run time."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="remote.proto", package="prometheus", syntax="proto3")
    f = descriptor_pb2.FieldDescriptorProto

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        msg = fdp.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            field = msg.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name

    opt, rep = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    message("Label", ("name", 1, f.TYPE_STRING, opt, ""), ("value", 2, f.TYPE_STRING, opt, ""))
    message("Sample", ("value", 1, f.TYPE_DOUBLE, opt, ""), ("timestamp", 2, f.TYPE_INT64, opt, ""))
    message("TimeSeries", ("labels", 1, f.TYPE_MESSAGE, rep, ".prometheus.Label"),
            ("samples", 2, f.TYPE_MESSAGE, rep, ".prometheus.Sample"))
    message("WriteRequest", ("timeseries", 1, f.TYPE_MESSAGE, rep, ".prometheus.TimeSeries"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    get = message_factory.GetMessageClass
    names = ("WriteRequest", "TimeSeries", "Label", "Sample")
    return tuple(get(pool.FindMessageTypeByName(f"prometheus.{n}")) for n in names)  # type: ignore[return-value]


def requests(count: int) -> list[list[tuple[list[tuple[str, str]], list[tuple[float, int]]]]]:
    """``count`` requests of 2,000 one-sample series, labelled like a node exporter's, sorted by name."""
    out = []
    for r in range(count):
        series = []
        for i in range(2000):
            labels = sorted([("__name__", f"node_metric_{i % 97}_total"), ("cpu", str(i % 16)),
                             ("instance", f"10.0.{r % 8}.{i % 200}:9100"), ("job", "node"),
                             ("mode", ("idle", "user", "system", "iowait")[i % 4])])
            series.append((labels, [(float(i) * 1.5 + r, 1_767_000_000_000 + r * 15_000)]))
        out.append(series)
    return out


def with_protobuf(classes: tuple[type, type, type, type],
                  series: list[tuple[list[tuple[str, str]], list[tuple[float, int]]]]) -> bytes:
    write_request, _, _, _ = classes
    request = write_request()
    for labels, samples in series:
        ts = request.timeseries.add()
        for name, value in labels:
            ts.labels.add(name=name, value=value)
        for value, timestamp in samples:
            ts.samples.add(value=value, timestamp=timestamp)
    return bytes(request.SerializeToString())


def best(fn: object, batches: list, rounds: int = 5) -> tuple[float, list[bytes]]:
    fastest, out = float("inf"), []
    for _ in range(rounds):
        start = time.perf_counter()
        out = [fn(b) for b in batches]  # type: ignore[operator]
        fastest = min(fastest, time.perf_counter() - start)
    return fastest, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    try:
        classes = message_classes()
    except ImportError:
        print("the protobuf package is not installed: .venv/bin/pip install protobuf")
        return 69
    from google.protobuf.internal import api_implementation

    batches = requests(args.requests)
    samples = 2000 * len(batches)
    cached = [[(encode_labels(labels), Point(value, timestamp))
               for labels, [(value, timestamp)] in batch] for batch in batches]
    theirs, theirs_out = best(lambda b: with_protobuf(classes, b), batches)
    ours, ours_out = best(encode_write_request, batches)
    grouped, grouped_out = best(encode_groups, cached)
    parse = classes[0].FromString
    same = all(parse(a) == parse(b) == parse(c) for a, b, c in zip(theirs_out, ours_out, grouped_out, strict=True))
    print(f"{samples:,} samples in {len(batches)} requests; protobuf {api_implementation.Type()} backend")
    print(f"protobuf package, from labels          {theirs / samples * 1e6:.3f} us/sample")
    print(f"hand-written, from labels              {ours / samples * 1e6:.3f} us/sample ({theirs / ours:.1f}x faster)")
    print(f"hand-written, series labels remembered {grouped / samples * 1e6:.3f} us/sample "
          f"({theirs / grouped:.1f}x faster)")
    print(f"protobuf decodes all three to the same messages: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
