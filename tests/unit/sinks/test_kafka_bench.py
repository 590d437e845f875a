"""The kafka sink's benchmarks: the side-by-side harness's data and configs, one measured agent run, and the
broker record count they rely on (tansu's ListOffsets answers short of the end)."""

from __future__ import annotations

from pathlib import Path

from aiokafka import AIOKafkaProducer

from agent.bench.peers.tansu import TopicCounter, running_tansu
from agent.bench.versus import kafka as versus


def test_the_lines_are_distinct_and_all_200_bytes(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    versus.write_lines(log, 150_001)
    lines = log.read_bytes().split(b"\n")
    assert lines.pop() == b""
    assert len(lines) == 150_001 and {len(line) for line in lines} == {versus.RECORD_BYTES}
    assert len(set(lines)) == len(lines)


def test_both_sides_send_each_line_as_one_raw_lz4_record(tmp_path: Path) -> None:
    fb = versus.fluent_bit_config(tmp_path / "app.log", "127.0.0.1:9")
    for setting in ("Name        kafka", "Format      raw", "Raw_Log_Key log", "Brokers     127.0.0.1:9",
                    "rdkafka.compression.codec            lz4", "rdkafka.request.required.acks        -1"):
        assert setting in fb
    agent = versus.agent_config(tmp_path / "app.log", "127.0.0.1:9", tmp_path / "data")  # the loader checks it
    for setting in ("encoding: raw", "compression: lz4", "acks: all", "format: raw", "read_from: beginning"):
        assert setting in agent


async def test_a_measured_agent_run(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    versus.write_lines(log, 20_000)
    run = await versus.run_side(versus.AGENT, 0, Path("/nonexistent"), log, 20_000, tmp_path)
    assert run.records == 20_000 and run.whole_cpu_s > 0 and run.peak_rss_mib > 0
    assert run.to_dict()["whole_cpu_s_per_million"] > 0


async def test_the_counter_counts_every_record_held(tmp_path: Path) -> None:
    with running_tansu(tmp_path) as broker:
        broker.create_topic("t", 2)
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=50)
        await producer.start()
        counter = TopicCounter(broker.bootstrap, "t")
        await counter.start()
        try:
            assert await counter.count() == 0
            for round_ in range(3):  # several record batches per partition, counted as they come
                futures = [await producer.send("t", b"v%d" % n, partition=n % 2) for n in range(500)]
                for future in futures:
                    await future
                assert await counter.count() == 500 * (round_ + 1)
        finally:
            await counter.close()
            await producer.stop()
