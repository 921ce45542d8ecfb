//! Parsing and validating raw JSON events, one thread, on a mix shaped like
//! `funnel simulate`'s traffic (per 100 events: 42 impressions of 13 items, 24
//! searches, 19 clicks, 12 catalog records, 2 add-to-carts, 1 order).
//!
//! `cargo bench -p funnel-core --bench parse [-- EVENTS]`: with a count, parses
//! exactly that many events (deterministic work, e.g. for `valgrind --tool=callgrind`)
//! instead of measuring for two seconds.

use std::hint::black_box;
use std::time::{Duration, Instant};

use funnel_core::{ContentType, Limits, parse_event};

fn mix() -> Vec<Vec<u8>> {
    let ts = 1_795_957_561_872_i64;
    let items = |n: usize, from: usize| -> String {
        (from..from + n)
            .map(|i| format!("\"sku-{i:06}\""))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut events = Vec::new();
    for i in 0..100 {
        let user = format!("u-{:05}", i * 37 % 5000);
        let session = format!("s-{user}-{}", i / 10);
        let head = format!(
            r#""event_id":"e-e529db89-{i}","ts":{ts},"user_id":"{user}","session_id":"{session}""#
        );
        let event = match i % 100 {
            0..42 => format!(
                r#"{{{head},"type":"impression","item_ids":[{}],"list":"search","recomm_id":"r-{i}"}}"#,
                items(13, i * 7)
            ),
            42..66 => format!(r#"{{{head},"type":"search","query":"wireless headphones {i}"}}"#),
            66..85 => format!(
                r#"{{{head},"type":"click","item_id":"sku-{:06}","position":{}}}"#,
                i * 3,
                i % 13
            ),
            85..97 => format!(
                r#"{{"event_id":"e-item-{i}","type":"item","ts":{ts},"item_id":"sku-{i:06}","title":"Kestrel Over-Ear Studio Headphones Pro","category":"electronics/audio/headphones","brand":"Kestrel","price":41.99,"stock":5,"attributes":{{"color":"blue","warranty":"1 year"}}}}"#
            ),
            97..99 => {
                format!(r#"{{{head},"type":"add_to_cart","item_id":"sku-{i:06}","quantity":1}}"#)
            }
            _ => format!(
                r#"{{{head},"type":"order","order_id":"o-{i}","currency":"EUR","lines":[{{"item_id":"sku-000001","quantity":1,"price":41.99}},{{"item_id":"sku-000002","quantity":2,"price":9.5}}]}}"#
            ),
        };
        events.push(event.into_bytes());
    }
    events
}

fn main() {
    let events = mix();
    let limits = Limits::default();
    for e in &events {
        parse_event(e, ContentType::Json, &limits).expect("the mix is valid");
    }
    let count = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok());
    let started = Instant::now();
    let mut parsed = 0usize;
    while count.map_or(started.elapsed() < Duration::from_secs(2), |n| parsed < n) {
        for e in &events {
            black_box(parse_event(black_box(e), ContentType::Json, &limits).ok());
        }
        parsed += events.len();
    }
    let secs = started.elapsed().as_secs_f64();
    let bytes: usize = events.iter().map(Vec::len).sum();
    println!(
        "parse_event (JSON): {parsed} events in {secs:.3} s = {:.0} events/s, {:.2} µs per event, mean payload {} bytes",
        parsed as f64 / secs,
        secs * 1e6 / parsed as f64,
        bytes / events.len()
    );
}
