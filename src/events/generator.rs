//! Seeded, causally ordered e-commerce traffic.
//!
//! Every customer walks a funnel (view -> cart -> order -> payment ->
//! shipment) with abandonment, cancellations and refunds along the way, so the
//! landed data has the shapes analytics queries care about: carts that never
//! become orders, orders cancelled before and after payment. Who acts next is
//! drawn from a Zipf distribution, so a few customers are very active and most
//! are occasional, as in real shops.
//!
//! Everything comes from one ChaCha RNG seeded by the caller, and time is the
//! generator's own timeline (not the wall clock): the same seed and start give
//! the same events byte for byte, on any machine.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};

use super::model::{Event, EventKind, LineItem};
use crate::clock::rfc3339_millis;

/// Shape of the generated traffic.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// `occurred_at` of the first event, epoch milliseconds.
    pub start_ms: i64,
    /// Mean gap between consecutive events on the generator's timeline. Gaps
    /// are uniform in `0..=2*mean`, integers, so they are portable.
    pub mean_gap_ms: u64,
    /// Size of the customer base.
    pub customers: u32,
    /// Zipf exponent of customer activity; ~1 gives the usual long tail.
    pub activity_skew: f64,
}

impl GeneratorConfig {
    pub fn new(seed: u64, start_ms: i64) -> Self {
        Self { seed, start_ms, mean_gap_ms: 10, customers: 5_000, activity_skew: 1.07 }
    }

    /// Events spaced for `events_per_sec` of wall time on a clock running
    /// `speedup` times faster: the generator's timeline then keeps pace with
    /// the clock the records are stamped with (at least 1 ms apart).
    pub fn paced(mut self, events_per_sec: f64, speedup: f64) -> Self {
        self.mean_gap_ms = (1000.0 * speedup / events_per_sec).max(1.0) as u64;
        self
    }
}

const CURRENCIES: [&str; 3] = ["USD", "EUR", "GBP"];
const PAGES: [&str; 5] = ["/", "/search", "/category/shoes", "/category/books", "/deals"];
const PAYMENT_METHODS: [&str; 4] = ["card", "card", "paypal", "apple_pay"];
const CARRIERS: [&str; 3] = ["ups", "dhl", "usps"];
const CANCEL_REASONS: [&str; 3] = ["customer_request", "payment_declined", "out_of_stock"];
const REFUND_REASONS: [&str; 3] = ["damaged", "not_as_described", "changed_mind"];
const CATALOG_SIZE: usize = 250;

/// Where a customer is in the funnel.
#[derive(Debug, Clone)]
enum Stage {
    Idle,
    Browsing {
        session_id: String,
    },
    Carting {
        session_id: String,
        cart_id: String,
        items: Vec<LineItem>,
    },
    Ordered {
        order_id: String,
        total: i64,
        items_count: u32,
    },
    Paid {
        order_id: String,
        total: i64,
        items_count: u32,
    },
    /// Delivered; a return may still come.
    Shipped {
        order_id: String,
        total: i64,
    },
    /// Cancelled after payment: a refund must follow.
    RefundDue {
        order_id: String,
        total: i64,
        reason: &'static str,
    },
}

#[derive(Debug, Clone)]
struct Customer {
    id: String,
    currency: &'static str,
    stage: Stage,
}

/// An infinite, deterministic iterator of events.
#[derive(Debug)]
pub struct EventGenerator {
    rng: ChaCha8Rng,
    zipf: Zipf<f64>,
    now_ms: i64,
    mean_gap_ms: u64,
    customers: Vec<Customer>,
    /// `(sku, unit price)`: a fixed catalog drawn from the seed.
    catalog: Vec<(String, i64)>,
}

impl EventGenerator {
    pub fn new(config: &GeneratorConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let customers = (0..config.customers.max(1))
            .map(|i| Customer {
                id: format!("c-{i:06}"),
                currency: CURRENCIES[rng.gen_range(0..CURRENCIES.len())],
                stage: Stage::Idle,
            })
            .collect();
        let catalog = (0..CATALOG_SIZE).map(|i| (format!("SKU-{i:05}"), rng.gen_range(199..=19_999))).collect();
        let zipf = Zipf::new(u64::from(config.customers.max(1)), config.activity_skew.max(0.0))
            .expect("Zipf parameters are valid for n >= 1 and s >= 0");
        Self { rng, zipf, now_ms: config.start_ms, mean_gap_ms: config.mean_gap_ms, customers, catalog }
    }

    fn short_id(&mut self, prefix: &str) -> String {
        format!("{prefix}-{:012x}", self.rng.gen::<u64>() & 0xffff_ffff_ffff)
    }

    fn uuid(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.rng.gen()).into_uuid().to_string()
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.gen_range(0..items.len())]
    }

    fn line_item(&mut self) -> LineItem {
        let (sku, unit_price) = self.catalog[self.rng.gen_range(0..self.catalog.len())].clone();
        let quantity = if self.rng.gen_bool(0.8) { 1 } else { self.rng.gen_range(2..=4) };
        LineItem { sku, quantity, unit_price }
    }

    /// Advances one customer by one step of its funnel and returns the event
    /// that step emitted, with the customer's new stage.
    fn step(&mut self, stage: Stage, currency: &'static str) -> (EventKind, Stage) {
        let roll: f64 = self.rng.gen();
        match stage {
            Stage::Idle => self.new_session(),
            Stage::Browsing { session_id } => {
                if roll < 0.45 {
                    self.view(session_id)
                } else if roll < 0.85 {
                    let cart_id = self.short_id("cart");
                    self.add_to_cart(session_id, cart_id, Vec::new(), currency)
                } else {
                    // Abandoned the session: the next activity starts afresh.
                    self.new_session()
                }
            }
            Stage::Carting { session_id, cart_id, mut items } => {
                if roll < 0.25 {
                    self.add_to_cart(session_id, cart_id, items, currency)
                } else if roll < 0.35 {
                    let removed = items.remove(self.rng.gen_range(0..items.len()));
                    let kind = EventKind::CartItemRemoved {
                        session_id: session_id.clone(),
                        cart_id: cart_id.clone(),
                        sku: removed.sku,
                        quantity: removed.quantity,
                    };
                    let next = if items.is_empty() {
                        Stage::Browsing { session_id }
                    } else {
                        Stage::Carting { session_id, cart_id, items }
                    };
                    (kind, next)
                } else if roll < 0.80 {
                    self.place_order(cart_id, items, currency)
                } else {
                    // Cart abandoned; a new session begins later.
                    self.new_session()
                }
            }
            Stage::Ordered { order_id, total, items_count } => {
                if roll < 0.92 {
                    let method = self.pick(&PAYMENT_METHODS);
                    let kind = EventKind::PaymentCaptured {
                        order_id: order_id.clone(),
                        payment_id: self.short_id("pay"),
                        amount: total,
                        currency: currency.to_owned(),
                        method: method.to_owned(),
                    };
                    (kind, Stage::Paid { order_id, total, items_count })
                } else {
                    let reason = self.pick(&CANCEL_REASONS[..2]);
                    (EventKind::OrderCancelled { order_id, reason: reason.to_owned() }, Stage::Idle)
                }
            }
            Stage::Paid { order_id, total, items_count } => {
                if roll < 0.93 {
                    let carrier = self.pick(&CARRIERS);
                    let kind = EventKind::OrderShipped {
                        order_id: order_id.clone(),
                        shipment_id: self.short_id("shp"),
                        carrier: carrier.to_owned(),
                        items_count,
                    };
                    (kind, Stage::Shipped { order_id, total })
                } else {
                    let reason = if roll < 0.97 { "customer_request" } else { "out_of_stock" };
                    let kind = EventKind::OrderCancelled { order_id: order_id.clone(), reason: reason.to_owned() };
                    (kind, Stage::RefundDue { order_id, total, reason })
                }
            }
            Stage::Shipped { order_id, total } => {
                if roll < 0.06 {
                    let reason = self.pick(&REFUND_REASONS);
                    (self.refund(order_id, total, currency, reason), Stage::Idle)
                } else {
                    self.new_session()
                }
            }
            Stage::RefundDue { order_id, total, reason } => {
                (self.refund(order_id, total, currency, reason), Stage::Idle)
            }
        }
    }

    fn refund(&mut self, order_id: String, total: i64, currency: &str, reason: &str) -> EventKind {
        EventKind::RefundIssued {
            order_id,
            refund_id: self.short_id("rf"),
            amount: total,
            currency: currency.to_owned(),
            reason: reason.to_owned(),
        }
    }

    fn new_session(&mut self) -> (EventKind, Stage) {
        let session_id = self.short_id("s");
        self.view(session_id)
    }

    fn view(&mut self, session_id: String) -> (EventKind, Stage) {
        let (page, sku) = if self.rng.gen_bool(0.6) {
            let (sku, _) = self.catalog[self.rng.gen_range(0..self.catalog.len())].clone();
            (format!("/product/{sku}"), Some(sku))
        } else {
            (self.pick(&PAGES).to_owned(), None)
        };
        let kind = EventKind::PageViewed { session_id: session_id.clone(), page, sku };
        (kind, Stage::Browsing { session_id })
    }

    fn add_to_cart(
        &mut self,
        session_id: String,
        cart_id: String,
        mut items: Vec<LineItem>,
        currency: &'static str,
    ) -> (EventKind, Stage) {
        let item = self.line_item();
        items.push(item.clone());
        let kind = EventKind::CartItemAdded {
            session_id: session_id.clone(),
            cart_id: cart_id.clone(),
            item,
            currency: currency.to_owned(),
        };
        (kind, Stage::Carting { session_id, cart_id, items })
    }

    fn place_order(&mut self, cart_id: String, items: Vec<LineItem>, currency: &'static str) -> (EventKind, Stage) {
        let subtotal: i64 = items.iter().map(|i| i.unit_price * i64::from(i.quantity)).sum();
        let shipping = if subtotal >= 5_000 { 0 } else { 499 };
        let tax = subtotal * 8 / 100;
        let total = subtotal + shipping + tax;
        let items_count = items.iter().map(|i| i.quantity).sum();
        let order_id = self.short_id("o");
        let kind = EventKind::OrderPlaced {
            order_id: order_id.clone(),
            cart_id,
            items,
            currency: currency.to_owned(),
            subtotal,
            shipping,
            tax,
            total,
        };
        (kind, Stage::Ordered { order_id, total, items_count })
    }
}

impl Iterator for EventGenerator {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.now_ms += self.rng.gen_range(0..=2 * self.mean_gap_ms) as i64;
        // Zipf samples are 1..=n as floats; rank 1 is the most active customer.
        let index = (self.zipf.sample(&mut self.rng) as usize).saturating_sub(1).min(self.customers.len() - 1);
        let stage = std::mem::replace(&mut self.customers[index].stage, Stage::Idle);
        let currency = self.customers[index].currency;
        let (kind, next) = self.step(stage, currency);
        self.customers[index].stage = next;
        Some(Event {
            event_id: self.uuid(),
            occurred_at: rfc3339_millis(self.now_ms),
            customer_id: self.customers[index].id.clone(),
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    fn generate(seed: u64, n: usize) -> Vec<Event> {
        EventGenerator::new(&GeneratorConfig::new(seed, 1_783_951_200_000)).take(n).collect()
    }

    #[test]
    fn same_seed_same_bytes_different_seed_different_bytes() {
        let a: Vec<Vec<u8>> = generate(7, 2_000).iter().map(Event::to_json).collect();
        let b: Vec<Vec<u8>> = generate(7, 2_000).iter().map(Event::to_json).collect();
        let c: Vec<Vec<u8>> = generate(8, 2_000).iter().map(Event::to_json).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn event_ids_unique_and_time_moves_forward() {
        let events = generate(1, 20_000);
        let ids: HashSet<_> = events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids.len(), events.len());
        assert!(events.windows(2).all(|w| w[0].occurred_at <= w[1].occurred_at));
    }

    #[test]
    fn every_event_type_occurs_and_activity_is_skewed() {
        let events = generate(42, 20_000);
        let types: HashSet<_> = events.iter().map(|e| e.kind.type_name()).collect();
        assert_eq!(types.len(), 8, "types seen: {types:?}");
        let mut per_customer: HashMap<&str, usize> = HashMap::new();
        for e in &events {
            *per_customer.entry(&e.customer_id).or_default() += 1;
        }
        let mut counts: Vec<usize> = per_customer.values().copied().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top_1_percent: usize = counts.iter().take(50).sum();
        // With a uniform choice the top 50 of 5,000 customers would hold ~1%.
        assert!(top_1_percent * 10 > events.len(), "top 50 customers hold {top_1_percent} of {}", events.len());
    }

    /// Funnels are causal per customer: a payment follows its order, a
    /// shipment or refund follows its payment.
    #[test]
    fn order_lifecycle_is_causally_ordered_per_customer() {
        let events = generate(3, 30_000);
        let mut placed = HashSet::new();
        let mut paid = HashSet::new();
        let mut cancelled = HashSet::new();
        let mut shipped = HashSet::new();
        for e in &events {
            match &e.kind {
                EventKind::OrderPlaced { order_id, items, total, subtotal, shipping, tax, .. } => {
                    assert!(!items.is_empty());
                    assert_eq!(*total, subtotal + shipping + tax);
                    placed.insert(order_id.clone());
                }
                EventKind::PaymentCaptured { order_id, .. } => {
                    assert!(placed.contains(order_id));
                    paid.insert(order_id.clone());
                }
                EventKind::OrderShipped { order_id, .. } => {
                    assert!(paid.contains(order_id));
                    shipped.insert(order_id.clone());
                }
                EventKind::OrderCancelled { order_id, .. } => {
                    assert!(placed.contains(order_id));
                    cancelled.insert(order_id.clone());
                }
                EventKind::RefundIssued { order_id, .. } => {
                    // Refunds follow a cancellation after payment, or a return
                    // after shipment.
                    assert!(paid.contains(order_id) && (cancelled.contains(order_id) || shipped.contains(order_id)));
                }
                _ => {}
            }
        }
        assert!(!paid.is_empty() && !cancelled.is_empty());
    }
}
