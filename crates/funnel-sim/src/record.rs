//! What the simulator emits: raw bytes, because injected faults include payloads that are not
//! JSON at all.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::session::SessionKind;

/// One message as a platform would produce it onto the raw-events topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRecord {
    /// Partition key: `user_id`, or `item_id` for catalog events.
    pub key: Option<String>,
    /// JSON for valid records and duplicates; anything for invalid ones. Never contains a
    /// newline, so it can be written as one NDJSON line.
    pub payload: Vec<u8>,
    /// Simulated send time, epoch milliseconds; non-decreasing over the stream, so a live
    /// demo can pace on it. Equals the payload's `ts` for valid records; a duplicate is sent
    /// later than its original's `ts`.
    pub ts_ms: i64,
    pub kind: RecordKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Valid,
    /// A byte-identical repeat of an earlier valid record (same `event_id`), as an
    /// at-least-once producer emits after a retry.
    Duplicate,
    Invalid(InvalidReason),
}

/// How an injected record breaks the raw event contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidReason {
    /// Truncated JSON, invalid UTF-8 or plain text.
    NotJson,
    MissingEventId,
    /// `event_id` longer than 128 bytes.
    OversizedEventId,
    MissingUserId,
    UnknownType,
    /// A negative price on an order line or catalog item.
    NegativePrice,
    /// A review rating outside 1–5.
    RatingOutOfRange,
    /// `ts` that is neither epoch milliseconds nor RFC 3339.
    BadTimestamp,
    /// A search `query` longer than 512 bytes.
    OversizedQuery,
    /// A field of the wrong JSON type, e.g. `"quantity": "two"`.
    WrongFieldType,
}

impl InvalidReason {
    pub const ALL: [Self; 10] = [
        Self::NotJson,
        Self::MissingEventId,
        Self::OversizedEventId,
        Self::MissingUserId,
        Self::UnknownType,
        Self::NegativePrice,
        Self::RatingOutOfRange,
        Self::BadTimestamp,
        Self::OversizedQuery,
        Self::WrongFieldType,
    ];
}

impl SimRecord {
    pub fn is_valid(&self) -> bool {
        self.kind == RecordKind::Valid
    }

    /// The event as JSON, for valid records and duplicates; `None` for injected faults.
    pub fn json(&self) -> Option<serde_json::Value> {
        match self.kind {
            RecordKind::Valid | RecordKind::Duplicate => serde_json::from_slice(&self.payload).ok(),
            RecordKind::Invalid(_) => None,
        }
    }

    /// The payload followed by a newline.
    pub fn to_ndjson_line(&self) -> Vec<u8> {
        let mut line = Vec::with_capacity(self.payload.len() + 1);
        line.extend_from_slice(&self.payload);
        line.push(b'\n');
        line
    }

    /// Writes the payload and a newline, without allocating.
    pub fn write_ndjson(&self, mut out: impl Write) -> io::Result<()> {
        out.write_all(&self.payload)?;
        out.write_all(b"\n")
    }
}

/// The hidden truth about one browsing session, for training and checking models. It never
/// appears in the raw events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionTruth {
    /// As in the events' `session_id` (even when `omit_session_ids` leaves it out of them).
    pub session_id: String,
    pub user_id: String,
    /// Time of the session's first and last event, epoch milliseconds.
    pub start_ms: i64,
    pub end_ms: i64,
    /// The true chance of an order given everything latent at the session's start (intent,
    /// history, budget against prices); `ordered` was drawn from it, so it is calibrated.
    /// Later events (a cart filling up) reveal more than this, by design.
    pub purchase_probability: f64,
    pub ordered: bool,
    /// The order placed in the session, as in the `order` event's `order_id`.
    pub order_id: Option<String>,
    /// Something was in the cart at the end and no order was placed.
    pub cart_abandoned: bool,
    pub kind: SessionKind,
    /// Events the session emitted (after-sales events come later and are not counted).
    pub events: u32,
}
