#!/usr/bin/env python3
"""The job a team writes by hand instead of an emulator, for `just bench` to
compare streamlab delivery with: confluent-kafka reads every partition of the
topic from the start, records are buffered per partition up to the size hint,
each buffer is PUT to S3 with boto3 and then its offsets are committed.
Uncompressed, records concatenated as they came. Stops once every partition
is read to where it ended at start, and writes a JSON report of records and
bytes read and the seconds from the first record to the last object."""

import argparse
import json
import sys
import time
import uuid

import boto3
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition


def peak_rss_bytes() -> int:
    """VmHWM: peak resident memory since exec (getrusage also counts the
    parent's memory at fork)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--s3-endpoint", required=True)
    parser.add_argument("--size-mb", type=int, default=8)
    parser.add_argument("--report", required=True)
    args = parser.parse_args()

    s3 = boto3.client("s3", endpoint_url=args.s3_endpoint)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": "bench-python",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
        }
    )
    metadata = consumer.list_topics(args.topic, timeout=10)
    partitions = sorted(metadata.topics[args.topic].partitions)
    ends = {p: consumer.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10)[1] for p in partitions}
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])

    limit = args.size_mb * 1024 * 1024
    buffers = {p: [] for p in partitions}
    sizes = {p: 0 for p in partitions}
    next_offset = {}
    remaining = {p for p in partitions if ends[p] > 0}
    records = size = objects = 0
    first = None

    def flush(partition: int) -> None:
        nonlocal objects
        key = f"python/{time.strftime('%Y/%m/%d/%H', time.gmtime())}/{uuid.uuid4()}"
        s3.put_object(Bucket=args.bucket, Key=key, Body=b"".join(buffers[partition]))
        consumer.commit(offsets=[TopicPartition(args.topic, partition, next_offset[partition])], asynchronous=False)
        buffers[partition], sizes[partition] = [], 0
        objects += 1

    while remaining:
        for message in consumer.consume(num_messages=1000, timeout=1.0):
            if message.error():
                raise KafkaException(message.error())
            if first is None:
                first = time.monotonic()
            partition, value = message.partition(), message.value()
            buffers[partition].append(value)
            sizes[partition] += len(value)
            records += 1
            size += len(value)
            next_offset[partition] = message.offset() + 1
            if sizes[partition] >= limit:
                flush(partition)
            if next_offset[partition] >= ends[partition]:
                remaining.discard(partition)
    for partition in partitions:
        if buffers[partition]:
            flush(partition)
    seconds = time.monotonic() - first if first is not None else 0.0
    consumer.close()
    report = {"records_read": records, "bytes_read": size, "objects": objects, "seconds": seconds}
    report["peak_rss_bytes"] = peak_rss_bytes()
    with open(args.report, "w") as out:
        json.dump(report, out)
    print(f"{records} records, {size / 1e6:.1f} MB in {objects} objects, {seconds:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
