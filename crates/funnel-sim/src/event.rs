//! Events as the simulator builds them (compact indexes) and their JSON wire form (the raw
//! platform contract: `event_id`, `type`, `ts`, `user_id`, `session_id`, then per-type fields).
//!
//! The JSON is written by hand rather than derived: most of a payload is ids the simulator
//! formats itself, which need no escaping, and skipping serde's per-byte escape scan halves
//! generation time in debug builds, where the test suite runs.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat};

use crate::catalog::Catalog;
use crate::ids;

/// Where a list of items was shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    Search,
    Home,
    ItemPage,
    Cart,
}

impl ListKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Search => "search",
            Self::Home => "home",
            Self::ItemPage => "item_page",
            Self::Cart => "cart",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    Email,
    Chat,
    Phone,
}

impl Channel {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Chat => "chat",
            Self::Phone => "phone",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OrderLine {
    pub item: u32,
    pub quantity: u32,
    pub price_cents: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Body {
    Search {
        query: String,
        results: Vec<u32>,
    },
    Impression {
        items: Vec<u32>,
        list_id: Option<u64>,
        list: ListKind,
    },
    Click {
        item: u32,
        position: Option<u32>,
        list_id: Option<u64>,
    },
    AddToCart {
        item: u32,
        quantity: u32,
    },
    RemoveFromCart {
        item: u32,
        quantity: u32,
    },
    Order {
        order: u64,
        lines: Vec<OrderLine>,
    },
    Review {
        item: u32,
        order: u64,
        rating: u8,
        text: String,
    },
    Return {
        order: u64,
        item: u32,
        reason: String,
    },
    Ticket {
        order: Option<u64>,
        text: String,
        channel: Channel,
    },
    /// A catalog upsert; price and stock are captured when the event is made, because the
    /// catalog keeps changing after it.
    Item {
        item: u32,
        price_cents: i64,
        stock: i64,
    },
}

impl Body {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Self::Search { .. } => "search",
            Self::Impression { .. } => "impression",
            Self::Click { .. } => "click",
            Self::AddToCart { .. } => "add_to_cart",
            Self::RemoveFromCart { .. } => "remove_from_cart",
            Self::Order { .. } => "order",
            Self::Review { .. } => "review",
            Self::Return { .. } => "return",
            Self::Ticket { .. } => "ticket",
            Self::Item { .. } => "item",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    pub ts_ms: i64,
    pub user: Option<u32>,
    /// Browsing session; `None` for catalog and after-sales events, which happen outside one.
    pub session: Option<u64>,
    pub body: Body,
}

impl Event {
    pub(crate) fn catalog_upsert(ts_ms: i64, catalog: &Catalog, item: u32) -> Self {
        let entry = catalog.item(item);
        Self {
            ts_ms,
            user: None,
            session: None,
            body: Body::Item {
                item,
                price_cents: entry.price_cents,
                stock: entry.stock,
            },
        }
    }
}

/// Turns events into JSON payloads with the run's output options.
pub(crate) struct Encoder {
    pub run: String,
    pub currency: String,
    pub omit_session_ids: bool,
    pub rfc3339_timestamps: bool,
}

impl Encoder {
    /// Kafka key (user id, or item id for catalog events) and JSON payload.
    pub(crate) fn encode(
        &self,
        event: &Event,
        number: u64,
        catalog: &Catalog,
    ) -> (Option<String>, Vec<u8>) {
        let item_id = |item: u32| catalog.item(item).item_id.as_str();
        let user_id = event.user.map(ids::user);
        let key = match &event.body {
            Body::Item { item, .. } => Some(item_id(*item).to_owned()),
            _ => user_id.clone(),
        };

        let mut json = JsonObject::with_capacity(256);
        json.plain("event_id", &ids::event(&self.run, number));
        json.plain("type", event.body.type_name());
        if self.rfc3339_timestamps {
            json.plain("ts", &rfc3339(event.ts_ms));
        } else {
            json.integer("ts", event.ts_ms);
        }
        if let Some(user_id) = &user_id {
            json.plain("user_id", user_id);
        }
        if let Some(session) = event.session.filter(|_| !self.omit_session_ids) {
            json.plain("session_id", &ids::session(&self.run, session));
        }

        match &event.body {
            Body::Search { query, results } => {
                json.text("query", query);
                json.plain_array("results", results.iter().map(|&item| item_id(item)));
            }
            Body::Impression {
                items,
                list_id,
                list,
            } => {
                json.plain_array("item_ids", items.iter().map(|&item| item_id(item)));
                if let Some(list_id) = list_id {
                    json.plain("recomm_id", &ids::recommendation(&self.run, *list_id));
                }
                json.plain("list", list.as_str());
            }
            Body::Click {
                item,
                position,
                list_id,
            } => {
                json.plain("item_id", item_id(*item));
                if let Some(position) = position {
                    json.integer("position", i64::from(*position));
                }
                if let Some(list_id) = list_id {
                    json.plain("recomm_id", &ids::recommendation(&self.run, *list_id));
                }
            }
            Body::AddToCart { item, quantity } | Body::RemoveFromCart { item, quantity } => {
                json.plain("item_id", item_id(*item));
                json.integer("quantity", i64::from(*quantity));
            }
            Body::Order { order, lines } => {
                json.plain("order_id", &ids::order(&self.run, *order));
                json.key("lines");
                json.buffer.push(b'[');
                for (index, line) in lines.iter().enumerate() {
                    if index > 0 {
                        json.buffer.push(b',');
                    }
                    let mut line_json = JsonObject::nested(&mut json.buffer);
                    line_json.plain("item_id", item_id(line.item));
                    line_json.integer("quantity", i64::from(line.quantity));
                    line_json.price("price", line.price_cents);
                    line_json.close();
                }
                json.buffer.push(b']');
                json.plain("currency", &self.currency);
            }
            Body::Review {
                item,
                order,
                rating,
                text,
            } => {
                json.plain("item_id", item_id(*item));
                json.plain("order_id", &ids::order(&self.run, *order));
                json.integer("rating", i64::from(*rating));
                json.text("text", text);
            }
            Body::Return {
                order,
                item,
                reason,
            } => {
                json.plain("order_id", &ids::order(&self.run, *order));
                json.plain("item_id", item_id(*item));
                json.text("reason", reason);
            }
            Body::Ticket {
                order,
                text,
                channel,
            } => {
                if let Some(order) = order {
                    json.plain("order_id", &ids::order(&self.run, *order));
                }
                json.text("text", text);
                json.plain("channel", channel.as_str());
            }
            Body::Item {
                item,
                price_cents,
                stock,
            } => {
                let entry = catalog.item(*item);
                json.plain("item_id", &entry.item_id);
                json.text("title", &entry.title);
                json.text("category", &entry.category);
                json.text("brand", &entry.brand);
                json.price("price", *price_cents);
                json.integer("stock", *stock);
                json.key("attributes");
                let mut attributes = JsonObject::nested(&mut json.buffer);
                for (name, value) in &entry.attributes {
                    attributes.text(name, value);
                }
                attributes.close();
            }
        }
        json.close();
        (key, json.into_bytes())
    }
}

/// The `ts` field: epoch milliseconds, or RFC 3339 in UTC with millisecond precision.
pub(crate) fn wire_ts(ts_ms: i64, rfc3339_timestamps: bool) -> serde_json::Value {
    if rfc3339_timestamps {
        serde_json::Value::String(rfc3339(ts_ms))
    } else {
        serde_json::Value::from(ts_ms)
    }
}

fn rfc3339(ts_ms: i64) -> String {
    let time = DateTime::from_timestamp_millis(ts_ms)
        .expect("start_ms is validated to a formattable range");
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A JSON object written straight into a byte buffer.
struct JsonObject<B> {
    buffer: B,
    empty: bool,
}

impl JsonObject<Vec<u8>> {
    fn with_capacity(capacity: usize) -> Self {
        let mut buffer = Vec::with_capacity(capacity);
        buffer.push(b'{');
        Self {
            buffer,
            empty: true,
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        self.buffer
    }
}

impl<'a> JsonObject<&'a mut Vec<u8>> {
    fn nested(buffer: &'a mut Vec<u8>) -> Self {
        buffer.push(b'{');
        Self {
            buffer,
            empty: true,
        }
    }
}

impl<B: AsMut<Vec<u8>>> JsonObject<B> {
    fn key(&mut self, key: &str) {
        let empty = std::mem::replace(&mut self.empty, false);
        let buffer = self.buffer.as_mut();
        if !empty {
            buffer.push(b',');
        }
        buffer.push(b'"');
        buffer.extend_from_slice(key.as_bytes());
        buffer.extend_from_slice(b"\":");
    }

    /// A string that needs no escaping: ids and names the simulator formats itself.
    fn plain(&mut self, key: &str, value: &str) {
        self.key(key);
        let buffer = self.buffer.as_mut();
        buffer.push(b'"');
        buffer.extend_from_slice(value.as_bytes());
        buffer.push(b'"');
    }

    fn plain_array<'v>(&mut self, key: &str, values: impl Iterator<Item = &'v str>) {
        self.key(key);
        let buffer = self.buffer.as_mut();
        buffer.push(b'[');
        for (index, value) in values.enumerate() {
            if index > 0 {
                buffer.push(b',');
            }
            buffer.push(b'"');
            buffer.extend_from_slice(value.as_bytes());
            buffer.push(b'"');
        }
        buffer.push(b']');
    }

    /// Free text (queries, titles, reviews), escaped as JSON requires.
    fn text(&mut self, key: &str, value: &str) {
        self.key(key);
        serde_json::to_writer(self.buffer.as_mut(), value).expect("writing to a Vec cannot fail");
    }

    fn integer(&mut self, key: &str, value: i64) {
        self.key(key);
        let mut digits = String::with_capacity(20);
        write!(digits, "{value}").expect("writing to a String cannot fail");
        self.buffer.as_mut().extend_from_slice(digits.as_bytes());
    }

    /// A price in major units from exact cents, e.g. `89.99`.
    fn price(&mut self, key: &str, cents: i64) {
        self.key(key);
        let sign = if cents < 0 { "-" } else { "" };
        let mut digits = String::with_capacity(24);
        write!(
            digits,
            "{sign}{}.{:02}",
            cents.abs() / 100,
            cents.abs() % 100
        )
        .expect("writing to a String cannot fail");
        self.buffer.as_mut().extend_from_slice(digits.as_bytes());
    }

    fn close(&mut self) {
        self.buffer.as_mut().push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_epoch_millis_or_rfc3339_utc() {
        assert_eq!(
            wire_ts(1_767_225_600_123, false),
            serde_json::json!(1_767_225_600_123_i64)
        );
        assert_eq!(
            wire_ts(1_767_225_600_123, true),
            serde_json::json!("2026-01-01T00:00:00.123Z")
        );
    }

    #[test]
    fn objects_are_valid_json_with_escaped_text_and_exact_prices() {
        let mut json = JsonObject::with_capacity(64);
        json.plain("event_id", "e-1");
        json.text("text", "said \"great\"\nthen \\ left");
        json.price("price", 8_999);
        json.price("refund", -705);
        json.key("line");
        let mut nested = JsonObject::nested(&mut json.buffer);
        nested.integer("quantity", 2);
        nested.close();
        json.plain_array("ids", ["a", "b"].into_iter());
        json.close();
        let text = String::from_utf8(json.into_bytes()).unwrap();
        assert_eq!(
            text,
            r#"{"event_id":"e-1","text":"said \"great\"\nthen \\ left","price":89.99,"refund":-7.05,"line":{"quantity":2},"ids":["a","b"]}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["text"], "said \"great\"\nthen \\ left");
        assert_eq!(parsed["price"], 89.99);
    }
}
