//! Fault injection: extra malformed and duplicate records mixed into the valid stream.
//!
//! Faults are added, never substituted, and draw from their own random stream with their own
//! id namespace, so the valid records of a run are identical whatever the fault rates.

use std::collections::VecDeque;

use serde_json::{Value, json};

use crate::event::wire_ts;
use crate::ids;
use crate::record::{InvalidReason, RecordKind, SimRecord};
use crate::sampling::{SimRng, index, pick, unit};

/// Duplicates repeat one of this many most recent valid records, as a producer retry would.
const RECENT_WINDOW: usize = 16;

pub(crate) struct FaultInjector {
    rng: SimRng,
    invalid_rate: f64,
    duplicate_rate: f64,
    run: String,
    currency: String,
    rfc3339_timestamps: bool,
    recent: VecDeque<SimRecord>,
    injected: u64,
}

impl FaultInjector {
    pub(crate) fn new(
        rng: SimRng,
        invalid_rate: f64,
        duplicate_rate: f64,
        run: String,
        currency: String,
        rfc3339_timestamps: bool,
    ) -> Self {
        Self {
            rng,
            invalid_rate,
            duplicate_rate,
            run,
            currency,
            rfc3339_timestamps,
            recent: VecDeque::with_capacity(RECENT_WINDOW),
            injected: 0,
        }
    }

    pub(crate) fn remember(&mut self, record: &SimRecord) {
        if self.recent.len() == RECENT_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(record.clone());
    }

    /// A fault to emit before the next valid record, with probability
    /// `invalid_rate + duplicate_rate`; faults need a valid record to be derived from.
    pub(crate) fn inject(&mut self) -> Option<SimRecord> {
        let latest = self.recent.back()?;
        let send_ms = latest.ts_ms;
        let roll = unit(&mut self.rng);
        if roll < self.invalid_rate {
            let reason = *pick(&mut self.rng, &InvalidReason::ALL);
            let key = latest.key.clone();
            let base: Value =
                serde_json::from_slice(&latest.payload).expect("valid records are JSON");
            let payload = self.malformed(reason, base, send_ms);
            Some(SimRecord {
                key,
                payload,
                ts_ms: send_ms,
                kind: RecordKind::Invalid(reason),
            })
        } else if roll < self.invalid_rate + self.duplicate_rate {
            let original = &self.recent[index(&mut self.rng, self.recent.len())];
            Some(SimRecord {
                ts_ms: send_ms,
                kind: RecordKind::Duplicate,
                ..original.clone()
            })
        } else {
            None
        }
    }

    /// A payload broken in the way `reason` says, derived from a real recent event where the
    /// breakage fits it, otherwise a made-up event of the type the breakage needs.
    fn malformed(&mut self, reason: InvalidReason, mut event: Value, send_ms: i64) -> Vec<u8> {
        self.injected += 1;
        let fresh_id = ids::injected(&self.run, self.injected);
        event["event_id"] = json!(fresh_id);
        let user_id = event
            .get("user_id")
            .cloned()
            .unwrap_or_else(|| json!("u-000000"));
        let item_id = event
            .get("item_id")
            .or_else(|| event.get("item_ids").and_then(|ids| ids.get(0)))
            .cloned()
            .unwrap_or_else(|| json!("sku-000000"));
        let ts = wire_ts(send_ms, self.rfc3339_timestamps);
        let made_up = |kind: &str, fields: Value| {
            let mut made =
                json!({"event_id": fresh_id, "type": kind, "ts": ts, "user_id": user_id});
            if let (Some(made), Value::Object(fields)) = (made.as_object_mut(), fields) {
                made.extend(fields);
            }
            made
        };
        let broken = match reason {
            InvalidReason::NotJson => return self.not_json(&event),
            InvalidReason::MissingEventId => {
                remove(&mut event, "event_id");
                event
            }
            InvalidReason::OversizedEventId => {
                event["event_id"] = json!(format!("{fresh_id}-{}", "9".repeat(200)));
                event
            }
            InvalidReason::MissingUserId if event.get("user_id").is_some() => {
                remove(&mut event, "user_id");
                event
            }
            InvalidReason::MissingUserId => {
                let mut click = made_up("click", json!({"item_id": item_id}));
                remove(&mut click, "user_id");
                click
            }
            InvalidReason::UnknownType => {
                event["type"] = json!(*pick(
                    &mut self.rng,
                    &["page_view", "wishlist_add", "checkout_v2"]
                ));
                event
            }
            InvalidReason::NegativePrice => {
                let price = -((1 + index(&mut self.rng, 200)) as f64) - 0.01;
                made_up(
                    "order",
                    json!({
                        "order_id": ids::injected(&self.run, self.injected),
                        "lines": [{"item_id": item_id, "quantity": 1, "price": price}],
                        "currency": self.currency,
                    }),
                )
            }
            InvalidReason::RatingOutOfRange => {
                let rating = *pick(&mut self.rng, &[0, 6, 7, 10, -1]);
                made_up(
                    "review",
                    json!({
                        "item_id": item_id,
                        "order_id": ids::injected(&self.run, self.injected),
                        "rating": rating,
                        "text": "Great, ten out of five!",
                    }),
                )
            }
            InvalidReason::BadTimestamp => {
                event["ts"] = json!(*pick(
                    &mut self.rng,
                    &[
                        "yesterday",
                        "2026-13-45T99:00:00Z",
                        "not-a-timestamp",
                        "12/31/2025 10:00",
                        ""
                    ]
                ));
                event
            }
            InvalidReason::OversizedQuery => {
                let words = 60 + index(&mut self.rng, 200);
                let query = vec!["wireless headphones"; words].join(" ");
                made_up("search", json!({"query": query, "results": []}))
            }
            InvalidReason::WrongFieldType => made_up(
                "add_to_cart",
                json!({"item_id": item_id, "quantity": "two"}),
            ),
        };
        serde_json::to_vec(&broken).expect("serialising a JSON value cannot fail")
    }

    fn not_json(&mut self, event: &Value) -> Vec<u8> {
        let text = serde_json::to_vec(event).expect("serialising a JSON value cannot fail");
        match index(&mut self.rng, 3) {
            // Cut off mid-message, as a crashed producer leaves it.
            0 => text[..text.len() / 2].to_vec(),
            // Latin-1 bytes where UTF-8 is required.
            1 => {
                let mut bytes = b"{\"event_id\":\"".to_vec();
                bytes.extend_from_slice(&[0xC3, 0x28, 0xFF, 0xFE]);
                bytes.extend_from_slice(b"\",\"type\":\"click\"}");
                bytes
            }
            _ => format!("event=click user={} at={}", event["user_id"], event["ts"]).into_bytes(),
        }
    }
}

fn remove(event: &mut Value, field: &str) {
    if let Some(fields) = event.as_object_mut() {
        fields.remove(field);
    }
}
