//! The event model of Funnel: parsing, validation and normalisation of raw
//! platform events into canonical events, and the pure rules that need a
//! user's recent history (lateness, sessions). No I/O.
//!
//! # Layout
//! - [`reject`]: why an event was refused ([`Rejection`], [`RejectCode`]).
//! - [`parse`]: raw bytes (JSON or protobuf) to a canonical [`pb::Event`].
//! - [`session`]: lateness, future skew and session assignment per user.
//! - [`kind`]: event type names and the Kafka key of a canonical event.

pub mod kind;
pub mod parse;
pub mod reject;
pub mod session;

pub use funnel_proto::pb::events::v1 as pb;
pub use kind::{event_key, type_name};
pub use parse::{ContentType, Limits, parse_event};
pub use reject::{RejectCode, Rejection};
pub use session::{SessionRules, TimeCheck, UserClock};

/// Milliseconds since the Unix epoch, as every timestamp in the contract.
pub type Millis = i64;

/// The wall clock, in milliseconds since the Unix epoch.
pub fn now_ms() -> Millis {
    chrono::Utc::now().timestamp_millis()
}
