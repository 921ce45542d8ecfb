//! The batch pipeline on the in-memory store: replays after a crash are
//! republished with the same session and never counted twice.

use funnel_bus::{OwnedMessage, Topics};
use funnel_core::pb;
use funnel_store::{FeatureReader, Keys, MemoryStore, Store};
use ingest::config::IngestSettings;
use ingest::metrics::Metrics;
use ingest::pipeline::Processor;
use prost::Message as _;
use rdkafka::Timestamp;

const T: i64 = 1_764_000_000_000;

fn message(offset: i64, json: serde_json::Value) -> OwnedMessage {
    OwnedMessage::new(
        Some(json.to_string().into_bytes()),
        json["user_id"].as_str().map(|u| u.as_bytes().to_vec()),
        "raw".into(),
        Timestamp::NotAvailable,
        0,
        offset,
        None,
    )
}

fn processor(store: &Store) -> Processor {
    let mut registry = prometheus_client::registry::Registry::default();
    Processor::new(
        Keys::new("p"),
        IngestSettings::default(),
        Topics::default(),
        store.clone(),
        Metrics::new(&mut registry),
    )
}

fn batch() -> Vec<OwnedMessage> {
    vec![
        message(
            0,
            serde_json::json!({"event_id": "a", "type": "search", "ts": T, "user_id": "u", "query": "shoes"}),
        ),
        message(
            1,
            serde_json::json!({"event_id": "b", "type": "click", "ts": T + 1000, "user_id": "u", "item_id": "i1"}),
        ),
        message(
            2,
            serde_json::json!({"event_id": "a", "type": "search", "ts": T + 2000, "user_id": "u", "query": "shoes"}),
        ),
        message(
            3,
            serde_json::json!({"event_id": "c", "type": "click", "ts": T + 40 * 60_000, "user_id": "u", "item_id": "i2"}),
        ),
    ]
}

fn canonical(out: &ingest::pipeline::BatchOutput) -> Vec<pb::Event> {
    out.records
        .iter()
        .filter(|r| r.topic == Topics::default().events)
        .map(|r| pb::Event::decode(r.payload.as_slice()).unwrap())
        .collect()
}

#[tokio::test]
async fn a_replayed_batch_is_republished_identically_and_counted_once() {
    let store = Store::Memory(MemoryStore::new(10_000));
    let now = T + 3_600_000;
    let first = processor(&store).process(&batch(), now).await.unwrap();
    assert_eq!(
        (first.fresh, first.duplicates, first.replays, first.rejected),
        (3, 1, 0, 0)
    );
    let events = canonical(&first);
    assert_eq!(
        events
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert_eq!(events[0].session_id, events[1].session_id);
    assert_ne!(
        events[1].session_id, events[2].session_id,
        "40 minutes of inactivity opens a session"
    );

    // A new process (empty item cache) after a crash sees the same messages.
    let again = processor(&store)
        .process(&batch(), now + 5_000)
        .await
        .unwrap();
    assert_eq!((again.fresh, again.duplicates, again.replays), (0, 1, 3));
    let replayed = canonical(&again);
    for (a, b) in events.iter().zip(&replayed) {
        assert_eq!((&a.event_id, &a.session_id), (&b.event_id, &b.session_id));
    }

    let user = FeatureReader::new(store.clone(), Keys::new("p"))
        .user("u")
        .await
        .unwrap();
    assert_eq!(user.counts["search"], 1);
    assert_eq!(user.counts["click"], 2);
    assert_eq!(user.session.unwrap().session_id, events[2].session_id);
}

#[tokio::test]
async fn the_same_event_id_at_another_offset_is_a_duplicate_not_a_replay() {
    let store = Store::Memory(MemoryStore::new(10_000));
    let mut p = processor(&store);
    let now = T + 60_000;
    p.process(&batch()[..2], now).await.unwrap();
    let resent = message(
        9,
        serde_json::json!({"event_id": "b", "type": "click", "ts": T + 5000, "user_id": "u", "item_id": "i9"}),
    );
    let out = p.process(&[resent], now).await.unwrap();
    assert_eq!((out.fresh, out.duplicates, out.replays), (0, 1, 0));
    assert!(out.records.is_empty(), "a duplicate publishes nothing");
}
