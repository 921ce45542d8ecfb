//! Every key the feature store writes. One place, so that readers in other
//! services and the writers in ingest cannot disagree.
//!
//! | key | type | content | TTL |
//! |---|---|---|---|
//! | `P:dedup:{event_id}` | string | `{topic}/{partition}/{offset}\|{session_id}` | dedup window |
//! | `P:u:{user}:state` | hash | newest, sid, sstart, slast, lastq, sitems | user TTL |
//! | `P:u:{user}:n` | hash | event counts by type, `orders`, `revenue` | user TTL |
//! | `P:u:{user}:recent` | list | recent item ids, newest first | user TTL |
//! | `P:u:{user}:cats` | list | recent categories, newest first | user TTL |
//! | `P:u:{user}:cart` | hash | item id → quantity | user TTL |
//! | `P:s:{session}` | hash | counts by type, events, start, last, lastq | session TTL |
//! | `P:s:{session}:items` | list | items clicked or carted | session TTL |
//! | `P:i:{item}` | hash | catalog record | catalog TTL |
//! | `P:i:{item}:w:{hour}` | hash | `{kind}:{5-minute slot of the hour}` → count, kinds impression/click/cart/order | 25 h |
//! | `P:i:{item}:covis` | zset | items in the same sessions | item TTL |
//! | `P:i:{item}:bought` | zset | items ordered together | item TTL |
//! | `P:c:{category}:pop:{day}` | zset | item popularity in that category | 8 days |
//! | `P:q:{query}` | hash | searches, clicks | query TTL |
//! | `P:q:{query}:clicks` | zset | items clicked after the query | query TTL |

/// Length of the short window's slots.
pub const SLOT_5M_MS: i64 = 5 * 60 * 1000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;
/// TTL of an hourly window hash: the 24 h window plus one hour.
pub const HOUR_TTL_SECS: u64 = 25 * 3600;
/// TTL of a daily popularity bucket.
pub const DAY_TTL_SECS: u64 = 8 * 86_400;

/// The field of an hourly window hash counting `kind` in the slot of `ts_ms`.
pub fn window_field(kind: &str, ts_ms: i64) -> String {
    format!("{kind}:{}", ts_ms.rem_euclid(HOUR_MS) / SLOT_5M_MS)
}

/// Builds keys under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn dedup(&self, event_id: &str) -> String {
        format!("{}:dedup:{event_id}", self.prefix)
    }

    pub fn user_state(&self, user: &str) -> String {
        format!("{}:u:{user}:state", self.prefix)
    }

    pub fn user_counts(&self, user: &str) -> String {
        format!("{}:u:{user}:n", self.prefix)
    }

    pub fn user_recent(&self, user: &str) -> String {
        format!("{}:u:{user}:recent", self.prefix)
    }

    pub fn user_categories(&self, user: &str) -> String {
        format!("{}:u:{user}:cats", self.prefix)
    }

    pub fn user_cart(&self, user: &str) -> String {
        format!("{}:u:{user}:cart", self.prefix)
    }

    pub fn session(&self, session: &str) -> String {
        format!("{}:s:{session}", self.prefix)
    }

    pub fn session_items(&self, session: &str) -> String {
        format!("{}:s:{session}:items", self.prefix)
    }

    pub fn item(&self, item: &str) -> String {
        format!("{}:i:{item}", self.prefix)
    }

    /// The hourly window hash holding `ts_ms`: fields `{kind}:{slot}` count
    /// events of that kind in each 5-minute slot (0–11) of the hour.
    pub fn item_window(&self, item: &str, ts_ms: i64) -> String {
        format!("{}:i:{item}:w:{}", self.prefix, ts_ms.div_euclid(HOUR_MS))
    }

    pub fn item_covisits(&self, item: &str) -> String {
        format!("{}:i:{item}:covis", self.prefix)
    }

    pub fn item_bought_together(&self, item: &str) -> String {
        format!("{}:i:{item}:bought", self.prefix)
    }

    /// Popularity of items in `category` on the day holding `ts_ms`.
    pub fn category_popularity(&self, category: &str, ts_ms: i64) -> String {
        format!(
            "{}:c:{category}:pop:{}",
            self.prefix,
            ts_ms.div_euclid(DAY_MS)
        )
    }

    pub fn query(&self, query: &str) -> String {
        format!("{}:q:{query}", self.prefix)
    }

    pub fn query_clicks(&self, query: &str) -> String {
        format!("{}:q:{query}:clicks", self.prefix)
    }
}

/// Fields of the user state hash.
pub mod state_field {
    pub const NEWEST: &str = "newest";
    pub const SESSION_ID: &str = "sid";
    pub const SESSION_START: &str = "sstart";
    pub const SESSION_LAST: &str = "slast";
    pub const LAST_QUERY: &str = "lastq";
    /// Items of the current session, newest first, `\x1f`-separated.
    pub const SESSION_ITEMS: &str = "sitems";
}

/// Separator of lists packed into one hash field.
pub const LIST_SEP: char = '\x1f';
