// kafkajs, plain or idempotent (IDEMPOTENT=1), writing CLIENT_EVENTS records.
const { Kafka, logLevel } = require('kafkajs');

(async () => {
  const kafka = new Kafka({ brokers: process.env.KAFKA_BOOTSTRAP.split(','), logLevel: logLevel.ERROR });
  const idempotent = process.env.IDEMPOTENT === '1';
  const producer = kafka.producer(idempotent ? { idempotent: true, maxInFlightRequests: 1 } : {});
  await producer.connect();
  const count = Number(process.env.CLIENT_EVENTS || 300);
  const client = idempotent ? 'kafkajs-idempotent' : 'kafkajs';
  for (let i = 0; i < count; i += 100) {
    const messages = [];
    for (let n = i; n < Math.min(i + 100, count); n++) {
      messages.push({ key: `k${n % 10}`, value: JSON.stringify({ client, n }) });
    }
    await producer.send({ topic: process.env.TOPIC || 'client-matrix', messages });
  }
  await producer.disconnect();
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
