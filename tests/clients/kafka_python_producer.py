"""kafka-python, plain or idempotent (IDEMPOTENT=1), writing CLIENT_EVENTS records."""
import json, os
from kafka import KafkaProducer

idempotent = os.environ.get("IDEMPOTENT") == "1"
producer = KafkaProducer(bootstrap_servers=os.environ["KAFKA_BOOTSTRAP"].split(","),
                         enable_idempotence=idempotent, acks="all")
client = "kafka-python-idempotent" if idempotent else "kafka-python"
futures = [producer.send(os.environ.get("TOPIC", "client-matrix"), key=f"k{n % 10}".encode(),
                         value=json.dumps({"client": client, "n": n}).encode())
           for n in range(int(os.environ.get("CLIENT_EVENTS", "300")))]
for f in futures:
    f.get(timeout=30)
producer.close()
