// Shop events from a Node.js service: page views, cart updates and orders,
// plus one record that is not JSON (a bug upstream the transform must
// catch). Seeded, and each Kafka record stamped with its event's time, so a
// run lands the same bytes under the same keys every time. KAFKA_BOOTSTRAP
// comes from `streamlab run` (or the env file of `streamlab up`); TOPIC,
// EVENTS, SEED.
const { Kafka, logLevel } = require('kafkajs');

// mulberry32: a small seeded generator, so runs repeat.
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function* records(seed, count) {
  const rnd = random(seed);
  const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));
  let at = Date.parse('2026-07-13T14:00:00Z');
  for (let n = 0; n < count; n++) {
    at += int(50, 2000);
    const roll = rnd();
    const kind = roll < 0.5 ? 'page_viewed' : roll < 0.7 ? 'cart_updated' : 'order_placed';
    const event = {
      event_id: `ev-${seed}-${String(n).padStart(6, '0')}`,
      event_type: kind,
      occurred_at: new Date(at).toISOString(),
      customer_id: `c-${String(int(1, 40)).padStart(4, '0')}`,
    };
    if (kind === 'order_placed') event.total = int(1, 6) * int(500, 4000);
    yield { key: event.customer_id, timestamp: String(at), value: JSON.stringify(event) };
    if (n === Math.floor(count / 2)) {
      yield { key: 'c-0000', timestamp: String(at), value: '{"event_type": "order_placed", truncated' };
    }
  }
}

async function main() {
  const brokers = (process.env.KAFKA_BOOTSTRAP || '').split(',').filter(Boolean);
  if (brokers.length === 0) {
    throw new Error('KAFKA_BOOTSTRAP is not set; run under `streamlab run`, or `source` the env file of `streamlab up`');
  }
  const topic = process.env.TOPIC || 'shop-events';
  const count = Number(process.env.EVENTS || 200);
  const kafka = new Kafka({ clientId: 'shop-backend', brokers, logLevel: logLevel.ERROR });
  const producer = kafka.producer();
  await producer.connect();
  const messages = [...records(Number(process.env.SEED || 7), count)];
  for (let i = 0; i < messages.length; i += 50) {
    await producer.send({ topic, messages: messages.slice(i, i + 50) });
  }
  await producer.disconnect();
  console.log(`produced ${messages.length} records to ${topic}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
