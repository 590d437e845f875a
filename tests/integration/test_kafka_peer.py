"""The tansu broker the Kafka tests run answers aiokafka: a topic created, records produced and read back."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from peers.kafka import Tansu


async def test_the_broker_takes_records_and_gives_them_back(kafka: Tansu) -> None:
    kafka.create_topic("peer-check", partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await producer.start()
    try:
        for n in range(10):
            await producer.send_and_wait("peer-check", f"r{n}".encode(), key=b"k", partition=n % 2)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer("peer-check", bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest",
                                group_id=None)
    await consumer.start()
    try:
        got: list[bytes] = []
        for _ in range(50):  # bounded
            batches = await consumer.getmany(timeout_ms=200)
            got += [record.value for records in batches.values() for record in records]
            if len(got) >= 10:
                break
    finally:
        await consumer.stop()
    assert sorted(got) == sorted(f"r{n}".encode() for n in range(10))
