//! What the service keeps in Redis, under the configured prefix `P` (shared with ingest).
//!
//! | key | type | fields | TTL |
//! |---|---|---|---|
//! | `P:bp:s:{session}` | hash | `state` (JSON [`SessionState`]), `user`, `last_event` (id of the last applied event), `pub_ts` (event time of the last published prediction) | `predictor.session_ttl_secs`, refreshed on every event |
//! | `P:bp:u:{user}` | hash | `history` (JSON [`UserHistory`]), `session` (latest session id), `orders` (JSON, the latest `predictor.orders_max` orders) | `predictor.user_ttl_secs`, refreshed on every event |
//! | `P:bp:i:{item}` | hash | `clicks` (clicks the service has applied) | `predictor.item_ttl_secs`, refreshed on clicks |
//! | `P:bp:e:{event_id}` | string | `{topic}/{partition}/{offset}\|{session}` of the message that applied it | `predictor.session_ttl_secs` |
//! | `P:bp:idle` | sorted set | session id -> event time (ms) of its last event, sessions whose cart is not empty | `predictor.session_ttl_secs`, refreshed on every batch; members older than that are pruned by the idle scan |
//! | `P:bp:cd:{action}:{user}` | string | cool-down of one action for one user | the action's `cooldown_secs` |
//! | `P:bp:cap:{user}` | string | actions sent to the user in the current cap window | `caps.window_secs`, set by the window's first action |
//!
//! The catalog record `P:i:{item}` (fields `price`, `category`) is ingest's and only read.

use serde::{Deserialize, Serialize};

use crate::features::{OrderRecord, SessionState, UserHistory};

pub const SESSION_STATE: &str = "state";
pub const SESSION_USER: &str = "user";
pub const SESSION_LAST_EVENT: &str = "last_event";
pub const SESSION_PUBLISHED_TS: &str = "pub_ts";
pub const USER_HISTORY: &str = "history";
pub const USER_SESSION: &str = "session";
pub const USER_ORDERS: &str = "orders";
pub const ITEM_CLICKS: &str = "clicks";

/// The service's keys under one prefix.
#[derive(Debug, Clone)]
pub struct StateKeys {
    prefix: String,
    catalog: funnel_store::Keys,
}

impl StateKeys {
    pub fn new(prefix: &str) -> Self {
        StateKeys {
            prefix: prefix.to_string(),
            catalog: funnel_store::Keys::new(prefix),
        }
    }

    pub fn session(&self, session: &str) -> String {
        format!("{}:bp:s:{session}", self.prefix)
    }

    pub fn user(&self, user: &str) -> String {
        format!("{}:bp:u:{user}", self.prefix)
    }

    pub fn item_clicks(&self, item: &str) -> String {
        format!("{}:bp:i:{item}", self.prefix)
    }

    pub fn event_marker(&self, event_id: &str) -> String {
        format!("{}:bp:e:{event_id}", self.prefix)
    }

    /// Sessions with a non-empty cart by the event time of their last event.
    pub fn idle_sessions(&self) -> String {
        format!("{}:bp:idle", self.prefix)
    }

    pub fn cooldown(&self, action: &str, user: &str) -> String {
        format!("{}:bp:cd:{action}:{user}", self.prefix)
    }

    pub fn cap(&self, user: &str) -> String {
        format!("{}:bp:cap:{user}", self.prefix)
    }

    /// Ingest's catalog record of `item`.
    pub fn catalog_item(&self, item: &str) -> String {
        self.catalog.item(item)
    }
}

/// One session as stored.
#[derive(Debug, Clone, Default)]
pub struct StoredSession {
    pub state: SessionState,
    pub user_id: String,
    pub last_event_id: String,
    /// Event time of the last published prediction, if any.
    pub published_ts_ms: Option<i64>,
}

impl StoredSession {
    /// From the `HMGET` of [`SESSION_FIELDS`]; `None` when the session is not stored.
    pub fn from_fields(fields: Vec<Option<String>>) -> Option<StoredSession> {
        let mut fields = fields.into_iter();
        let state = fields.next().flatten()?;
        let state = serde_json::from_str(&state).ok()?;
        Some(StoredSession {
            state,
            user_id: fields.next().flatten().unwrap_or_default(),
            last_event_id: fields.next().flatten().unwrap_or_default(),
            published_ts_ms: fields.next().flatten().and_then(|v| v.parse().ok()),
        })
    }
}

pub const SESSION_FIELDS: [&str; 4] = [
    SESSION_STATE,
    SESSION_USER,
    SESSION_LAST_EVENT,
    SESSION_PUBLISHED_TS,
];

/// One user as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoredUser {
    pub history: UserHistory,
    pub latest_session: String,
    pub orders: Vec<OrderRecord>,
}

pub const USER_FIELDS: [&str; 3] = [USER_HISTORY, USER_SESSION, USER_ORDERS];

impl StoredUser {
    /// From the `HMGET` of [`USER_FIELDS`]; `None` when the user is not stored.
    pub fn from_fields(fields: Vec<Option<String>>) -> Option<StoredUser> {
        let mut fields = fields.into_iter();
        let history = fields.next().flatten()?;
        Some(StoredUser {
            history: serde_json::from_str(&history).ok()?,
            latest_session: fields.next().flatten().unwrap_or_default(),
            orders: fields
                .next()
                .flatten()
                .and_then(|v| serde_json::from_str(&v).ok())
                .unwrap_or_default(),
        })
    }
}
