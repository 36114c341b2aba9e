// The backend's domain: customers browse, add to cart, order and pay. Choices
// come from a seeded generator so a test run publishes the same events; ids
// and timestamps are what a real service makes (random uuids, the wall clock).
const crypto = require('node:crypto');

function rng(seed) {
  // mulberry32: small, deterministic, good enough for picking test data.
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SKUS = ['SKU-TEE-01', 'SKU-MUG-07', 'SKU-CAP-03', 'SKU-SOCK-12', 'SKU-BAG-02'];

// One customer's session: view, add to cart, and sometimes order and pay.
function* session(random, customerId) {
  const sku = SKUS[Math.floor(random() * SKUS.length)];
  const quantity = 1 + Math.floor(random() * 3);
  const unitPrice = 500 + 100 * Math.floor(random() * 40);
  yield { event_type: 'page_viewed', customer_id: customerId, page: `/product/${sku}` };
  yield { event_type: 'cart_item_added', customer_id: customerId, sku, quantity, unit_price: unitPrice };
  if (random() < 0.6) {
    const orderId = `o-${customerId}-${Math.floor(random() * 1e6)}`;
    yield { event_type: 'order_placed', customer_id: customerId, order_id: orderId, total: quantity * unitPrice, currency: 'EUR' };
    yield { event_type: 'payment_captured', customer_id: customerId, order_id: orderId, amount: quantity * unitPrice, currency: 'EUR' };
  }
}

// `count` events from `customers` customers, each stamped as it is emitted.
function* events({ seed, count, customers }) {
  const random = rng(seed);
  let emitted = 0;
  while (emitted < count) {
    const customerId = `c-${String(1 + Math.floor(random() * customers)).padStart(4, '0')}`;
    for (const body of session(random, customerId)) {
      if (emitted === count) return;
      emitted += 1;
      yield { event_id: crypto.randomUUID(), occurred_at: new Date().toISOString(), ...body };
    }
  }
}

module.exports = { events };
