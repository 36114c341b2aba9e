"""Order events from a Python service, published with confluent-kafka.

Every event carries its own time, and the Kafka record is stamped with it
(not with the time of sending), so a seeded run lands under the same keys
every time. Configured from the environment: KAFKA_BOOTSTRAP (set by
`streamlab run` and the env file of `streamlab up`), TOPIC, EVENTS, SEED.
"""

import json
import os
import random
import sys
from datetime import datetime, timedelta, timezone

from confluent_kafka import Producer

START = datetime(2026, 7, 13, 14, 0, tzinfo=timezone.utc)
SKUS = ["SKU-TEE-01", "SKU-MUG-07", "SKU-CAP-03", "SKU-SOCK-12"]


def events(seed: int, count: int):
    rnd = random.Random(seed)
    at = START
    for n in range(count):
        at += timedelta(milliseconds=rnd.randint(50, 2_000))
        customer = f"c-{rnd.randint(1, 40):04d}"
        quantity = rnd.randint(1, 4)
        yield {
            "event_id": f"ev-{seed}-{n:06d}",
            "event_type": "order_placed",
            "occurred_at": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "customer_id": customer,
            "sku": rnd.choice(SKUS),
            "quantity": quantity,
            "total": quantity * rnd.randint(500, 4_000),
            "currency": "EUR",
        }


def main() -> int:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if not bootstrap:
        print("KAFKA_BOOTSTRAP is not set; run under `streamlab run`, or source the env file of `streamlab up`", file=sys.stderr)
        return 2
    topic = os.environ.get("TOPIC", "orders")
    count = int(os.environ.get("EVENTS", "500"))
    seed = int(os.environ.get("SEED", "7"))
    failures = []
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    for event in events(seed, count):
        stamp = int(datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00")).timestamp() * 1000)
        producer.produce(
            topic,
            key=event["customer_id"],
            value=json.dumps(event, separators=(",", ":")),
            timestamp=stamp,
            on_delivery=lambda err, _msg: err and failures.append(err),
        )
        producer.poll(0)
    producer.flush(30)
    if failures:
        print(f"{len(failures)} events were not acknowledged, e.g. {failures[0]}", file=sys.stderr)
        return 1
    print(f"published {count} events to {topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
