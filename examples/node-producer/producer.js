// Publishes the backend's events to Kafka, keyed by customer so one
// customer's events stay in order. Configured from the environment, as the
// service is in production: KAFKA_BOOTSTRAP (streamlab up / run set it),
// TOPIC, EVENTS, SEED, IDEMPOTENT=1 for an idempotent producer.
const { Kafka, logLevel } = require('kafkajs');
const { events } = require('./shop');

async function main() {
  const brokers = (process.env.KAFKA_BOOTSTRAP || '').split(',').filter(Boolean);
  if (brokers.length === 0) {
    throw new Error('KAFKA_BOOTSTRAP is not set; run under `streamlab run`, or `source` the env file of `streamlab up`');
  }
  const topic = process.env.TOPIC || 'shop-events';
  const count = Number(process.env.EVENTS || 200);
  const seed = Number(process.env.SEED || 7);
  const idempotent = process.env.IDEMPOTENT === '1';

  const kafka = new Kafka({ clientId: 'shop-backend', brokers, logLevel: logLevel.ERROR });
  const producer = kafka.producer(idempotent ? { idempotent: true, maxInFlightRequests: 1 } : {});
  await producer.connect();
  const batch = [];
  for (const event of events({ seed, count, customers: 25 })) {
    batch.push({ key: event.customer_id, value: JSON.stringify(event) });
    if (batch.length === 50) {
      await producer.send({ topic, messages: batch.splice(0) });
    }
  }
  if (batch.length > 0) {
    await producer.send({ topic, messages: batch });
  }
  await producer.disconnect();
  console.log(`published ${count} events to ${topic}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
