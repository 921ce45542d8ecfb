//! Raw bytes to a canonical event.
//!
//! Both wire forms go through one validator: a protobuf `RawEvent` is turned
//! into the same JSON object a platform would have sent, so the two cannot
//! drift apart. Validation is total: any byte string yields either an event or
//! a [`Rejection`], never a panic.

use std::borrow::Cow;
use std::collections::HashMap;

use prost::Message;
use serde_json::{Map, Value};

use crate::Millis;
use crate::kind::type_from_name;
use crate::pb::{self, EventType, event::Payload};
use crate::reject::{RejectCode, Rejection};

/// The wire form of a raw message, from its `content-type` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    Json,
    Protobuf,
}

impl ContentType {
    /// Reads the `content-type` header value; absent means JSON.
    pub fn from_header(value: Option<&[u8]>) -> Result<ContentType, Rejection> {
        let Some(raw) = value else {
            return Ok(ContentType::Json);
        };
        let text = String::from_utf8_lossy(raw);
        let mime = text
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "" | "application/json" | "text/json" => Ok(ContentType::Json),
            "application/x-protobuf" | "application/protobuf" => Ok(ContentType::Protobuf),
            other => Err(Rejection::new(
                RejectCode::UnsupportedContentType,
                format!(
                    "content-type `{other}` is not supported (use application/json or application/x-protobuf)"
                ),
            )),
        }
    }
}

/// Size limits of the contract.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_payload_bytes: usize,
    pub max_id_bytes: usize,
    pub max_query_bytes: usize,
    pub max_text_bytes: usize,
    pub max_list_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 1 << 20,
            max_id_bytes: 128,
            max_query_bytes: 512,
            max_text_bytes: 10_000,
            max_list_items: 1_000,
        }
    }
}

/// Fields every event type may carry.
const COMMON: &[&str] = &["event_id", "type", "ts", "user_id", "session_id"];

/// Parses and validates one raw message. The result has no session, source or
/// ingest time yet: those need state and come from the caller.
pub fn parse_event(
    payload: &[u8],
    content_type: ContentType,
    limits: &Limits,
) -> Result<pb::Event, Rejection> {
    if payload.is_empty() {
        return Err(Rejection::new(RejectCode::EmptyPayload, "payload is empty"));
    }
    if payload.len() > limits.max_payload_bytes {
        return Err(Rejection::new(
            RejectCode::PayloadTooLarge,
            format!(
                "payload is {} bytes, more than the limit of {}",
                payload.len(),
                limits.max_payload_bytes
            ),
        ));
    }
    let object = match content_type {
        ContentType::Json => json_object(payload)?,
        ContentType::Protobuf => {
            let raw = pb::RawEvent::decode(payload).map_err(|e| {
                Rejection::new(
                    RejectCode::MalformedProtobuf,
                    format!("not a funnel.events.v1.RawEvent: {e}"),
                )
            })?;
            raw_event_to_json(raw)
        }
    };
    Validator { limits, object }.event()
}

/// Whether a raw message is a catalog (`item`) event, without validating it:
/// a cheap look at `type` so catalog updates can be applied before the user
/// events of the same batch that refer to them.
pub fn is_catalog_event(payload: &[u8], content_type: ContentType) -> bool {
    #[derive(serde::Deserialize)]
    struct TypeOnly<'a> {
        #[serde(borrow, rename = "type")]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    match content_type {
        ContentType::Json => serde_json::from_slice::<TypeOnly>(payload)
            .is_ok_and(|t| t.kind.as_deref() == Some("item")),
        ContentType::Protobuf => pb::RawEvent::decode(payload).is_ok_and(|r| r.r#type == "item"),
    }
}

/// A raw event's top-level fields, in the order sent. Names are borrowed from
/// the payload where it has no escapes, and a list is searched instead of a map
/// built: an event has a dozen fields, and the validator reads each once. As in
/// a map, the last of repeated names counts.
#[derive(Debug, Default)]
struct Fields<'a>(Vec<(Cow<'a, str>, Value)>);

impl<'a> Fields<'a> {
    fn insert(&mut self, name: impl Into<Cow<'a, str>>, value: Value) {
        self.0.push((name.into(), value));
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn remove(&mut self, name: &str) -> Option<Value> {
        let i = self.0.iter().rposition(|(n, _)| n == name)?;
        // Left in place as null: earlier repeats of the name stay shadowed.
        Some(std::mem::take(&mut self.0[i].1))
    }
}

impl<'de> serde::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Object;
        impl<'de> serde::de::Visitor<'de> for Object {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Fields<'de>, A::Error> {
                let mut fields = Fields(Vec::with_capacity(16));
                while let Some(Name(name)) = map.next_key()? {
                    fields.0.push((name, map.next_value()?));
                }
                Ok(fields)
            }
        }
        d.deserialize_map(Object)
    }
}

/// A field name, borrowed when the payload spells it without escapes.
#[derive(serde::Deserialize)]
#[serde(transparent)]
struct Name<'a>(#[serde(borrow)] Cow<'a, str>);

fn json_object(payload: &[u8]) -> Result<Fields<'_>, Rejection> {
    if let Ok(fields) = serde_json::from_slice::<Fields>(payload) {
        return Ok(fields);
    }
    // Only a rejected payload is parsed again, to say what it is.
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(_)) => Err(Rejection::new(
            RejectCode::MalformedJson,
            "malformed JSON object",
        )),
        Ok(other) => Err(Rejection::new(
            RejectCode::MalformedJson,
            format!("expected a JSON object, got {}", json_kind(&other)),
        )),
        Err(e) => Err(Rejection::new(
            RejectCode::MalformedJson,
            format!("malformed JSON: {e}"),
        )),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The JSON object a platform would have sent for this protobuf event. Proto3
/// cannot tell an empty string from an absent one, so empty means absent.
fn raw_event_to_json(raw: pb::RawEvent) -> Fields<'static> {
    let mut m = Fields::default();
    let put_str = |m: &mut Fields, k: &'static str, v: String| {
        if !v.is_empty() {
            m.insert(k, Value::String(v));
        }
    };
    put_str(&mut m, "event_id", raw.event_id);
    put_str(&mut m, "type", raw.r#type);
    match raw.time {
        Some(pb::raw_event::Time::Ts(s)) => {
            m.insert("ts", Value::String(s));
        }
        Some(pb::raw_event::Time::TsMs(ms)) => {
            m.insert("ts", Value::from(ms));
        }
        None => {}
    }
    put_str(&mut m, "user_id", raw.user_id);
    put_str(&mut m, "session_id", raw.session_id);
    put_str(&mut m, "query", raw.query);
    if !raw.results.is_empty() {
        m.insert("results", Value::from(raw.results));
    }
    if !raw.item_ids.is_empty() {
        m.insert("item_ids", Value::from(raw.item_ids));
    }
    put_str(&mut m, "recomm_id", raw.recomm_id);
    put_str(&mut m, "list", raw.list);
    put_str(&mut m, "item_id", raw.item_id);
    if let Some(p) = raw.position {
        m.insert("position", Value::from(p));
    }
    if let Some(q) = raw.quantity {
        m.insert("quantity", Value::from(q));
    }
    put_str(&mut m, "order_id", raw.order_id);
    if !raw.lines.is_empty() {
        let lines = raw
            .lines
            .into_iter()
            .map(|l| {
                serde_json::json!({"item_id": l.item_id, "quantity": l.quantity, "price": l.price})
            })
            .collect::<Vec<_>>();
        m.insert("lines", Value::Array(lines));
    }
    put_str(&mut m, "currency", raw.currency);
    if let Some(r) = raw.rating {
        m.insert("rating", Value::from(r));
    }
    put_str(&mut m, "text", raw.text);
    put_str(&mut m, "reason", raw.reason);
    put_str(&mut m, "channel", raw.channel);
    put_str(&mut m, "title", raw.title);
    put_str(&mut m, "category", raw.category);
    put_str(&mut m, "brand", raw.brand);
    if let Some(p) = raw.price {
        m.insert(
            "price",
            serde_json::Number::from_f64(p).map_or(Value::Null, Value::Number),
        );
    }
    if let Some(s) = raw.stock {
        m.insert("stock", Value::from(s));
    }
    if !raw.attributes.is_empty() {
        let attrs = raw
            .attributes
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect::<Map<_, _>>();
        m.insert("attributes", Value::Object(attrs));
    }
    m
}

/// Parses a timestamp: an integer of epoch milliseconds or an RFC 3339 string.
pub fn parse_timestamp(value: &Value) -> Result<Millis, Rejection> {
    // 2000-01-01 .. 2200-01-01: anything else is a unit mistake (seconds, micros).
    const MIN_MS: i64 = 946_684_800_000;
    const MAX_MS: i64 = 7_258_118_400_000;
    let ms = match value {
        Value::Number(n) => n.as_i64().ok_or_else(|| {
            Rejection::new(
                RejectCode::BadTimestamp,
                format!("`ts` must be integer epoch milliseconds, got {n}"),
            )
        })?,
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s.trim())
            .map_err(|e| {
                Rejection::new(
                    RejectCode::BadTimestamp,
                    format!("`ts` is not RFC 3339 ({e}): {:?}", truncate(s, 64)),
                )
            })?
            .timestamp_millis(),
        other => {
            return Err(Rejection::new(
                RejectCode::BadTimestamp,
                format!(
                    "`ts` must be RFC 3339 or epoch milliseconds, got {}",
                    json_kind(other)
                ),
            ));
        }
    };
    if !(MIN_MS..MAX_MS).contains(&ms) {
        return Err(Rejection::new(
            RejectCode::BadTimestamp,
            format!("`ts` {ms} is not epoch milliseconds between the years 2000 and 2200"),
        ));
    }
    Ok(ms)
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Lower-cases, trims and collapses whitespace: the form queries are counted by.
pub fn normalize_query(q: &str) -> String {
    q.split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `Electronics / Audio//Headphones ` to `electronics/audio/headphones`.
pub fn normalize_category(c: &str) -> String {
    c.split('/')
        .map(|seg| {
            seg.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        })
        .filter(|seg| !seg.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

struct Validator<'a> {
    limits: &'a Limits,
    object: Fields<'a>,
}

impl Validator<'_> {
    fn event(mut self) -> Result<pb::Event, Rejection> {
        let event_id = self.required_id("event_id")?;
        let type_name = self.required_str("type", 64)?;
        let event_type = type_from_name(&type_name).ok_or_else(|| {
            Rejection::new(
                RejectCode::UnknownType,
                format!("unknown event type {:?}", truncate(&type_name, 64)),
            )
        })?;
        let ts_ms = parse_timestamp(
            self.object
                .get("ts")
                .ok_or_else(|| Rejection::missing("ts"))?,
        )?;
        let user_id = if event_type == EventType::Item {
            self.optional_id("user_id")?.unwrap_or_default()
        } else {
            self.required_id("user_id")?
        };
        let session_id = self.optional_id("session_id")?.unwrap_or_default();

        let (payload, known): (Payload, &[&str]) = match event_type {
            EventType::Search => (self.search()?, &["query", "results"]),
            EventType::Impression => (self.impression()?, &["item_ids", "recomm_id", "list"]),
            EventType::Click => (self.click()?, &["item_id", "position", "recomm_id"]),
            EventType::AddToCart | EventType::RemoveFromCart => {
                (self.cart()?, &["item_id", "quantity"])
            }
            EventType::Order => (self.order()?, &["order_id", "lines", "currency"]),
            EventType::Review => (self.review()?, &["item_id", "order_id", "rating", "text"]),
            EventType::Return => (self.return_()?, &["order_id", "item_id", "reason"]),
            EventType::Ticket => (self.ticket()?, &["order_id", "text", "channel"]),
            EventType::Item => (
                self.item(ts_ms)?,
                &[
                    "item_id",
                    "title",
                    "category",
                    "brand",
                    "price",
                    "stock",
                    "attributes",
                ],
            ),
            EventType::Unspecified => unreachable!("type_from_name never yields Unspecified"),
        };

        let attributes = self
            .object
            .0
            .into_iter()
            .filter(|(k, _)| !COMMON.contains(&k.as_ref()) && !known.contains(&k.as_ref()))
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k.into_owned(), v)
            })
            .collect::<HashMap<_, _>>();

        Ok(pb::Event {
            event_id,
            r#type: event_type as i32,
            ts_ms,
            user_id,
            session_id,
            session_assigned: false,
            ingest_ts_ms: 0,
            attributes,
            source: None,
            payload: Some(payload),
        })
    }

    fn search(&mut self) -> Result<Payload, Rejection> {
        let raw_query = self.required_str("query", self.limits.max_query_bytes)?;
        let query = normalize_query(&raw_query);
        if query.is_empty() {
            return Err(Rejection::new(
                RejectCode::MissingField,
                "field `query` is blank",
            ));
        }
        let results = self.optional_ids("results")?.unwrap_or_default();
        Ok(Payload::Search(pb::Search {
            query,
            raw_query,
            results,
        }))
    }

    fn impression(&mut self) -> Result<Payload, Rejection> {
        let item_ids = self
            .optional_ids("item_ids")?
            .filter(|ids| !ids.is_empty())
            .ok_or_else(|| Rejection::missing("item_ids"))?;
        Ok(Payload::Impression(pb::Impression {
            item_ids,
            recomm_id: self.optional_id("recomm_id")?.unwrap_or_default(),
            list: self.optional_str("list", 64)?.unwrap_or_default(),
        }))
    }

    fn click(&mut self) -> Result<Payload, Rejection> {
        let item_id = self.required_id("item_id")?;
        let position = self.optional_int("position", 0, 100_000)?.unwrap_or(0) as i32;
        Ok(Payload::Click(pb::Click {
            item_id,
            position,
            recomm_id: self.optional_id("recomm_id")?.unwrap_or_default(),
        }))
    }

    fn cart(&mut self) -> Result<Payload, Rejection> {
        Ok(Payload::Cart(pb::CartChange {
            item_id: self.required_id("item_id")?,
            quantity: self.optional_int("quantity", 1, 10_000)?.unwrap_or(1) as i32,
        }))
    }

    fn order(&mut self) -> Result<Payload, Rejection> {
        let order_id = self.required_id("order_id")?;
        let currency = self.required_str("currency", 3)?;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(Rejection::invalid("currency", "a 3-letter ISO 4217 code"));
        }
        let lines = match self.object.remove("lines") {
            None | Some(Value::Null) => return Err(Rejection::missing("lines")),
            Some(Value::Array(lines)) if lines.is_empty() => {
                return Err(Rejection::new(
                    RejectCode::MissingField,
                    "field `lines` is empty: an order needs at least one line",
                ));
            }
            Some(Value::Array(lines)) if lines.len() > self.limits.max_list_items => {
                return Err(Rejection::new(
                    RejectCode::FieldTooLong,
                    format!(
                        "field `lines` has {} entries, more than {}",
                        lines.len(),
                        self.limits.max_list_items
                    ),
                ));
            }
            Some(Value::Array(lines)) => lines,
            Some(_) => return Err(Rejection::invalid("lines", "an array of order lines")),
        };
        let mut parsed = Vec::with_capacity(lines.len());
        for (i, line) in lines.into_iter().enumerate() {
            let Value::Object(mut line) = line else {
                return Err(Rejection::invalid(&format!("lines[{i}]"), "an object"));
            };
            let field = |name: &str| format!("lines[{i}].{name}");
            let item_id = match line.remove("item_id") {
                Some(Value::String(s)) if !s.is_empty() => {
                    check_len(
                        format_args!("lines[{i}].item_id"),
                        &s,
                        self.limits.max_id_bytes,
                    )?;
                    s
                }
                None | Some(Value::Null) => return Err(Rejection::missing(&field("item_id"))),
                Some(Value::String(_)) => return Err(Rejection::missing(&field("item_id"))),
                Some(_) => return Err(Rejection::invalid(&field("item_id"), "a string")),
            };
            let quantity = match line.get("quantity") {
                None | Some(Value::Null) => 1,
                Some(v) => int_in_range(&field("quantity"), v, 1, 10_000)?,
            } as i32;
            let price = match line.get("price") {
                None | Some(Value::Null) => return Err(Rejection::missing(&field("price"))),
                Some(v) => price_value(&field("price"), v)?,
            };
            parsed.push(pb::OrderLine {
                item_id,
                quantity,
                price,
            });
        }
        let total = parsed.iter().map(|l| l.price * l.quantity as f64).sum();
        Ok(Payload::Order(pb::Order {
            order_id,
            lines: parsed,
            currency: currency.to_ascii_uppercase(),
            total,
        }))
    }

    fn review(&mut self) -> Result<Payload, Rejection> {
        let item_id = self.required_id("item_id")?;
        let rating = match self.object.get("rating") {
            None | Some(Value::Null) => return Err(Rejection::missing("rating")),
            Some(v) => int_in_range("rating", v, 1, 5)? as i32,
        };
        Ok(Payload::Review(pb::Review {
            item_id,
            order_id: self.optional_id("order_id")?.unwrap_or_default(),
            rating,
            text: self
                .optional_str("text", self.limits.max_text_bytes)?
                .unwrap_or_default(),
        }))
    }

    fn return_(&mut self) -> Result<Payload, Rejection> {
        Ok(Payload::Return(pb::Return {
            order_id: self.required_id("order_id")?,
            item_id: self.required_id("item_id")?,
            reason: self
                .optional_str("reason", self.limits.max_text_bytes)?
                .unwrap_or_default(),
        }))
    }

    fn ticket(&mut self) -> Result<Payload, Rejection> {
        Ok(Payload::Ticket(pb::Ticket {
            order_id: self.optional_id("order_id")?.unwrap_or_default(),
            text: self.required_str("text", self.limits.max_text_bytes)?,
            channel: self.optional_str("channel", 64)?.unwrap_or_default(),
        }))
    }

    fn item(&mut self, ts_ms: Millis) -> Result<Payload, Rejection> {
        let item_id = self.required_id("item_id")?;
        let title = self.required_str("title", 512)?;
        let category = normalize_category(&self.required_str("category", 512)?);
        if category.is_empty() {
            return Err(Rejection::new(
                RejectCode::MissingField,
                "field `category` has no path segment",
            ));
        }
        let brand = self.optional_str("brand", 256)?.unwrap_or_default();
        let price = match self.object.get("price") {
            None | Some(Value::Null) => return Err(Rejection::missing("price")),
            Some(v) => price_value("price", v)?,
        };
        let stock = self.optional_int("stock", 0, i64::MAX)?.unwrap_or(0);
        let attributes = match self.object.remove("attributes") {
            None | Some(Value::Null) => HashMap::new(),
            Some(Value::Object(map)) => map
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect(),
            Some(_) => return Err(Rejection::invalid("attributes", "an object of strings")),
        };
        Ok(Payload::Item(pb::Item {
            item_id,
            title,
            category,
            brand,
            price,
            stock,
            attributes,
            updated_ts_ms: ts_ms,
        }))
    }

    /// Takes the string out of the object (each field is read once), so it is moved,
    /// not copied.
    fn optional_str(&mut self, field: &str, max: usize) -> Result<Option<String>, Rejection> {
        match self.object.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => {
                check_len(field, &s, max)?;
                Ok(Some(s))
            }
            Some(_) => Err(Rejection::invalid(field, "a string")),
        }
    }

    fn required_str(&mut self, field: &str, max: usize) -> Result<String, Rejection> {
        self.optional_str(field, max)?
            .ok_or_else(|| Rejection::missing(field))
    }

    fn optional_id(&mut self, field: &str) -> Result<Option<String>, Rejection> {
        self.optional_str(field, self.limits.max_id_bytes)
    }

    fn required_id(&mut self, field: &str) -> Result<String, Rejection> {
        self.required_str(field, self.limits.max_id_bytes)
    }

    /// Takes the list out of the object (each list field is read once), so its ids are
    /// moved, not copied.
    fn optional_ids(&mut self, field: &str) -> Result<Option<Vec<String>>, Rejection> {
        let list = match self.object.remove(field) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Array(list)) => list,
            Some(_) => return Err(Rejection::invalid(field, "an array of ids")),
        };
        if list.len() > self.limits.max_list_items {
            return Err(Rejection::new(
                RejectCode::FieldTooLong,
                format!(
                    "field `{field}` has {} entries, more than {}",
                    list.len(),
                    self.limits.max_list_items
                ),
            ));
        }
        list.into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) if !s.is_empty() => {
                    check_len(format_args!("{field}[{i}]"), &s, self.limits.max_id_bytes)?;
                    Ok(s)
                }
                _ => Err(Rejection::invalid(
                    &format!("{field}[{i}]"),
                    "a non-empty string",
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn optional_int(&self, field: &str, min: i64, max: i64) -> Result<Option<i64>, Rejection> {
        match self.object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => int_in_range(field, v, min, max).map(Some),
        }
    }
}

/// `field` is only formatted when `s` is too long: list entries name themselves
/// with `format_args!`, which costs nothing on the common path.
fn check_len(field: impl std::fmt::Display, s: &str, max: usize) -> Result<(), Rejection> {
    if s.len() > max {
        return Err(Rejection::new(
            RejectCode::FieldTooLong,
            format!(
                "field `{field}` is {} bytes, more than the limit of {max}",
                s.len()
            ),
        ));
    }
    Ok(())
}

fn int_in_range(field: &str, v: &Value, min: i64, max: i64) -> Result<i64, Rejection> {
    let Value::Number(n) = v else {
        return Err(Rejection::invalid(field, "an integer"));
    };
    let i = match (n.as_i64(), n.as_f64()) {
        (Some(i), _) => i,
        (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => f as i64,
        _ => return Err(Rejection::invalid(field, "an integer")),
    };
    if i < min || i > max {
        let bound = if max == i64::MAX {
            format!("at least {min}")
        } else {
            format!("between {min} and {max}")
        };
        return Err(Rejection::new(
            RejectCode::OutOfRange,
            format!("field `{field}` is {i}, must be {bound}"),
        ));
    }
    Ok(i)
}

fn price_value(field: &str, v: &Value) -> Result<f64, Rejection> {
    let Some(price) = v.as_f64() else {
        return Err(Rejection::invalid(field, "a number"));
    };
    if !price.is_finite() {
        return Err(Rejection::invalid(field, "a finite number"));
    }
    if price < 0.0 {
        return Err(Rejection::new(
            RejectCode::OutOfRange,
            format!("field `{field}` is negative ({price})"),
        ));
    }
    Ok(price)
}

#[cfg(test)]
mod tests;
