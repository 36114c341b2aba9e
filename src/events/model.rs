//! The wire format of the events, as the application would emit them.
//!
//! Money is in integer minor units (cents) because floats in financial events
//! are a bug waiting to land in a data lake.

use serde::{Deserialize, Serialize};

/// One product line in a cart or order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub sku: String,
    pub quantity: u32,
    /// Price of one unit in minor units of the event's currency.
    pub unit_price: i64,
}

/// An event: the fields every type carries, then the type-specific body.
///
/// Field order in the JSON is stable (`event_id`, `occurred_at`,
/// `customer_id`, `event_type`, then the body) so the same seed gives the same
/// bytes, and landed objects diff cleanly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: String,
    /// RFC 3339 UTC with millisecond precision, e.g. `2026-07-13T14:00:00.123Z`.
    pub occurred_at: String,
    /// Also the Kafka record key, so one customer's events stay ordered.
    pub customer_id: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The type-specific part; `event_type` is the tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", rename_all = "snake_case")]
pub enum EventKind {
    PageViewed {
        session_id: String,
        page: String,
        /// The product shown, for product pages.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        sku: Option<String>,
    },
    CartItemAdded {
        session_id: String,
        cart_id: String,
        item: LineItem,
        currency: String,
    },
    CartItemRemoved {
        session_id: String,
        cart_id: String,
        sku: String,
        quantity: u32,
    },
    OrderPlaced {
        order_id: String,
        cart_id: String,
        items: Vec<LineItem>,
        currency: String,
        subtotal: i64,
        shipping: i64,
        tax: i64,
        total: i64,
    },
    PaymentCaptured {
        order_id: String,
        payment_id: String,
        amount: i64,
        currency: String,
        method: String,
    },
    OrderShipped {
        order_id: String,
        shipment_id: String,
        carrier: String,
        items_count: u32,
    },
    OrderCancelled {
        order_id: String,
        reason: String,
    },
    RefundIssued {
        order_id: String,
        refund_id: String,
        amount: i64,
        currency: String,
        reason: String,
    },
}

impl EventKind {
    /// The `event_type` tag as it appears in the JSON.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::PageViewed { .. } => "page_viewed",
            EventKind::CartItemAdded { .. } => "cart_item_added",
            EventKind::CartItemRemoved { .. } => "cart_item_removed",
            EventKind::OrderPlaced { .. } => "order_placed",
            EventKind::PaymentCaptured { .. } => "payment_captured",
            EventKind::OrderShipped { .. } => "order_shipped",
            EventKind::OrderCancelled { .. } => "order_cancelled",
            EventKind::RefundIssued { .. } => "refund_issued",
        }
    }
}

impl Event {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("events contain only strings and integers")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_event_type_tag_and_round_trips() {
        let event = Event {
            event_id: "3f1c2a9e-0000-4000-8000-000000000001".into(),
            occurred_at: "2026-07-13T14:00:00.123Z".into(),
            customer_id: "c-000042".into(),
            kind: EventKind::PaymentCaptured {
                order_id: "o-1".into(),
                payment_id: "p-1".into(),
                amount: 12_999,
                currency: "EUR".into(),
                method: "card".into(),
            },
        };
        let json = String::from_utf8(event.to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"event_id":"3f1c2a9e-0000-4000-8000-000000000001","occurred_at":"2026-07-13T14:00:00.123Z","customer_id":"c-000042","event_type":"payment_captured","order_id":"o-1","payment_id":"p-1","amount":12999,"currency":"EUR","method":"card"}"#
        );
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.kind.type_name(), "payment_captured");
    }
}
