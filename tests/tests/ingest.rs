//! ingest against a real broker (Tansu) and a real Redis.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use funnel_bus::headers::{DLQ_ERROR_CODE, DLQ_ERROR_REASON, DLQ_SOURCE_OFFSET, DLQ_SOURCE_TOPIC};
use funnel_core::pb::{self, event::Payload};
use funnel_proto::pb::ingest::v1::features_client::FeaturesClient;
use funnel_proto::pb::ingest::v1::{GetItemFeaturesRequest, GetUserFeaturesRequest};
use funnel_tests::{Env, eventually, header};
use prost::Message as _;
use rdkafka::Message;
use redis::AsyncCommands;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn now() -> i64 {
    funnel_core::now_ms()
}

fn catalog(ts: i64) -> Vec<serde_json::Value> {
    vec![
        json!({"event_id": "cat-i1", "type": "item", "ts": ts, "item_id": "i1", "title": "Sonora Wireless Headphones",
               "category": "Electronics/Audio/Headphones", "brand": "Sonora", "price": 100.0, "stock": 5}),
        json!({"event_id": "cat-i2", "type": "item", "ts": ts, "item_id": "i2", "title": "Boomy Speaker",
               "category": "electronics/audio/speakers", "brand": "Boomy", "price": 50.0, "stock": 0,
               "attributes": {"color": "black"}}),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_event_of_every_type_reaches_the_canonical_topic_with_the_right_key() {
    let env = Env::start(2).await;
    let ingest = env.start_ingest(env.ingest_config()).await;
    let events = env.reader(&env.topics.events);
    let catalog_topic = env.reader(&env.topics.catalog);
    let p = env.producer();
    let t = now() - 60_000;
    let raw = [
        json!({"event_id": "e-item", "type": "item", "ts": t, "item_id": "i1", "title": "T", "category": "a/b", "brand": "B", "price": 9.5, "stock": 3}),
        json!({"event_id": "e-search", "type": "search", "ts": t + 1, "user_id": "u1", "query": "Red  Shoes", "results": ["i1"]}),
        json!({"event_id": "e-imp", "type": "impression", "ts": t + 2, "user_id": "u1", "item_ids": ["i1", "i2"], "list": "search"}),
        json!({"event_id": "e-click", "type": "click", "ts": t + 3, "user_id": "u1", "item_id": "i1", "position": 1, "referrer": "ad"}),
        json!({"event_id": "e-add", "type": "add_to_cart", "ts": t + 4, "user_id": "u1", "item_id": "i1"}),
        json!({"event_id": "e-rm", "type": "remove_from_cart", "ts": t + 5, "user_id": "u2", "item_id": "i1", "quantity": 1}),
        json!({"event_id": "e-order", "type": "order", "ts": t + 6, "user_id": "u1", "order_id": "o1", "currency": "EUR", "lines": [{"item_id": "i1", "quantity": 1, "price": 9.5}]}),
        json!({"event_id": "e-review", "type": "review", "ts": t + 7, "user_id": "u1", "item_id": "i1", "order_id": "o1", "rating": 5, "text": "great"}),
        json!({"event_id": "e-return", "type": "return", "ts": t + 8, "user_id": "u1", "order_id": "o1", "item_id": "i1", "reason": "too big"}),
        json!({"event_id": "e-ticket", "type": "ticket", "ts": t + 9, "user_id": "u3", "text": "where is my parcel", "channel": "chat"}),
    ];
    for e in &raw {
        p.send_json(e).await;
    }
    let proto = pb::RawEvent {
        event_id: "e-proto".into(),
        r#type: "click".into(),
        time: Some(pb::raw_event::Time::TsMs(t + 10)),
        user_id: "u2".into(),
        item_id: "i1".into(),
        ..Default::default()
    };
    p.send("u2", &proto.encode_to_vec(), Some("application/x-protobuf"))
        .await;
    let traced = json!({"event_id": "e-traced", "type": "click", "ts": t + 11, "user_id": "u4", "item_id": "i1"});
    p.send_with_headers(
        "u4",
        traced.to_string().as_bytes(),
        &[("traceparent", TRACEPARENT)],
    )
    .await;

    let got = events.wait_for(raw.len() + 2, WAIT).await;
    let traced = got
        .iter()
        .find(|m| m.key() == Some(&b"u4"[..]))
        .expect("the traced event");
    assert_eq!(
        header(traced, "traceparent").as_deref(),
        Some(TRACEPARENT),
        "trace context carried to the next hop"
    );
    for m in &got {
        let e = pb::Event::decode(m.payload().unwrap()).unwrap();
        let kind = funnel_core::type_name(pb::EventType::try_from(e.r#type).unwrap());
        assert_eq!(
            header(m, "content-type").as_deref(),
            Some("application/x-protobuf")
        );
        assert_eq!(header(m, "funnel-event-type").as_deref(), Some(kind));
    }
    let by_id: HashMap<String, (Vec<u8>, pb::Event)> = got
        .iter()
        .map(|m| {
            let e = pb::Event::decode(m.payload().unwrap()).unwrap();
            (e.event_id.clone(), (m.key().unwrap().to_vec(), e))
        })
        .collect();
    assert_eq!(by_id.len(), raw.len() + 2, "every event exactly once");
    for e in &raw {
        let id = e["event_id"].as_str().unwrap();
        let (key, event) = &by_id[id];
        let expected_key = e["user_id"].as_str().or(e["item_id"].as_str()).unwrap();
        assert_eq!(std::str::from_utf8(key).unwrap(), expected_key, "{id}");
        assert_eq!(
            funnel_core::type_name(pb::EventType::try_from(event.r#type).unwrap()),
            e["type"].as_str().unwrap()
        );
        assert_eq!(event.ts_ms, e["ts"].as_i64().unwrap());
        assert_eq!(event.source.as_ref().unwrap().topic, env.topics.raw);
        if e["type"] != "item" {
            assert!(
                event.session_id.starts_with('s') && event.session_assigned,
                "{id}: {event:?}"
            );
        }
    }
    assert_eq!(by_id["e-click"].1.attributes["referrer"], "ad");
    let Some(Payload::Search(s)) = &by_id["e-search"].1.payload else {
        panic!()
    };
    assert_eq!(s.query, "red shoes");
    assert_eq!(
        by_id["e-search"].1.session_id, by_id["e-order"].1.session_id,
        "u1's events share one assigned session"
    );
    let Some(Payload::Click(c)) = &by_id["e-proto"].1.payload else {
        panic!()
    };
    assert_eq!(c.item_id, "i1");

    let cat = catalog_topic.wait_for(1, WAIT).await;
    assert_eq!(cat[0].key(), Some(&b"i1"[..]));
    let item = pb::Item::decode(cat[0].payload().unwrap()).unwrap();
    assert_eq!(
        (item.category.as_str(), item.price, item.stock),
        ("a/b", 9.5, 3)
    );
    assert_eq!(ingest.metric("ingest_events_out_total").await, 12.0);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_bad_input_reaches_the_dlq_untouched_with_its_reason() {
    let env = Env::start(1).await;
    let ingest = env.start_ingest(env.ingest_config()).await;
    let dlq = env.reader(&env.topics.dlq);
    let events = env.reader(&env.topics.events);
    let p = env.producer();
    let t = now();
    let day = 86_400_000;
    let cases: Vec<(Vec<u8>, Option<&str>, &str, &str)> = vec![
        (b"{\"event_id\": \"x\", ".to_vec(), None, "malformed_json", "malformed JSON"),
        (vec![0xff, 0x00, 0x13], None, "malformed_json", "malformed JSON"),
        (json!({"type": "click", "ts": t, "user_id": "u", "item_id": "i"}).to_string().into_bytes(), None, "missing_field", "`event_id`"),
        (json!({"event_id": "b1", "type": "purchase", "ts": t, "user_id": "u"}).to_string().into_bytes(), None, "unknown_type", "\"purchase\""),
        (json!({"event_id": "b2", "type": "click", "ts": "last tuesday", "user_id": "u", "item_id": "i"}).to_string().into_bytes(), None, "bad_timestamp", "RFC 3339"),
        (json!({"event_id": "b3", "type": "item", "ts": t, "item_id": "i", "title": "t", "category": "c", "price": -1}).to_string().into_bytes(), None, "out_of_range", "`price` is negative"),
        (json!({"event_id": "b4", "type": "review", "ts": t, "user_id": "u", "item_id": "i", "rating": 7}).to_string().into_bytes(), None, "out_of_range", "`rating` is 7"),
        (json!({"event_id": "b5", "type": "search", "ts": t, "user_id": "u", "query": "q".repeat(600)}).to_string().into_bytes(), None, "field_too_long", "`query` is 600 bytes"),
        (json!({"event_id": "b6", "type": "click", "ts": t + day, "user_id": "u", "item_id": "i"}).to_string().into_bytes(), None, "future_event", "in the future"),
        (b"{}".to_vec(), Some("text/csv"), "unsupported_content_type", "text/csv"),
        (vec![0x0a, 0xff, 0xff], Some("application/x-protobuf"), "malformed_protobuf", "RawEvent"),
        // The newest event of user `late` is now; one 25 h older is too late.
        (json!({"event_id": "ok-late", "type": "click", "ts": t, "user_id": "late", "item_id": "i"}).to_string().into_bytes(), None, "", ""),
        (json!({"event_id": "b7", "type": "click", "ts": t - 25 * 3_600_000, "user_id": "late", "item_id": "i"}).to_string().into_bytes(), None, "late_event", "older than the user's newest event"),
    ];
    for (payload, ct, _, _) in &cases {
        p.send("k", payload, *ct).await;
    }
    let expected = cases.iter().filter(|c| !c.2.is_empty()).collect::<Vec<_>>();
    let got = dlq.wait_for(expected.len(), WAIT).await;
    assert_eq!(got.len(), expected.len());
    // Catalog events go first within a batch, so match by payload, not order.
    let mut unmatched = expected.clone();
    for m in &got {
        let i = unmatched
            .iter()
            .position(|c| c.0.as_slice() == m.payload().unwrap())
            .unwrap_or_else(|| panic!("unexpected or altered DLQ payload {:?}", m.payload()));
        let (_, _, code, reason) = unmatched.remove(i);
        assert_eq!(header(m, DLQ_ERROR_CODE).as_deref(), Some(*code));
        let r = header(m, DLQ_ERROR_REASON).unwrap();
        assert!(r.contains(reason), "{code}: reason {r:?} lacks {reason:?}");
        assert_eq!(
            header(m, DLQ_SOURCE_TOPIC).as_deref(),
            Some(env.topics.raw.as_str())
        );
        assert!(header(m, DLQ_SOURCE_OFFSET).unwrap().parse::<i64>().is_ok());
    }
    assert!(unmatched.is_empty());
    let ok = events.wait_for(1, WAIT).await;
    assert_eq!(ok.len(), 1, "only the valid event is canonical");
    eventually(WAIT, || async {
        let n = ingest.metric("ingest_dlq_total").await;
        (n == expected.len() as f64)
            .then_some(())
            .ok_or(format!("dlq metric {n}"))
    })
    .await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_event_id_has_no_effect_on_topics_or_features() {
    let env = Env::start(2).await;
    let ingest = env.start_ingest(env.ingest_config()).await;
    let events = env.reader(&env.topics.events);
    let p = env.producer();
    let t = now() - 10_000;
    let first =
        json!({"event_id": "dup-1", "type": "click", "ts": t, "user_id": "u1", "item_id": "i1"});
    let resent = json!({"event_id": "dup-1", "type": "click", "ts": t + 5, "user_id": "u1", "item_id": "i9"});
    p.send_json(&first).await;
    events.wait_for(1, WAIT).await;
    p.send_json(&resent).await;
    p.send_json(&json!({"event_id": "after", "type": "search", "ts": t + 10, "user_id": "u1", "query": "x"}))
        .await;
    let got = events.wait_for(2, WAIT).await;
    eventually(WAIT, || async {
        let n = ingest.metric("ingest_events_in_total").await;
        (n == 3.0).then_some(()).ok_or(format!("events_in {n}"))
    })
    .await;
    let ids = events
        .events()
        .into_iter()
        .map(|e| e.event_id)
        .collect::<Vec<_>>();
    assert_eq!(ids, ["dup-1", "after"], "{got:?}");
    assert_eq!(ingest.metric("ingest_dedup_hits_total").await, 1.0);
    let mut redis = env.redis.conn().await;
    let clicks: i64 = redis
        .hget(format!("{}:u:u1:n", env.prefix), "click")
        .await
        .unwrap();
    assert_eq!(clicks, 1);
    let recent: Vec<String> = redis
        .lrange(format!("{}:u:u1:recent", env.prefix), 0, -1)
        .await
        .unwrap();
    assert_eq!(recent, ["i1"], "the resent click on i9 changed nothing");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_sequence_of_events_yields_exact_features_all_with_ttls() {
    let env = Env::start(1).await;
    let ingest = env.start_ingest(env.ingest_config()).await;
    let events = env.reader(&env.topics.events);
    let p = env.producer();
    let t = now() - 10 * 60_000;
    let mut seq = catalog(t - 1000);
    seq.extend([
        json!({"event_id": "s1", "type": "search", "ts": t, "user_id": "u1", "query": "Wireless  Headphones"}),
        json!({"event_id": "s2", "type": "click", "ts": t + 1000, "user_id": "u1", "item_id": "i1", "position": 1}),
        json!({"event_id": "s3", "type": "click", "ts": t + 2000, "user_id": "u1", "item_id": "i2"}),
        json!({"event_id": "s4", "type": "add_to_cart", "ts": t + 3000, "user_id": "u1", "item_id": "i1", "quantity": 2}),
        json!({"event_id": "s5", "type": "add_to_cart", "ts": t + 4000, "user_id": "u1", "item_id": "i2"}),
        json!({"event_id": "s6", "type": "remove_from_cart", "ts": t + 5000, "user_id": "u1", "item_id": "i2"}),
        json!({"event_id": "s7", "type": "add_to_cart", "ts": t + 6000, "user_id": "u1", "item_id": "i2", "quantity": 3}),
        json!({"event_id": "s8", "type": "order", "ts": t + 7000, "user_id": "u1", "order_id": "o1", "currency": "EUR",
               "lines": [{"item_id": "i1", "quantity": 2, "price": 100.0}]}),
    ]);
    for e in &seq {
        p.send_json(e).await;
    }
    events.wait_for(seq.len(), WAIT).await;

    let mut client = FeaturesClient::new(ingest.grpc().await);
    let user = client
        .get_user_features(GetUserFeaturesRequest {
            user_id: "u1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(user.found);
    let counts: HashMap<&str, i64> = user.counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        counts,
        HashMap::from([
            ("search", 1),
            ("click", 2),
            ("add_to_cart", 3),
            ("remove_from_cart", 1),
            ("order", 1)
        ])
    );
    assert_eq!((user.orders, user.revenue), (1, 200.0));
    assert_eq!(user.recent_item_ids, ["i2", "i1"]);
    assert_eq!(
        user.recent_categories,
        ["electronics/audio/speakers", "electronics/audio/headphones"]
    );
    // i1 left the cart with the order; i2: +1 -1 +3.
    assert_eq!(user.cart.len(), 1);
    assert_eq!(
        (
            user.cart[0].item_id.as_str(),
            user.cart[0].quantity,
            user.cart[0].unit_price
        ),
        ("i2", 3, 50.0)
    );
    assert_eq!((user.cart_value, user.cart_quantity), (150.0, 3));
    assert_eq!(user.last_activity_ts_ms, t + 7000);
    let session = user.session.unwrap();
    assert_eq!(session.event_count, 8);
    assert_eq!((session.start_ts_ms, session.last_ts_ms), (t, t + 7000));
    assert_eq!(session.last_query, "wireless headphones");
    assert_eq!(session.item_ids, ["i2", "i1"]);
    assert_eq!(session.counts["add_to_cart"], 3);

    let item = client
        .get_item_features(GetItemFeaturesRequest {
            item_id: "i1".into(),
            neighbours: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(item.found);
    let record = item.item.unwrap();
    assert_eq!(
        (record.category.as_str(), record.price, record.stock),
        ("electronics/audio/headphones", 100.0, 5)
    );
    for w in &item.windows {
        assert_eq!(
            (w.impressions, w.clicks, w.carts, w.orders),
            (0, 1, 1, 2),
            "window {}",
            w.window
        );
    }
    // i2 was clicked after i1 (1), then i1 carted after i2 (1), then i2 carted twice after i1 (2).
    assert_eq!(item.co_visited.len(), 1);
    assert_eq!(
        (
            item.co_visited[0].item_id.as_str(),
            item.co_visited[0].score
        ),
        ("i2", 4.0)
    );
    let unknown = client
        .get_user_features(GetUserFeaturesRequest {
            user_id: "nobody".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!unknown.found && unknown.counts.is_empty());
    let err = client
        .get_user_features(GetUserFeaturesRequest {
            user_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(err.message(), "user_id is required");
    let err = client
        .get_item_features(GetItemFeaturesRequest {
            item_id: "i1".into(),
            neighbours: 1000,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let mut redis = env.redis.conn().await;
    let q: HashMap<String, i64> = redis
        .hgetall(format!("{}:q:wireless headphones", env.prefix))
        .await
        .unwrap();
    assert_eq!(
        q,
        HashMap::from([("searches".into(), 1), ("clicks".into(), 2)])
    );
    // Daily buckets: the sequence may straddle midnight, so add both days up.
    let mut pop: Vec<(String, f64)> = Vec::new();
    for day in HashSet::from([t / 86_400_000, (t + 7000) / 86_400_000]) {
        let part: Vec<(String, f64)> = redis
            .zrevrange_withscores(format!("{}:c:electronics:pop:{day}", env.prefix), 0, -1)
            .await
            .unwrap();
        for (item, score) in part {
            match pop.iter_mut().find(|(i, _)| *i == item) {
                Some(entry) => entry.1 += score,
                None => pop.push((item, score)),
            }
        }
    }
    pop.sort_by(|a, b| b.1.total_cmp(&a.1));
    // click 1 + cart 3 + order 5 per unit; i2: click 1 + two carts 3 each.
    assert_eq!(pop, vec![("i1".to_string(), 14.0), ("i2".to_string(), 7.0)]);

    let keys: Vec<String> = redis.keys(format!("{}:*", env.prefix)).await.unwrap();
    assert!(keys.len() > 20, "{keys:?}");
    for key in keys {
        let ttl: i64 = redis.ttl(&key).await.unwrap();
        assert!(ttl > 0, "key {key} has no TTL ({ttl})");
    }

    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            ingest.grpc().await,
        );
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut answers = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(
        tonic_reflection::pb::v1::server_reflection_response::MessageResponse::ListServicesResponse(
            list,
        ),
    ) = answer.message_response
    else {
        panic!("not a service list: {answer:?}");
    };
    let mut services = list.service.into_iter().map(|s| s.name).collect::<Vec<_>>();
    services.sort();
    assert_eq!(
        services,
        [
            "funnel.ingest.v1.Features",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection"
        ]
    );

    let mut health = tonic_health::pb::health_client::HealthClient::new(ingest.grpc().await);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: ingest::FEATURES_SERVICE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    ingest.stop().await;
}

fn click(user: usize, n: usize, t: i64) -> serde_json::Value {
    json!({"event_id": format!("c-{user}-{n}"), "type": "click", "ts": t + n as i64,
           "user_id": format!("user-{user}"), "item_id": format!("i{}", n % 7)})
}

/// Waits for `total` canonical events and checks that they are all distinct.
async fn assert_distinct_events(events: &funnel_tests::TopicReader, total: usize) {
    events.wait_for(total, WAIT).await;
    let ids = events
        .events()
        .into_iter()
        .map(|e| e.event_id)
        .collect::<HashSet<_>>();
    assert_eq!(ids.len(), total);
}

async fn assert_each_user_counted_exactly(env: &Env, users: usize, per_user: i64) {
    let mut redis = env.redis.conn().await;
    for u in 0..users {
        let clicks: i64 = redis
            .hget(format!("{}:u:user-{u}:n", env.prefix), "click")
            .await
            .unwrap();
        assert_eq!(clicks, per_user, "user-{u}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingest_instances_share_the_partitions() {
    let env = Env::start(4).await;
    let mut config = env.ingest_config();
    config.ingest.batch_max = 50;
    let a = env.start_ingest(config.clone()).await;
    let b = env.start_ingest(config).await;
    let events = env.reader(&env.topics.events);
    let p = env.producer();
    let (users, per_user) = (40, 50);
    let t = now() - 60_000;
    // Both members must have joined before traffic, or one takes it all.
    eventually(WAIT, || async {
        let (na, nb) = (
            a.metric("kafka_assigned_partitions").await,
            b.metric("kafka_assigned_partitions").await,
        );
        (na > 0.0 && nb > 0.0 && na + nb == 4.0)
            .then_some(())
            .ok_or(format!("assigned {na} + {nb}"))
    })
    .await;
    for n in 0..per_user {
        for u in 0..users {
            p.send_json(&click(u, n, t)).await;
        }
    }
    let total = users * per_user;
    assert_distinct_events(&events, total).await;
    let (na, nb) = (
        a.metric("ingest_events_in_total").await,
        b.metric("ingest_events_in_total").await,
    );
    assert!(na > 0.0 && nb > 0.0, "both instances consumed: {na} + {nb}");
    assert_eq!(na + nb, total as f64);
    assert_each_user_counted_exactly(&env, users, per_user as i64).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_stream_loses_nothing_and_counts_nothing_twice() {
    let env = Env::start(4).await;
    let mut config = env.ingest_config();
    config.ingest.batch_max = 100;
    let first = env.start_ingest(config.clone()).await;
    let events = env.reader(&env.topics.events);
    let p = env.producer();
    let (users, per_user) = (30, 100);
    let t = now() - 60_000;
    for n in 0..per_user {
        for u in 0..users {
            p.send_json(&click(u, n, t)).await;
        }
        if n == per_user / 3 {
            // Crash once part of the stream went through.
            events.wait_for(users * 10, WAIT).await;
            first.kill().await;
            break;
        }
    }
    for n in (per_user / 3 + 1)..per_user {
        for u in 0..users {
            p.send_json(&click(u, n, t)).await;
        }
    }
    let second = env.start_ingest(config).await;
    let total = users * per_user;
    eventually(WAIT, || async {
        let ids = events
            .events()
            .into_iter()
            .map(|e| e.event_id)
            .collect::<HashSet<_>>();
        (ids.len() == total)
            .then_some(())
            .ok_or(format!("{} of {total} distinct events", ids.len()))
    })
    .await;
    assert_each_user_counted_exactly(&env, users, per_user as i64).await;
    let replays = second.metric("ingest_replays_total").await;
    let dups = second.metric("ingest_dedup_hits_total").await;
    eprintln!("after the crash: {replays} replays republished, {dups} duplicates");
    assert_eq!(dups, 0.0, "a replay is not a duplicate");
    second.stop().await;
}

/// Lanes finish parts while the next batch is still being fetched: no message
/// may be skipped, and offsets may pass no unfinished batch. Small batches, a
/// long linger and many lanes make the two overlap all the time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_finishing_during_a_fetch_skip_no_message() {
    let env = Env::start(4).await;
    let mut config = env.ingest_config();
    config.ingest.batch_max = 50;
    config.ingest.batch_linger_ms = 100;
    config.ingest.workers = 4;
    let ingest = env.start_ingest(config.clone()).await;
    let events = env.reader(&env.topics.events);
    let p = env.producer();
    let (users, per_user) = (10, 40);
    let t = now() - 60_000;
    for n in 0..per_user {
        for u in 0..users {
            p.send_json(&click(u, n, t)).await;
            // A trickle: every fetch lingers, holding messages, while the
            // parts of earlier batches complete.
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
    let total = users * per_user;
    assert_distinct_events(&events, total).await;
    assert_eq!(ingest.metric("ingest_events_in_total").await, total as f64);
    assert_each_user_counted_exactly(&env, users, per_user as i64).await;
    ingest.stop().await;

    // Every offset was committed: a new member of the group finds nothing
    // left to do.
    let again = env.start_ingest(config).await;
    eventually(WAIT, || async {
        let assigned = again.metric("kafka_assigned_partitions").await;
        (assigned == 4.0)
            .then_some(())
            .ok_or(format!("assigned {assigned}"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(again.metric("ingest_events_in_total").await, 0.0);
    again.stop().await;
}
