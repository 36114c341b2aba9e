"""confluent-kafka (librdkafka), idempotent, writing CLIENT_EVENTS records."""
import json, os, sys
from confluent_kafka import Producer

errors = []
p = Producer({"bootstrap.servers": os.environ["KAFKA_BOOTSTRAP"], "enable.idempotence": True})
for n in range(int(os.environ.get("CLIENT_EVENTS", "300"))):
    p.produce(os.environ.get("TOPIC", "client-matrix"), key=f"k{n % 10}",
              value=json.dumps({"client": "confluent-kafka", "n": n}),
              on_delivery=lambda err, _m: err and errors.append(err))
    p.poll(0)
p.flush(30)
sys.exit(1 if errors or len(p) else 0)
