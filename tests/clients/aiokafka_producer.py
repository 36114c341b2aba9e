"""aiokafka, plain or idempotent (IDEMPOTENT=1), writing CLIENT_EVENTS records."""
import asyncio, json, os
from aiokafka import AIOKafkaProducer

async def main():
    idempotent = os.environ.get("IDEMPOTENT") == "1"
    producer = AIOKafkaProducer(bootstrap_servers=os.environ["KAFKA_BOOTSTRAP"], enable_idempotence=idempotent)
    await producer.start()
    client = "aiokafka-idempotent" if idempotent else "aiokafka"
    try:
        sent = [await producer.send(os.environ.get("TOPIC", "client-matrix"), key=f"k{n % 10}".encode(),
                                    value=json.dumps({"client": client, "n": n}).encode())
                for n in range(int(os.environ.get("CLIENT_EVENTS", "300")))]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()

asyncio.run(main())
