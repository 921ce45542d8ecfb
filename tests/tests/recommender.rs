//! The recommender against a real broker (Tansu), a real Redis and ONNX Runtime with the
//! real model files, fed by the real ingest: raw events go in, ingest writes the feature
//! store (recent items, co-visitation, popularity) and the canonical and catalog topics,
//! and the recommender answers from them. The ranker's features and scores are checked
//! against the golden vectors of `models/ranker/3/parity.json`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use funnel_bus::KafkaConfig;
use funnel_bus::admin::{TopicSpec, ensure_topics};
use funnel_core::pb::event::Payload;
use funnel_proto::pb::recommender::v1::recommender_client::RecommenderClient;
use funnel_proto::pb::recommender::v1::{
    ArmStats, GetExperimentStatsRequest, RecommendRequest, RecommendResponse, Recommendation,
    Scenario,
};
use funnel_runtime::Shutdown;
use funnel_store::{RedisConfig, RedisStore, Store};
use funnel_tests::{Env, RunningIngest, eventually, grpc_services, http_get};
use prost::Message as _;
use rdkafka::Message as _;
use recommender::features::{
    ItemLookup, ItemRecord, RankInputs, Scenario as FeatureScenario, UserSignals,
};
use recommender::ranking::{ARM_COVIS, ARM_RANKER, Arms, score_rows};
use redis::AsyncCommands;
use serde_json::{Value, json};
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(60);

fn models_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// Rules with caps high enough not to matter, unless a test says otherwise.
fn rules(max_per_category: usize, max_per_brand: usize) -> String {
    format!(
        "version = \"test-{max_per_category}-{max_per_brand}\"\nexclude_cart_scenarios = [\"home\", \"item_page\"]\n\
         [repurchase]\nwindow_secs = 2592000\n[diversity]\nmax_per_category = {max_per_category}\nmax_per_brand = {max_per_brand}\n"
    )
}

/// The test catalog: headphones h1-h6, speakers s1-s3, books b1-b4, and x0, a
/// headphone out of stock.
fn catalog() -> Vec<Value> {
    let item = |id: &str, category: &str, brand: &str, title: &str, stock: i64| {
        json!({"event_id": format!("cat-{id}-{stock}"), "type": "item", "ts": now_ms(), "item_id": id,
               "title": title, "category": category, "brand": brand, "price": 50.0, "stock": stock})
    };
    let hp = "electronics/audio/headphones";
    let sp = "electronics/audio/speakers";
    vec![
        item("h1", hp, "Sonora", "Sonora Wireless Headphones", 10),
        item("h2", hp, "Sonora", "Sonora Studio Headphones", 10),
        item("h3", hp, "Sonora", "Sonora Kids Headphones", 10),
        item("h4", hp, "Boomy", "Boomy Bass Headphones", 10),
        item("h5", hp, "Boomy", "Boomy Sport Headphones", 10),
        item("h6", hp, "Acme", "Acme Headphones", 10),
        item("x0", hp, "Sonora", "Sonora Gold Headphones", 0),
        item("s1", sp, "Sonora", "Sonora Speaker", 10),
        item("s2", sp, "Boomy", "Boomy Speaker", 10),
        item("s3", sp, "Acme", "Acme Speaker", 10),
        item("b1", "books/fiction", "Penguin", "The Long Road", 10),
        item("b2", "books/fiction", "Penguin", "The Short Road", 10),
        item("b3", "books/fiction", "Penguin", "Road Trip", 10),
        item("b4", "books/fiction", "Penguin", "Sea Stories", 10),
    ]
}

fn now_ms() -> i64 {
    funnel_core::now_ms()
}

/// One test's world: broker, Redis, ingest, and a recommender with its own rules file.
struct World {
    env: Env,
    /// Runs while the world lives (aborted on drop).
    _ingest: RunningIngest,
    config: recommender::Config,
    rules_file: PathBuf,
    recommendations_topic: String,
    sent: std::sync::atomic::AtomicUsize,
}

impl World {
    async fn start(rules_text: &str) -> World {
        let env = Env::start(1).await;
        let recommendations_topic = format!("{}.rec.recommendations", env.prefix);
        ensure_topics(
            &KafkaConfig::new(&env.broker.brokers, "admin"),
            &[TopicSpec::new(&recommendations_topic, 1)],
        )
        .await
        .unwrap();
        let ingest = env.start_ingest(env.ingest_config()).await;
        let rules_file = std::env::temp_dir().join(format!("{}-rules.toml", env.prefix));
        std::fs::write(&rules_file, rules_text).unwrap();
        let mut c = recommender::Config {
            kafka: KafkaConfig::new(&env.broker.brokers, &format!("{}-rec", env.prefix)),
            redis: RedisConfig {
                url: env.redis.url.clone(),
                key_prefix: env.prefix.clone(),
                ..RedisConfig::default()
            },
            ..recommender::Config::default()
        };
        c.topics.events.clone_from(&env.topics.events);
        c.topics.catalog.clone_from(&env.topics.catalog);
        c.topics.recommendations.clone_from(&recommendations_topic);
        c.grpc.listen = "127.0.0.1:0".into();
        c.admin.listen = "127.0.0.1:0".into();
        c.models.root = models_root().display().to_string();
        c.models.runtime_library = std::env::var("ORT_DYLIB_PATH")
            .expect("ORT_DYLIB_PATH names the onnx runtime library (set by .cargo/config.toml)");
        c.rules.file = rules_file.display().to_string();
        c.rules.reload_secs = 1;
        c.catalog.popularity_refresh_ms = 200;
        c.experiment.stats_flush_ms = 100;
        c.stream.batch_linger_ms = 5;
        c.stream.shutdown_grace_secs = 10;
        World {
            env,
            _ingest: ingest,
            config: c,
            rules_file,
            recommendations_topic,
            sent: Default::default(),
        }
    }

    /// Sends raw events through ingest, in order.
    async fn send(&self, events: &[Value]) {
        let producer = self.env.producer();
        for e in events {
            producer.send_json(e).await;
        }
    }

    fn event_id(&self) -> String {
        let n = self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("ev-{n}")
    }

    fn click(&self, user: &str, item: &str, recomm_id: &str) -> Value {
        let mut e = json!({"event_id": self.event_id(), "type": "click", "ts": now_ms(), "user_id": user, "item_id": item});
        if !recomm_id.is_empty() {
            e["recomm_id"] = json!(recomm_id);
        }
        e
    }

    fn order(&self, user: &str, item: &str) -> Value {
        json!({"event_id": self.event_id(), "type": "order", "ts": now_ms(), "user_id": user,
               "order_id": format!("o-{}", self.event_id()), "currency": "EUR",
               "lines": [{"item_id": item, "quantity": 1, "price": 50.0}]})
    }

    /// The catalog, and sessions of other users that co-visit: h1 with s1, s2, x0; h1
    /// with h2-h6; b1 with b2, b3; h1 with s3.
    async fn seed(&self) {
        let items = catalog();
        self.send(&items).await;
        let catalog_topic = self.env.reader(&self.env.topics.catalog);
        catalog_topic.wait_for(items.len(), WAIT).await;
        let sessions: [(&str, &[&str]); 4] = [
            ("o1", &["h1", "s1", "s2", "x0"]),
            ("o2", &["h1", "h2", "h3", "h4", "h5", "h6"]),
            ("o3", &["b1", "b2", "b3"]),
            ("o4", &["h1", "s3"]),
        ];
        for (user, clicks) in sessions {
            let events: Vec<Value> = clicks.iter().map(|i| self.click(user, i, "")).collect();
            self.send(&events).await;
        }
    }

    async fn start_recommender(&self) -> Running {
        let config = self.config.clone();
        let listeners = recommender::Listeners::bind(&config.grpc, &config.admin)
            .await
            .unwrap();
        let grpc_addr = listeners.grpc.local_addr().unwrap();
        let admin_addr = listeners.admin.local_addr().unwrap();
        let store = Store::Redis(RedisStore::connect(&config.redis).await.unwrap());
        let models = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || recommender::load_models(&config))
                .await
                .unwrap()
                .unwrap()
        };
        let shutdown = Shutdown::new();
        let task = tokio::spawn(recommender::run(
            config,
            listeners,
            store,
            models,
            shutdown.clone(),
        ));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc_addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Running {
            task: Some(task),
            shutdown,
            client: RecommenderClient::new(channel.clone()),
            channel,
            admin_addr,
        }
    }

    async fn redis(&self) -> redis::aio::MultiplexedConnection {
        self.env.redis.conn().await
    }
}

struct Running {
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    shutdown: Shutdown,
    client: RecommenderClient<Channel>,
    channel: Channel,
    admin_addr: std::net::SocketAddr,
}

impl Running {
    async fn recommend(&self, user: &str, scenario: Scenario, count: u32) -> RecommendResponse {
        self.ask(RecommendRequest {
            user_id: user.into(),
            scenario: scenario as i32,
            count,
            ..RecommendRequest::default()
        })
        .await
        .unwrap()
    }

    async fn ask(&self, request: RecommendRequest) -> Result<RecommendResponse, tonic::Status> {
        self.client
            .clone()
            .recommend(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// Asks until the answer passes `check` (ingest and the stream need a moment), then
    /// returns it; panics with the last answer at the deadline.
    async fn recommend_until(
        &self,
        user: &str,
        count: u32,
        check: impl Fn(&RecommendResponse) -> Result<(), String>,
    ) -> RecommendResponse {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let answer = self.recommend(user, Scenario::Home, count).await;
            match check(&answer) {
                Ok(()) => return answer,
                Err(e) if std::time::Instant::now() > deadline => {
                    panic!("not true within {WAIT:?}: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn stats(&self) -> Vec<ArmStats> {
        self.client
            .clone()
            .get_experiment_stats(GetExperimentStatsRequest {})
            .await
            .unwrap()
            .into_inner()
            .arms
    }

    /// The admin endpoint's samples, summed over labels, by metric name.
    async fn metrics(&self) -> HashMap<String, f64> {
        let mut sums = HashMap::new();
        for line in http_get(self.admin_addr, "/metrics").await.lines() {
            let (Some(name), Some(value)) =
                (line.split(['{', ' ']).next(), line.rsplit(' ').next())
            else {
                continue;
            };
            if let (false, Ok(value)) = (line.starts_with('#'), value.parse::<f64>()) {
                *sums.entry(name.to_owned()).or_default() += value;
            }
        }
        sums
    }

    async fn metric(&self, name: &str) -> f64 {
        self.metrics().await.get(name).copied().unwrap_or(0.0)
    }

    /// The samples of `name` whose labels include `label` (e.g. `rule="purchased"`), summed.
    async fn metric_where(&self, name: &str, label: &str) -> f64 {
        http_get(self.admin_addr, "/metrics")
            .await
            .lines()
            .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

fn ids(r: &RecommendResponse) -> Vec<&str> {
    r.items.iter().map(|i| i.item_id.as_str()).collect()
}

fn sources_of<'a>(r: &'a RecommendResponse, item: &str) -> Vec<&'a str> {
    r.items
        .iter()
        .find(|i| i.item_id == item)
        .map(|i| i.sources.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_who_clicked_a_and_b_gets_their_co_visited_items_but_nothing_bought_or_out_of_stock()
{
    let world = World::start(&rules(100, 100)).await;
    world.seed().await;
    let rec = world.start_recommender().await;
    world
        .send(&[world.click("u-1", "h1", ""), world.click("u-1", "b1", "")])
        .await;

    // Co-visited with h1: s1, s2, s3, h2-h6 (and x0, out of stock); with b1: b2, b3.
    let co_visited = ["s1", "s2", "s3", "h2", "h3", "h4", "h5", "h6", "b2", "b3"];
    let answer = rec
        .recommend_until("u-1", 200, |answer| {
            let missing: Vec<_> = co_visited
                .iter()
                .filter(|i| !sources_of(answer, i).contains(&"covis"))
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("not co-visited in {:?}: {missing:?}", answer.items))
            }
        })
        .await;
    assert!(
        !ids(&answer).contains(&"x0"),
        "out of stock x0 recommended: {:?}",
        ids(&answer)
    );
    assert!(!answer.cold_start);
    assert!(matches!(answer.arm.as_str(), ARM_RANKER | ARM_COVIS));
    // The user's own clicks come back as `recent`; they are not excluded on home.
    assert!(
        sources_of(&answer, "h1").contains(&"recent"),
        "{:?}",
        answer.items
    );
    let scores: Vec<f32> = answer.items.iter().map(|i| i.score).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "not ranked: {scores:?}"
    );

    // s1 is bought: once the stream applied the order it never comes back.
    world.send(&[world.order("u-1", "s1")]).await;
    let purchased = format!("{}:rec:u:u-1:bought", world.env.prefix);
    let mut redis = world.redis().await;
    eventually(WAIT, || {
        let mut redis = redis.clone();
        let purchased = purchased.clone();
        async move {
            let score: Option<f64> = redis.zscore(&purchased, "s1").await.unwrap();
            score
                .map(|_| ())
                .ok_or_else(|| "order not applied yet".to_owned())
        }
    })
    .await;
    let ttl: i64 = redis.ttl(&purchased).await.unwrap();
    assert!(ttl > 0, "purchased set without TTL");
    let drops = "recommender_rule_drops_total";
    let bought_before = rec.metric_where(drops, r#"rule="purchased""#).await;
    let stock_before = rec.metric_where(drops, r#"rule="out_of_stock""#).await;
    for scenario in [
        Scenario::Home,
        Scenario::ItemPage,
        Scenario::Cart,
        Scenario::PostPurchase,
    ] {
        for _ in 0..5 {
            let r = rec
                .ask(RecommendRequest {
                    user_id: "u-1".into(),
                    scenario: scenario as i32,
                    count: 200,
                    context_item_id: "h1".into(),
                    ..RecommendRequest::default()
                })
                .await
                .unwrap();
            assert!(
                !ids(&r).contains(&"s1"),
                "bought s1 recommended again ({scenario:?}): {:?}",
                ids(&r)
            );
            assert!(!ids(&r).contains(&"x0"));
            assert!(
                !ids(&r).contains(&"h1"),
                "the context item itself was recommended"
            );
            assert!(ids(&r).contains(&"s2"), "{scenario:?}: {:?}", ids(&r));
        }
    }
    // Each of the 20 requests dropped s1 (bought) and x0 (out of stock) once, by that rule.
    assert_eq!(
        rec.metric_where(drops, r#"rule="purchased""#).await - bought_before,
        20.0
    );
    assert_eq!(
        rec.metric_where(drops, r#"rule="out_of_stock""#).await - stock_before,
        20.0
    );

    // s2 goes out of stock: it disappears.
    let mut s2 = catalog()
        .into_iter()
        .find(|i| i["item_id"] == "s2")
        .unwrap();
    s2["stock"] = json!(0);
    s2["event_id"] = json!("cat-s2-restock-0");
    world.send(&[s2]).await;
    eventually(WAIT, || {
        let rec = &rec;
        async move {
            let r = rec.recommend("u-1", Scenario::Home, 200).await;
            if ids(&r).contains(&"s2") {
                Err("s2 still recommended".to_owned())
            } else {
                Ok(())
            }
        }
    })
    .await;
    // Items in the cart are not recommended on home.
    world
        .send(&[json!({"event_id": world.event_id(), "type": "add_to_cart", "ts": now_ms(), "user_id": "u-1", "item_id": "b2"})])
        .await;
    eventually(WAIT, || {
        let rec = &rec;
        async move {
            let home = rec.recommend("u-1", Scenario::Home, 200).await;
            let cart = rec.recommend("u-1", Scenario::Cart, 200).await;
            match (ids(&home).contains(&"b2"), ids(&cart).contains(&"b2")) {
                (false, true) => Ok(()),
                other => Err(format!("b2 on (home, cart): {other:?}")),
            }
        }
    })
    .await;
    rec.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn diversity_caps_hold_and_a_reloaded_rules_file_changes_them_without_restart() {
    let world = World::start(&rules(2, 2)).await;
    world.seed().await;
    let rec = world.start_recommender().await;
    world.send(&[world.click("u-2", "h1", "")]).await;

    let per = |r: &RecommendResponse, key: fn(&str) -> &'static str| {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for id in ids(r) {
            *counts.entry(key(id)).or_default() += 1;
        }
        counts
    };
    fn category(id: &str) -> &'static str {
        match &id[..1] {
            "h" | "x" => "headphones",
            "s" => "speakers",
            _ => "books",
        }
    }
    fn brand(id: &str) -> &'static str {
        match id {
            "h1" | "h2" | "h3" | "x0" | "s1" => "Sonora",
            "h4" | "h5" | "s2" => "Boomy",
            "h6" | "s3" => "Acme",
            _ => "Penguin",
        }
    }
    eventually(WAIT, || {
        let rec = &rec;
        async move {
            let r = rec.recommend("u-2", Scenario::Home, 200).await;
            let (c, b) = (per(&r, category), per(&r, brand));
            if c.values().any(|n| *n > 2) || b.values().any(|n| *n > 2) {
                return Err(format!("caps broken: {c:?} {b:?}"));
            }
            // Six headphones are eligible: the cap, not the data, keeps it at two.
            if c.get("headphones") == Some(&2) {
                Ok(())
            } else {
                Err(format!("{c:?} in {:?}", ids(&r)))
            }
        }
    })
    .await;

    std::fs::write(&world.rules_file, rules(100, 100)).unwrap();
    eventually(WAIT, || {
        let rec = &rec;
        async move {
            let r = rec.recommend("u-2", Scenario::Home, 200).await;
            let c = per(&r, category);
            // h1-h6 without x0 (out of stock).
            if c.get("headphones") == Some(&6) {
                Ok(())
            } else {
                Err(format!("{c:?} in {:?}", ids(&r)))
            }
        }
    })
    .await;
    // A broken file is refused; the caps of the last good one keep serving.
    std::fs::write(&world.rules_file, "version = \"\"\n").unwrap();
    wait_for_count(&rec, "recommender_rules_refusals_total", 1.0).await;
    let r = rec.recommend("u-2", Scenario::Home, 200).await;
    assert_eq!(per(&r, category).get("headphones"), Some(&6));
    rec.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_click_with_a_recomm_id_moves_its_arms_ctr_and_an_order_of_the_clicked_item_converts() {
    let world = World::start(&rules(100, 100)).await;
    world.seed().await;
    let arms = Arms::new(&world.config.experiment);
    let user_in = |arm: &str| {
        (0..)
            .map(|n| format!("u-{n}"))
            .find(|u| arms.arm(u) == arm)
            .unwrap()
    };
    let (ranked_user, covis_user) = (user_in(ARM_RANKER), user_in(ARM_COVIS));
    let rec = world.start_recommender().await;
    world
        .send(&[
            world.click(&ranked_user, "h1", ""),
            world.click(&covis_user, "h1", ""),
        ])
        .await;
    let log = world.env.reader(&world.recommendations_topic);

    let answer = rec
        .recommend_until(&ranked_user, 5, |answer| {
            if answer.items.len() == 5 && !answer.cold_start {
                Ok(())
            } else {
                Err(format!("{answer:?}"))
            }
        })
        .await;
    assert_eq!(answer.arm, ARM_RANKER);
    assert_eq!(
        (answer.model.as_str(), answer.model_version.as_str()),
        ("ranker", "3")
    );
    let other = rec.recommend(&covis_user, Scenario::Home, 5).await;
    assert_eq!(
        (other.arm.as_str(), other.model.as_str()),
        (ARM_COVIS, "covis")
    );

    let shown: Vec<String> = answer
        .items
        .iter()
        .take(4)
        .map(|i| i.item_id.clone())
        .collect();
    let clicked = shown[1].clone();
    let click = world.click(&ranked_user, &clicked, &answer.recomm_id);
    world
        .send(&[
            json!({"event_id": world.event_id(), "type": "impression", "ts": now_ms(), "user_id": ranked_user,
                   "item_ids": shown, "recomm_id": answer.recomm_id}),
            click.clone(),
            // A click without a recomm_id is not attributed.
            world.click(&ranked_user, &clicked, ""),
        ])
        .await;
    let ranker_stats = |stats: &[ArmStats]| stats.iter().find(|s| s.arm == ARM_RANKER).cloned();
    eventually(WAIT, || {
        let rec = &rec;
        async move {
            let s = ranker_stats(&rec.stats().await).ok_or("no ranker arm yet")?;
            if s.clicks == 1 && s.impressions == 4 {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        }
    })
    .await;
    let stats = rec.stats().await;
    let s = ranker_stats(&stats).unwrap();
    // eventually() made several ranker answers for the user; every one counts.
    assert!(
        s.recommendations >= 1 && s.items_served == 5 * s.recommendations,
        "{s:?}"
    );
    assert_eq!(
        (s.model.as_str(), s.model_version.as_str()),
        ("ranker", "3")
    );
    assert!((s.ctr - 0.25).abs() < 1e-12, "{s:?}");
    assert_eq!(s.orders, 0);
    let c = stats
        .iter()
        .find(|s| s.arm == ARM_COVIS)
        .expect("covis arm counted");
    assert_eq!((c.recommendations, c.clicks, c.ctr), (1, 0, 0.0));

    // The stream is at least once: the same canonical click delivered again changes
    // nothing. An impression sent after it on the same partition shows it was consumed.
    let canonical = |event_id: &str, payload: Payload| {
        funnel_core::pb::Event {
            event_id: event_id.to_owned(),
            ts_ms: now_ms(),
            user_id: ranked_user.clone(),
            session_id: "s-replayed".into(),
            payload: Some(payload),
            ..Default::default()
        }
        .encode_to_vec()
    };
    let replayed = canonical(
        click["event_id"].as_str().unwrap(),
        Payload::Click(funnel_core::pb::Click {
            item_id: clicked.clone(),
            recomm_id: answer.recomm_id.clone(),
            ..Default::default()
        }),
    );
    let after = canonical(
        "after-replay",
        Payload::Impression(funnel_core::pb::Impression {
            item_ids: vec![clicked.clone()],
            recomm_id: answer.recomm_id.clone(),
            ..Default::default()
        }),
    );
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &world.env.broker.brokers)
        .create()
        .unwrap();
    for payload in [&replayed, &after] {
        producer
            .send(
                rdkafka::producer::FutureRecord::to(&world.env.topics.events)
                    .key(&ranked_user)
                    .payload(payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    eventually(WAIT, || {
        let rec = &rec;
        async move {
            let s = ranker_stats(&rec.stats().await).unwrap();
            match (s.impressions, s.clicks) {
                (5, 1) => Ok(()),
                (5, _) => panic!("a replayed click was counted again: {s:?}"),
                _ => Err(format!("{s:?}")),
            }
        }
    })
    .await;

    world.send(&[world.order(&ranked_user, &clicked)]).await;
    eventually(WAIT, || {
        let rec = &rec;
        async move {
            let s = ranker_stats(&rec.stats().await).unwrap();
            if s.orders == 1 {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        }
    })
    .await;
    let s = ranker_stats(&rec.stats().await).unwrap();
    assert!(
        (s.conversion_rate - 1.0 / s.recommendations as f64).abs() < 1e-12,
        "{s:?}"
    );

    // Every answer was logged with its id, items and scores.
    let logged = log.wait_for(1, WAIT).await;
    let ours = logged
        .iter()
        .map(|m| Recommendation::decode(m.payload().unwrap()).unwrap())
        .find(|r| r.recomm_id == answer.recomm_id)
        .expect("answer logged");
    assert_eq!(ours.item_ids, ids(&answer));
    assert_eq!(
        ours.scores,
        answer.items.iter().map(|i| i.score).collect::<Vec<_>>()
    );
    assert_eq!(
        (ours.arm.as_str(), ours.model_version.as_str()),
        (ARM_RANKER, "3")
    );
    rec.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_are_invalid_arguments_and_an_unknown_user_gets_a_cold_start_answer() {
    let world = World::start(&rules(100, 100)).await;
    world.seed().await;
    let rec = world.start_recommender().await;
    let services = grpc_services(rec.channel.clone()).await;
    assert!(
        services.contains(&recommender::SERVICE.to_owned()),
        "{services:?}"
    );
    let good = RecommendRequest {
        user_id: "u-9".into(),
        scenario: Scenario::Home as i32,
        count: 10,
        ..RecommendRequest::default()
    };
    let bad = [
        (
            RecommendRequest {
                user_id: String::new(),
                ..good.clone()
            },
            "user_id is required",
        ),
        (
            RecommendRequest {
                count: 0,
                ..good.clone()
            },
            "count is 0, must be between 1 and 200",
        ),
        (
            RecommendRequest {
                count: 201,
                ..good.clone()
            },
            "count is 201, must be between 1 and 200",
        ),
        (
            RecommendRequest {
                scenario: 0,
                ..good.clone()
            },
            "scenario must be HOME, ITEM_PAGE, CART or POST_PURCHASE",
        ),
        (
            RecommendRequest {
                exclude_item_ids: vec!["x".repeat(129)],
                ..good.clone()
            },
            "exclude_item_ids is 129 bytes, more than 128",
        ),
    ];
    for (request, message) in bad {
        let status = rec.ask(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), message);
    }
    // Popularity comes from the clicks of the seed sessions (h1 three times).
    eventually(WAIT, || {
        let (rec, good) = (&rec, good.clone());
        async move {
            let r = rec.ask(good).await.unwrap();
            let popular: HashSet<&str> = r
                .items
                .iter()
                .filter(|i| i.sources.iter().any(|s| s == "popular"))
                .map(|i| i.item_id.as_str())
                .collect();
            if r.cold_start && popular.contains("h1") && r.items.len() == 10 {
                Ok(())
            } else {
                Err(format!("{r:?}"))
            }
        }
    })
    .await;
    let filtered = rec
        .ask(RecommendRequest {
            category: "books".into(),
            exclude_item_ids: vec!["b2".into()],
            ..good.clone()
        })
        .await
        .unwrap();
    let mut books = ids(&filtered);
    books.sort();
    // b4 was never clicked: it comes as a new item of a trending category (content).
    assert_eq!(
        books,
        ["b1", "b3", "b4"],
        "category filter and exclude list"
    );
    assert_eq!(sources_of(&filtered, "b4"), ["content"]);
    rec.stop().await;
}

/// A parity case's items as the features read them.
struct GoldenItems {
    catalog: HashMap<String, ItemRecord>,
    embeddings: HashMap<String, Vec<f32>>,
    popularity: HashMap<String, f64>,
}

impl ItemLookup for GoldenItems {
    fn item(&self, id: &str) -> Option<&ItemRecord> {
        self.catalog.get(id)
    }
    fn embedding(&self, id: &str) -> Option<&[f32]> {
        self.embeddings.get(id).map(Vec::as_slice)
    }
    fn popularity(&self, id: &str) -> f64 {
        self.popularity.get(id).copied().unwrap_or(0.0)
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn neighbours(v: &Value) -> recommender::features::Neighbours {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(anchor, list)| {
            let list = list
                .as_object()
                .unwrap()
                .iter()
                .map(|(i, s)| (i.clone(), s.as_f64().unwrap()))
                .collect();
            (anchor.clone(), list)
        })
        .collect()
}

#[test]
fn the_rankers_features_and_scores_equal_the_training_golden_vectors() {
    let parity: Value = serde_json::from_str(
        &std::fs::read_to_string(models_root().join("ranker/3/parity.json")).unwrap(),
    )
    .unwrap();
    let names: Vec<String> = strings(&parity["feature_names"]);
    assert_eq!(names, recommender::features::RANKER_FEATURES);
    let mut config = recommender::Config::default();
    config.models.root = models_root().display().to_string();
    config.models.runtime_library = std::env::var("ORT_DYLIB_PATH").unwrap();
    config.models.embeddings_version = String::new();
    let model = recommender::load_models(&config).unwrap().ranker;
    let cases = parity["cases"].as_array().unwrap();
    assert!(cases.len() >= 10, "{} cases", cases.len());
    let mut rows_checked = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let r = &case["request"];
        let items = GoldenItems {
            catalog: r["catalog"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(id, c)| {
                    let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
                    (
                        id.clone(),
                        ItemRecord::new(
                            &s("category"),
                            &s("brand"),
                            &s("title"),
                            c["price"].as_f64().unwrap(),
                        ),
                    )
                })
                .collect(),
            embeddings: r["embeddings"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(id, v)| {
                    (
                        id.clone(),
                        v.as_array()
                            .unwrap()
                            .iter()
                            .map(|x| x.as_f64().unwrap() as f32)
                            .collect(),
                    )
                })
                .collect(),
            popularity: r["popularity"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(id, p)| (id.clone(), p.as_f64().unwrap()))
                .collect(),
        };
        let inputs = RankInputs {
            scenario: FeatureScenario::parse(r["scenario"].as_str().unwrap()).unwrap(),
            context_item: r["context_item"].as_str().map(str::to_owned),
            user: UserSignals {
                recent: strings(&r["user"]["recent"]),
                categories: strings(&r["user"]["categories"]),
                cart: strings(&r["user"]["cart"]),
                purchased: strings(&r["user"]["purchased"]),
            },
            covis: neighbours(&r["covis"]),
            bought: neighbours(&r["bought"]),
        };
        let prepared = inputs.prepare(&items);
        let rows: Vec<_> = r["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let sources: HashSet<String> = strings(&c["sources"]).into_iter().collect();
                prepared.row(c["item"].as_str().unwrap(), sources.len())
            })
            .collect();
        let golden = case["features"].as_array().unwrap();
        assert_eq!(rows.len(), golden.len(), "{name}");
        for (n, (row, want)) in rows.iter().zip(golden).enumerate() {
            for (col, (got, want)) in row.iter().zip(want.as_array().unwrap()).enumerate() {
                let want = want.as_f64().unwrap() as f32;
                assert!(
                    (got - want).abs() <= 1e-5,
                    "{name}: row {n} {}: serving {got}, training {want}",
                    names[col]
                );
            }
        }
        let scores = score_rows(&model, &rows).unwrap();
        for (n, (got, want)) in scores
            .iter()
            .zip(case["scores"].as_array().unwrap())
            .enumerate()
        {
            let want = want.as_f64().unwrap() as f32;
            assert!(
                (got - want).abs() <= 1e-5,
                "{name}: row {n} score: serving {got}, training {want}"
            );
        }
        rows_checked += rows.len();
    }
    assert!(rows_checked >= 50, "{rows_checked} rows");
}

/// Waits until the service's counter `metric` reaches `at_least`.
async fn wait_for_count(rec: &Running, metric: &str, at_least: f64) {
    eventually(WAIT, || async move {
        let n = rec.metric(metric).await;
        if n >= at_least {
            Ok(())
        } else {
            Err(format!("{metric} {n}"))
        }
    })
    .await;
}

/// A models root in the temp directory with the ranker at versions 3 and 4 (4 is 3
/// renamed) and the item embeddings, so that a test can move the serving pointer.
fn models_copy(prefix: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("{prefix}-models"));
    let source = models_root();
    for (name, version, as_version) in [
        ("ranker", "3", "3"),
        ("ranker", "3", "4"),
        ("item-embeddings", "1", "1"),
    ] {
        let dir = root.join(name).join(as_version);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(source.join(name).join(version)).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap();
            let mut bytes = std::fs::read(&path).unwrap();
            if file == "model.json" && as_version != version {
                let mut card: Value = serde_json::from_slice(&bytes).unwrap();
                card["version"] = json!(as_version);
                bytes = serde_json::to_vec(&card).unwrap();
            }
            std::fs::write(dir.join(file), bytes).unwrap();
        }
    }
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ranker_version_named_by_the_serving_pointer_is_swapped_in_without_restart() {
    let mut world = World::start(&rules(100, 100)).await;
    let root = models_copy(&world.env.prefix);
    world.config.models.root = root.display().to_string();
    world.config.models.reload_secs = 1;
    world.config.experiment.ranker_share = 1.0;
    world.seed().await;
    let rec = world.start_recommender().await;
    let first = rec.recommend("u-7", Scenario::Home, 5).await;
    assert_eq!(
        (first.arm.as_str(), first.model_version.as_str()),
        (ARM_RANKER, "3")
    );

    // A pointer to a version that does not exist is refused; 3 keeps serving.
    std::fs::write(root.join("ranker/serving"), "9\n").unwrap();
    wait_for_count(&rec, "recommender_model_refusals_total", 1.0).await;
    assert_eq!(
        rec.recommend("u-7", Scenario::Home, 5).await.model_version,
        "3"
    );

    std::fs::write(root.join("ranker/serving"), "4\n").unwrap();
    eventually(WAIT, || {
        let rec = &rec;
        async move {
            let r = rec.recommend("u-7", Scenario::Home, 5).await;
            if r.model_version == "4" {
                Ok(())
            } else {
                Err(format!("still {}", r.model_version))
            }
        }
    })
    .await;
    let metrics = rec.metrics().await;
    for (name, value) in [
        ("recommender_model_info", 1.0),
        ("recommender_model_swaps_total", 1.0),
        ("recommender_model_refusals_total", 1.0),
    ] {
        assert_eq!(metrics.get(name), Some(&value), "{name}");
    }
    // The answers of both versions are counted apart.
    eventually(WAIT, || {
        let rec = &rec;
        async move {
            let versions: Vec<String> = rec
                .stats()
                .await
                .into_iter()
                .map(|s| s.model_version)
                .collect();
            if versions == ["3", "4"] {
                Ok(())
            } else {
                Err(format!("{versions:?}"))
            }
        }
    })
    .await;
    rec.stop().await;
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn the_request_script_is_loaded_again_after_redis_forgets_it() {
    use recommender::state::{AnswerRecord, RecStore};
    let redis = funnel_tests::Redis::start();
    let store = RecStore::connect(&RedisConfig {
        url: redis.url.clone(),
        key_prefix: "t".into(),
        ..RedisConfig::default()
    })
    .await
    .unwrap();
    let mut c = redis.conn().await;
    let _: () = c.rpush("t:u:u1:recent", &["i1", "i2"]).await.unwrap();
    for (n, recomm_id) in ["r1", "r2"].into_iter().enumerate() {
        if n == 1 {
            // As after a Redis restart: the scripts are gone.
            let _: () = redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async(&mut c)
                .await
                .unwrap();
        }
        let answer = AnswerRecord {
            recomm_id,
            user: "u1",
            arm: "ranker",
            model: "ranker",
            version: "1",
            ts_ms: 1_764_000_000_000,
        };
        let read = store.read_user(None, 10, &answer, 60).await.unwrap();
        assert_eq!(read.user.recent, vec!["i1", "i2"], "call {n}");
        let user: String = c
            .hget(store.keys().recommendation(recomm_id), "user")
            .await
            .unwrap();
        assert_eq!(user, "u1", "call {n} recorded its answer");
    }
}
