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
//! | `P:s:{session}` | hash | counts by type (their sum is the session's events), start, last, lastq | session TTL |
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
    with_window_field(kind, ts_ms, str::to_owned)
}

/// Calls `f` with [`window_field`], built on the stack (the hot path counts every
/// item of every impression).
pub fn with_window_field<R>(kind: &str, ts_ms: i64, f: impl FnOnce(&str) -> R) -> R {
    let mut slot = itoa::Buffer::new();
    let slot = slot.format(ts_ms.rem_euclid(HOUR_MS) / SLOT_5M_MS);
    on_stack(&[kind, ":", slot], f)
}

/// Calls `f` with `parts` joined, on the stack when they fit (the heap otherwise):
/// for strings built on the hot path only to be looked up.
fn on_stack<R>(parts: &[&str], f: impl FnOnce(&str) -> R) -> R {
    let mut buf = [0u8; 192];
    let len = parts.iter().map(|p| p.len()).sum::<usize>();
    if len > buf.len() {
        return f(&parts.concat());
    }
    let mut at = 0;
    for part in parts {
        buf[at..at + part.len()].copy_from_slice(part.as_bytes());
        at += part.len();
    }
    f(std::str::from_utf8(&buf[..len]).expect("built from strs"))
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

    /// The prefix and `parts`, built in one allocation (keys are made for
    /// every event on the hot path).
    fn key(&self, parts: &[&str]) -> String {
        let len = self.prefix.len() + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut key = String::with_capacity(len);
        key.push_str(&self.prefix);
        for part in parts {
            key.push_str(part);
        }
        key
    }

    pub fn dedup(&self, event_id: &str) -> String {
        self.key(&[":dedup:", event_id])
    }

    pub fn user_state(&self, user: &str) -> String {
        self.key(&[":u:", user, ":state"])
    }

    pub fn user_counts(&self, user: &str) -> String {
        self.key(&[":u:", user, ":n"])
    }

    pub fn user_recent(&self, user: &str) -> String {
        self.key(&[":u:", user, ":recent"])
    }

    pub fn user_categories(&self, user: &str) -> String {
        self.key(&[":u:", user, ":cats"])
    }

    pub fn user_cart(&self, user: &str) -> String {
        self.key(&[":u:", user, ":cart"])
    }

    pub fn session(&self, session: &str) -> String {
        self.key(&[":s:", session])
    }

    pub fn session_items(&self, session: &str) -> String {
        self.key(&[":s:", session, ":items"])
    }

    pub fn item(&self, item: &str) -> String {
        self.key(&[":i:", item])
    }

    /// The hourly window hash holding `ts_ms`: fields `{kind}:{slot}` count
    /// events of that kind in each 5-minute slot (0–11) of the hour.
    pub fn item_window(&self, item: &str, ts_ms: i64) -> String {
        self.with_item_window(item, ts_ms, str::to_owned)
    }

    /// Calls `f` with [`Keys::item_window`], built on the stack when it fits: every
    /// impressed item is counted, mostly in a window the batch already holds.
    pub fn with_item_window<R>(&self, item: &str, ts_ms: i64, f: impl FnOnce(&str) -> R) -> R {
        let mut hour = itoa::Buffer::new();
        let hour = hour.format(ts_ms.div_euclid(HOUR_MS));
        on_stack(&[&self.prefix, ":i:", item, ":w:", hour], f)
    }

    pub fn item_covisits(&self, item: &str) -> String {
        self.key(&[":i:", item, ":covis"])
    }

    pub fn item_bought_together(&self, item: &str) -> String {
        self.key(&[":i:", item, ":bought"])
    }

    /// Popularity of items in `category` on the day holding `ts_ms`.
    pub fn category_popularity(&self, category: &str, ts_ms: i64) -> String {
        let day = ts_ms.div_euclid(DAY_MS);
        self.key(&[":c:", category, ":pop:", itoa::Buffer::new().format(day)])
    }

    pub fn query(&self, query: &str) -> String {
        self.key(&[":q:", query])
    }

    pub fn query_clicks(&self, query: &str) -> String {
        self.key(&[":q:", query, ":clicks"])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_window_fields_are_spelled_as_documented() {
        let k = Keys::new("P");
        let ts = 2 * DAY_MS + 3 * HOUR_MS + 17 * 60 * 1000;
        assert_eq!(k.dedup("e1"), "P:dedup:e1");
        assert_eq!(k.user_state("u1"), "P:u:u1:state");
        assert_eq!(k.session_items("s1"), "P:s:s1:items");
        assert_eq!(k.item_window("i1", ts), "P:i:i1:w:51");
        let long = "i".repeat(200);
        assert_eq!(
            k.item_window(&long, ts),
            format!("P:i:{long}:w:51"),
            "beyond the stack buffer"
        );
        assert_eq!(k.category_popularity("a/b", ts), "P:c:a/b:pop:2");
        assert_eq!(k.query_clicks("red shoes"), "P:q:red shoes:clicks");
        assert_eq!(window_field("click", ts), "click:3");
        assert_eq!(window_field("cart", -1), "cart:11");
        let long = "k".repeat(70);
        assert_eq!(
            window_field(&long, ts),
            format!("{long}:3"),
            "beyond the stack buffer"
        );
    }
}
