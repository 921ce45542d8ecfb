use prost::Message;
use serde_json::json;

use super::*;

fn parse_json(v: serde_json::Value) -> Result<pb::Event, Rejection> {
    parse_event(
        v.to_string().as_bytes(),
        ContentType::Json,
        &Limits::default(),
    )
}

fn rejected(v: serde_json::Value) -> Rejection {
    parse_json(v).expect_err("expected a rejection")
}

const TS: i64 = 1_764_000_000_000;

#[test]
fn a_click_is_parsed_with_its_fields_and_unknown_fields_become_attributes() {
    let e = parse_json(json!({
        "event_id": "e1", "type": "click", "ts": TS, "user_id": "u1",
        "item_id": "i9", "position": 3, "recomm_id": "r1",
        "page": "home", "ab": {"x": 1}
    }))
    .unwrap();
    assert_eq!(e.event_id, "e1");
    assert_eq!(e.r#type, EventType::Click as i32);
    assert_eq!(e.ts_ms, TS);
    assert_eq!(e.user_id, "u1");
    assert_eq!(
        e.payload,
        Some(Payload::Click(pb::Click {
            item_id: "i9".into(),
            position: 3,
            recomm_id: "r1".into()
        }))
    );
    assert_eq!(e.attributes.get("page").map(String::as_str), Some("home"));
    assert_eq!(
        e.attributes.get("ab").map(String::as_str),
        Some(r#"{"x":1}"#)
    );
    assert_eq!(e.attributes.len(), 2);
}

#[test]
fn rfc3339_and_epoch_millis_timestamps_agree() {
    let a = parse_json(json!({"event_id": "e", "type": "search", "ts": "2025-11-24T16:00:00Z", "user_id": "u", "query": "q"})).unwrap();
    let b = parse_json(json!({"event_id": "e", "type": "search", "ts": 1_764_000_000_000_i64, "user_id": "u", "query": "q"})).unwrap();
    assert_eq!(a.ts_ms, b.ts_ms);
    let c = parse_json(json!({"event_id": "e", "type": "search", "ts": "2025-11-24T17:00:00+01:00", "user_id": "u", "query": "q"})).unwrap();
    assert_eq!(c.ts_ms, 1_764_000_000_000);
}

#[test]
fn every_type_parses_from_a_minimal_valid_event() {
    let cases = [
        json!({"type": "search", "query": "  Red   SHOES ", "results": ["a", "b"]}),
        json!({"type": "impression", "item_ids": ["a", "b"], "list": "home"}),
        json!({"type": "click", "item_id": "a"}),
        json!({"type": "add_to_cart", "item_id": "a"}),
        json!({"type": "remove_from_cart", "item_id": "a", "quantity": 2}),
        json!({"type": "order", "order_id": "o1", "currency": "eur", "lines": [{"item_id": "a", "quantity": 2, "price": 10.5}, {"item_id": "b", "price": 1.0}]}),
        json!({"type": "review", "item_id": "a", "rating": 4, "text": "good"}),
        json!({"type": "return", "order_id": "o1", "item_id": "a", "reason": "too small"}),
        json!({"type": "ticket", "text": "where is my parcel", "channel": "chat"}),
        json!({"type": "item", "item_id": "a", "title": "Red Shoe", "category": "Fashion/ Shoes //Sneakers", "brand": "Acme", "price": 59.9, "stock": 3, "attributes": {"color": "red", "size": 42}}),
    ];
    for (i, mut case) in cases.into_iter().enumerate() {
        let obj = case.as_object_mut().unwrap();
        obj.insert("event_id".into(), json!(format!("e{i}")));
        obj.insert("ts".into(), json!(TS));
        if obj["type"] != "item" {
            obj.insert("user_id".into(), json!("u1"));
        }
        let t = obj["type"].as_str().unwrap().to_string();
        let e = parse_json(case).unwrap_or_else(|r| panic!("{t}: {r}"));
        assert_eq!(crate::type_name(EventType::try_from(e.r#type).unwrap()), t);
        assert!(e.attributes.is_empty(), "{t}: {:?}", e.attributes);
        match e.payload.unwrap() {
            Payload::Search(s) => {
                assert_eq!(s.query, "red shoes");
                assert_eq!(s.raw_query, "  Red   SHOES ");
                assert_eq!(s.results, ["a", "b"]);
            }
            Payload::Cart(c) if t == "add_to_cart" => assert_eq!(c.quantity, 1),
            Payload::Cart(c) => assert_eq!(c.quantity, 2),
            Payload::Order(o) => {
                assert_eq!(o.currency, "EUR");
                assert_eq!(o.lines[1].quantity, 1);
                assert!((o.total - 22.0).abs() < 1e-9);
            }
            Payload::Item(item) => {
                assert_eq!(item.category, "fashion/shoes/sneakers");
                assert_eq!(item.attributes["size"], "42");
                assert_eq!(item.updated_ts_ms, TS);
                assert_eq!(e.user_id, "");
            }
            _ => {}
        }
    }
}

#[test]
fn each_kind_of_bad_input_has_its_code_and_a_precise_reason() {
    let base = |extra: serde_json::Value| {
        let mut v =
            json!({"event_id": "e1", "type": "click", "ts": TS, "user_id": "u1", "item_id": "i1"});
        for (k, val) in extra.as_object().unwrap() {
            if val.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = val.clone();
            }
        }
        v
    };
    let cases: Vec<(serde_json::Value, RejectCode, &str)> = vec![
        (
            base(json!({"event_id": null})),
            RejectCode::MissingField,
            "`event_id`",
        ),
        (
            base(json!({"event_id": "x".repeat(129)})),
            RejectCode::FieldTooLong,
            "`event_id` is 129 bytes",
        ),
        (
            base(json!({"event_id": 7})),
            RejectCode::InvalidField,
            "`event_id` must be a string",
        ),
        (
            base(json!({"type": "purchase"})),
            RejectCode::UnknownType,
            "\"purchase\"",
        ),
        (
            base(json!({"ts": "yesterday"})),
            RejectCode::BadTimestamp,
            "RFC 3339",
        ),
        (
            base(json!({"ts": 1_764_000_000})),
            RejectCode::BadTimestamp,
            "between the years",
        ),
        (base(json!({"ts": null})), RejectCode::MissingField, "`ts`"),
        (
            base(json!({"user_id": null})),
            RejectCode::MissingField,
            "`user_id`",
        ),
        (
            base(json!({"item_id": null})),
            RejectCode::MissingField,
            "`item_id`",
        ),
        (
            base(json!({"position": -1})),
            RejectCode::OutOfRange,
            "`position` is -1",
        ),
        (
            json!({"event_id": "e", "type": "review", "ts": TS, "user_id": "u", "item_id": "i", "rating": 7}),
            RejectCode::OutOfRange,
            "`rating` is 7, must be between 1 and 5",
        ),
        (
            json!({"event_id": "e", "type": "item", "ts": TS, "item_id": "i", "title": "t", "category": "c", "price": -3.5}),
            RejectCode::OutOfRange,
            "`price` is negative",
        ),
        (
            json!({"event_id": "e", "type": "order", "ts": TS, "user_id": "u", "order_id": "o", "currency": "EUR", "lines": [{"item_id": "i", "price": -1}]}),
            RejectCode::OutOfRange,
            "`lines[0].price` is negative",
        ),
        (
            json!({"event_id": "e", "type": "order", "ts": TS, "user_id": "u", "order_id": "o", "currency": "EUR", "lines": []}),
            RejectCode::MissingField,
            "`lines` is empty",
        ),
        (
            json!({"event_id": "e", "type": "order", "ts": TS, "user_id": "u", "order_id": "o", "currency": "euro", "lines": [{"item_id": "i", "price": 1}]}),
            RejectCode::FieldTooLong,
            "`currency`",
        ),
        (
            json!({"event_id": "e", "type": "search", "ts": TS, "user_id": "u", "query": "q".repeat(513)}),
            RejectCode::FieldTooLong,
            "`query` is 513 bytes",
        ),
        (
            json!({"event_id": "e", "type": "search", "ts": TS, "user_id": "u", "query": "   "}),
            RejectCode::MissingField,
            "`query` is blank",
        ),
        (
            json!({"event_id": "e", "type": "impression", "ts": TS, "user_id": "u", "item_ids": ["a", 3]}),
            RejectCode::InvalidField,
            "`item_ids[1]`",
        ),
        (
            json!({"event_id": "e", "type": "impression", "ts": TS, "user_id": "u", "item_ids": ["a", "b", "i".repeat(129)]}),
            RejectCode::FieldTooLong,
            "field `item_ids[2]` is 129 bytes",
        ),
        (
            json!({"event_id": "e", "type": "order", "ts": TS, "user_id": "u", "order_id": "o", "currency": "EUR", "lines": [{"item_id": "i", "price": 1}, {"item_id": "i".repeat(129), "price": 1}]}),
            RejectCode::FieldTooLong,
            "field `lines[1].item_id` is 129 bytes",
        ),
        (
            json!({"event_id": "e", "type": "add_to_cart", "ts": TS, "user_id": "u", "item_id": "i", "quantity": 0}),
            RejectCode::OutOfRange,
            "`quantity` is 0",
        ),
        (
            json!([1, 2]),
            RejectCode::MalformedJson,
            "expected a JSON object, got an array",
        ),
    ];
    for (input, code, needle) in cases {
        let r = rejected(input.clone());
        assert_eq!(r.code, code, "{input}: {r}");
        assert!(
            r.reason.contains(needle),
            "{input}: reason {:?} lacks {needle:?}",
            r.reason
        );
    }
}

#[test]
fn malformed_bytes_are_rejected_not_panicked_on() {
    let limits = Limits::default();
    let r = parse_event(b"{\"event_id\": ", ContentType::Json, &limits).unwrap_err();
    assert_eq!(r.code, RejectCode::MalformedJson);
    let r = parse_event(b"", ContentType::Json, &limits).unwrap_err();
    assert_eq!(r.code, RejectCode::EmptyPayload);
    let r = parse_event(&[0xff, 0xfe, 0x00], ContentType::Json, &limits).unwrap_err();
    assert_eq!(r.code, RejectCode::MalformedJson);
    let r = parse_event(&[0xff, 0xff, 0xff, 0xff], ContentType::Protobuf, &limits).unwrap_err();
    assert_eq!(r.code, RejectCode::MalformedProtobuf);
    let big = vec![b' '; limits.max_payload_bytes + 1];
    assert_eq!(
        parse_event(&big, ContentType::Json, &limits)
            .unwrap_err()
            .code,
        RejectCode::PayloadTooLarge
    );
    // A cheap deterministic fuzz: every prefix and every byte flip of a valid event.
    let valid = json!({"event_id": "e1", "type": "order", "ts": TS, "user_id": "u1", "order_id": "o", "currency": "EUR", "lines": [{"item_id": "i", "quantity": 1, "price": 2.5}]}).to_string().into_bytes();
    for end in 0..valid.len() {
        let _ = parse_event(&valid[..end], ContentType::Json, &limits);
        let _ = parse_event(&valid[..end], ContentType::Protobuf, &limits);
    }
    for i in 0..valid.len() {
        let mut flipped = valid.clone();
        flipped[i] ^= 0x5a;
        let _ = parse_event(&flipped, ContentType::Json, &limits);
        let _ = parse_event(&flipped, ContentType::Protobuf, &limits);
    }
}

#[test]
fn protobuf_raw_events_go_through_the_same_rules() {
    let raw = pb::RawEvent {
        event_id: "p1".into(),
        r#type: "order".into(),
        time: Some(pb::raw_event::Time::Ts("2025-11-24T16:00:00Z".into())),
        user_id: "u1".into(),
        order_id: "o1".into(),
        currency: "usd".into(),
        lines: vec![pb::OrderLine {
            item_id: "i1".into(),
            quantity: 3,
            price: 2.0,
        }],
        ..Default::default()
    };
    let e = parse_event(
        &raw.encode_to_vec(),
        ContentType::Protobuf,
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(e.ts_ms, TS);
    let Some(Payload::Order(order)) = e.payload else {
        panic!("not an order")
    };
    assert_eq!(order.currency, "USD");
    assert_eq!(order.total, 6.0);

    let bad = pb::RawEvent {
        event_id: "p2".into(),
        r#type: "review".into(),
        time: Some(pb::raw_event::Time::TsMs(TS)),
        user_id: "u1".into(),
        item_id: "i1".into(),
        rating: Some(9),
        ..Default::default()
    };
    let r = parse_event(
        &bad.encode_to_vec(),
        ContentType::Protobuf,
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(r.code, RejectCode::OutOfRange);
}

#[test]
fn content_type_header_selects_the_wire_form() {
    assert_eq!(ContentType::from_header(None), Ok(ContentType::Json));
    assert_eq!(
        ContentType::from_header(Some(b"application/x-protobuf")),
        Ok(ContentType::Protobuf)
    );
    assert_eq!(
        ContentType::from_header(Some(b"application/json; charset=utf-8")),
        Ok(ContentType::Json)
    );
    assert_eq!(
        ContentType::from_header(Some(b"text/csv"))
            .unwrap_err()
            .code,
        RejectCode::UnsupportedContentType
    );
}

#[test]
fn catalog_events_are_recognised_without_full_validation() {
    let item = json!({"type": "item", "event_id": "x"}).to_string();
    let click = json!({"type": "click", "item_id": "i"}).to_string();
    assert!(is_catalog_event(item.as_bytes(), ContentType::Json));
    assert!(!is_catalog_event(click.as_bytes(), ContentType::Json));
    assert!(!is_catalog_event(b"{not json", ContentType::Json));
    let raw = pb::RawEvent {
        r#type: "item".into(),
        ..Default::default()
    };
    assert!(is_catalog_event(
        &raw.encode_to_vec(),
        ContentType::Protobuf
    ));
}

#[test]
fn a_repeated_field_counts_once_as_its_last_value_and_escaped_names_are_read() {
    let raw = format!(
        r#"{{"event_id":"e1","type":"click","ts":{TS},"\u0075ser_id":"u1","item_id":"a","item_id":"b","page":"1","page":"2","item_id":"c"}}"#
    );
    let e = parse_event(raw.as_bytes(), ContentType::Json, &Limits::default()).unwrap();
    assert_eq!(e.user_id, "u1");
    assert_eq!(
        e.payload,
        Some(Payload::Click(pb::Click {
            item_id: "c".into(),
            ..Default::default()
        }))
    );
    assert_eq!(e.attributes.len(), 1, "{:?}", e.attributes);
    assert_eq!(e.attributes.get("page").map(String::as_str), Some("2"));

    // A null last value hides the earlier ones, as in a map.
    let raw = format!(
        r#"{{"event_id":"e1","type":"click","ts":{TS},"user_id":"u1","item_id":"a","item_id":null}}"#
    );
    let r = parse_event(raw.as_bytes(), ContentType::Json, &Limits::default()).unwrap_err();
    assert_eq!(r.code, RejectCode::MissingField);
}
