"""Shop events from a Python service: page views, cart updates and orders,
plus one record that is not JSON (a bug upstream the transform must catch).

Seeded, and each Kafka record stamped with its event's time, so a run lands
the same bytes under the same keys every time. KAFKA_BOOTSTRAP comes from
`streamlab run` (or the env file of `streamlab up`); TOPIC, EVENTS, SEED.
"""

import json
import os
import random
import sys
from datetime import datetime, timedelta, timezone

from confluent_kafka import Producer

START = datetime(2026, 7, 13, 14, 0, tzinfo=timezone.utc)


def events(seed: int, count: int):
    rnd = random.Random(seed)
    at = START
    for n in range(count):
        at += timedelta(milliseconds=rnd.randint(50, 2_000))
        kind = rnd.choices(["page_viewed", "cart_updated", "order_placed"], weights=[5, 2, 3])[0]
        event = {
            "event_id": f"ev-{seed}-{n:06d}",
            "event_type": kind,
            "occurred_at": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "customer_id": f"c-{rnd.randint(1, 40):04d}",
        }
        if kind == "order_placed":
            event["total"] = rnd.randint(1, 6) * rnd.randint(500, 4_000)
        yield at, json.dumps(event, separators=(",", ":")).encode()
        if n == count // 2:
            yield at, b"{\"event_type\": \"order_placed\", truncated"


def main() -> int:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if not bootstrap:
        print("KAFKA_BOOTSTRAP is not set; run under `streamlab run`, or source the env file of `streamlab up`", file=sys.stderr)
        return 2
    topic = os.environ.get("TOPIC", "shop-events")
    count = int(os.environ.get("EVENTS", "200"))
    failures = []
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    for at, value in events(int(os.environ.get("SEED", "7")), count):
        producer.produce(
            topic,
            key=value[:16],
            value=value,
            timestamp=int(at.timestamp() * 1000),
            on_delivery=lambda err, _msg: err and failures.append(err),
        )
        producer.poll(0)
    producer.flush(30)
    if failures:
        print(f"{len(failures)} events were not acknowledged: {failures[0]}", file=sys.stderr)
        return 1
    print(f"produced {count + 1} records to {topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
