//! Why a raw message was refused. The code goes to a DLQ header and a metric
//! label, so the set is closed and each code's name is stable.

use std::fmt;

/// Stable, machine-readable reason for a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectCode {
    /// The payload is empty.
    EmptyPayload,
    /// The payload is larger than the configured maximum.
    PayloadTooLarge,
    /// Not valid UTF-8 JSON, or not a JSON object.
    MalformedJson,
    /// `content-type: application/x-protobuf` but not a `RawEvent`.
    MalformedProtobuf,
    /// The `content-type` header names a format we do not read.
    UnsupportedContentType,
    /// A required field is absent or empty.
    MissingField,
    /// A field has the wrong JSON type or an unusable value.
    InvalidField,
    /// A field is longer than its limit.
    FieldTooLong,
    /// A number is outside its allowed range (negative price, rating 7, ...).
    OutOfRange,
    /// `type` is not one of the event types of the contract.
    UnknownType,
    /// `ts` is neither RFC 3339 nor epoch milliseconds.
    BadTimestamp,
    /// Older than the newest event of the same user by more than the allowed lateness.
    LateEvent,
    /// Further in the future than the allowed clock skew.
    FutureEvent,
}

impl RejectCode {
    pub const ALL: [RejectCode; 13] = [
        RejectCode::EmptyPayload,
        RejectCode::PayloadTooLarge,
        RejectCode::MalformedJson,
        RejectCode::MalformedProtobuf,
        RejectCode::UnsupportedContentType,
        RejectCode::MissingField,
        RejectCode::InvalidField,
        RejectCode::FieldTooLong,
        RejectCode::OutOfRange,
        RejectCode::UnknownType,
        RejectCode::BadTimestamp,
        RejectCode::LateEvent,
        RejectCode::FutureEvent,
    ];

    /// The snake_case name used in DLQ headers and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::EmptyPayload => "empty_payload",
            RejectCode::PayloadTooLarge => "payload_too_large",
            RejectCode::MalformedJson => "malformed_json",
            RejectCode::MalformedProtobuf => "malformed_protobuf",
            RejectCode::UnsupportedContentType => "unsupported_content_type",
            RejectCode::MissingField => "missing_field",
            RejectCode::InvalidField => "invalid_field",
            RejectCode::FieldTooLong => "field_too_long",
            RejectCode::OutOfRange => "out_of_range",
            RejectCode::UnknownType => "unknown_type",
            RejectCode::BadTimestamp => "bad_timestamp",
            RejectCode::LateEvent => "late_event",
            RejectCode::FutureEvent => "future_event",
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused message: a stable code and a reason a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: RejectCode,
    pub reason: String,
}

impl Rejection {
    pub fn new(code: RejectCode, reason: impl Into<String>) -> Self {
        Rejection {
            code,
            reason: reason.into(),
        }
    }

    pub(crate) fn missing(field: &str) -> Self {
        Rejection::new(
            RejectCode::MissingField,
            format!("missing required field `{field}`"),
        )
    }

    pub(crate) fn invalid(field: &str, expected: &str) -> Self {
        Rejection::new(
            RejectCode::InvalidField,
            format!("field `{field}` must be {expected}"),
        )
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.reason)
    }
}

impl std::error::Error for Rejection {}
