//! Black-box tests of the simulator's output: the raw event contract, time order,
//! determinism, funnel realism, truth consistency and fault injection.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use funnel_sim::{
    CatalogItem, FunnelStats, InvalidReason, RecordKind, SessionTruth, SimConfig, SimRecord,
    Simulator,
};
use serde_json::Value;

const BROWSING_TYPES: [&str; 7] = [
    "search",
    "impression",
    "click",
    "add_to_cart",
    "remove_from_cart",
    "order",
    "ticket",
];

struct Run {
    records: Vec<SimRecord>,
    truths: Vec<SessionTruth>,
    catalog: Vec<CatalogItem>,
}

fn run(config: SimConfig) -> Run {
    let mut simulator = Simulator::new(config).expect("test configs are valid");
    let records: Vec<SimRecord> = simulator.by_ref().collect();
    Run {
        records,
        truths: simulator.take_finished_truths(),
        catalog: simulator.catalog().to_vec(),
    }
}

fn small(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        items: 400,
        users: 300,
        sessions: Some(1_500),
        ..SimConfig::default()
    }
}

fn json(record: &SimRecord) -> Value {
    serde_json::from_slice(&record.payload).expect("valid records are JSON")
}

fn str_field<'a>(event: &'a Value, field: &str) -> &'a str {
    event[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} should be a string in {event}"))
}

/// Everything the funnel tests look at, gathered in one pass over a 20,000-session run of the
/// default shop (parsing is the slow part in debug builds).
struct FunnelRun {
    config: SimConfig,
    stats: FunnelStats,
    truths: Vec<SessionTruth>,
    catalog: Vec<CatalogItem>,
    sessions: BTreeMap<String, SessionFacts>,
    /// Send times that went backwards: (record index, previous, current).
    time_reversals: Vec<(usize, i64, i64)>,
    /// Valid records whose payload `ts` differs from `ts_ms`.
    ts_mismatches: usize,
    /// How many records at the start are `item` events at `start_ms`.
    leading_catalog_events: usize,
    impressions_by_position: Vec<u64>,
    clicks_by_position: Vec<u64>,
    clicks_by_item: BTreeMap<String, u64>,
    queries: Vec<String>,
    zero_result_searches: u64,
    /// (query that found nothing, the session's next query right after it)
    retyped_queries: Vec<(String, String)>,
    /// (item_id, rating) of every review.
    reviews: Vec<(String, u64)>,
}

#[derive(Default)]
struct SessionFacts {
    first_ms: i64,
    last_ms: i64,
    events: u32,
    order_ids: Vec<String>,
    net_cart_units: i64,
    failed_query: Option<String>,
}

fn funnel_run() -> &'static FunnelRun {
    static RUN: OnceLock<FunnelRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let config = SimConfig {
            sessions: Some(20_000),
            ..SimConfig::default()
        };
        let mut simulator = Simulator::new(config.clone()).unwrap();
        let mut observed = FunnelRun {
            config: config.clone(),
            stats: FunnelStats::default(),
            truths: Vec::new(),
            catalog: Vec::new(),
            sessions: BTreeMap::new(),
            time_reversals: Vec::new(),
            ts_mismatches: 0,
            leading_catalog_events: 0,
            impressions_by_position: vec![0; 24],
            clicks_by_position: vec![0; 24],
            clicks_by_item: BTreeMap::new(),
            queries: Vec::new(),
            zero_result_searches: 0,
            retyped_queries: Vec::new(),
            reviews: Vec::new(),
        };
        let mut previous_ms = i64::MIN;
        let mut still_catalog = true;
        for (index, record) in simulator.by_ref().enumerate() {
            if record.ts_ms < previous_ms {
                observed
                    .time_reversals
                    .push((index, previous_ms, record.ts_ms));
            }
            previous_ms = record.ts_ms;
            let event = json(&record);
            observed.stats.observe_valid_event(&event);
            if event["ts"].as_i64() != Some(record.ts_ms) {
                observed.ts_mismatches += 1;
            }
            let kind = str_field(&event, "type");
            still_catalog &= kind == "item" && record.ts_ms == config.start_ms;
            if still_catalog {
                observed.leading_catalog_events += 1;
            }
            match kind {
                "impression" => {
                    let shown = event["item_ids"].as_array().unwrap().len();
                    for position in 0..shown.min(24) {
                        observed.impressions_by_position[position] += 1;
                    }
                }
                "click" => {
                    *observed
                        .clicks_by_item
                        .entry(str_field(&event, "item_id").to_owned())
                        .or_default() += 1;
                    if let Some(position) = event["position"].as_u64() {
                        observed.clicks_by_position[position as usize - 1] += 1;
                    }
                }
                "search" => observed.queries.push(str_field(&event, "query").to_owned()),
                "review" => observed.reviews.push((
                    str_field(&event, "item_id").to_owned(),
                    event["rating"].as_u64().unwrap(),
                )),
                _ => {}
            }
            let Some(session_id) = event["session_id"].as_str() else {
                continue;
            };
            let facts = observed
                .sessions
                .entry(session_id.to_owned())
                .or_insert_with(|| SessionFacts {
                    first_ms: record.ts_ms,
                    ..SessionFacts::default()
                });
            facts.last_ms = record.ts_ms;
            facts.events += 1;
            if let Some(failed) = facts.failed_query.take()
                && kind == "search"
            {
                observed
                    .retyped_queries
                    .push((failed, str_field(&event, "query").to_owned()));
            }
            match kind {
                "order" => facts
                    .order_ids
                    .push(str_field(&event, "order_id").to_owned()),
                "add_to_cart" => facts.net_cart_units += event["quantity"].as_i64().unwrap(),
                "remove_from_cart" => facts.net_cart_units -= event["quantity"].as_i64().unwrap(),
                "search" if event["results"].as_array().unwrap().is_empty() => {
                    observed.zero_result_searches += 1;
                    facts.failed_query = Some(str_field(&event, "query").to_owned());
                }
                _ => {}
            }
        }
        observed.truths = simulator.take_finished_truths();
        for truth in &observed.truths {
            observed.stats.observe_truth(truth);
        }
        observed.catalog = simulator.catalog().to_vec();
        observed
    })
}

#[test]
fn the_same_seed_gives_byte_identical_output() {
    let config = SimConfig {
        invalid_rate: 0.02,
        duplicate_rate: 0.02,
        ..small(11)
    };
    let first = run(config.clone());
    let second = run(config);
    assert!(
        first.records.len() > 5_000,
        "only {} records",
        first.records.len()
    );
    assert_eq!(first.records, second.records);
    assert_eq!(first.truths, second.truths);
}

#[test]
fn a_different_seed_gives_different_output() {
    let first = run(small(11));
    let second = run(small(12));
    let first_traffic: Vec<&[u8]> = first
        .records
        .iter()
        .skip(400)
        .take(1_000)
        .map(|r| r.payload.as_slice())
        .collect();
    let second_traffic: Vec<&[u8]> = second
        .records
        .iter()
        .skip(400)
        .take(1_000)
        .map(|r| r.payload.as_slice())
        .collect();
    assert_ne!(first_traffic, second_traffic);
    let first_titles: Vec<&str> = first
        .catalog
        .iter()
        .map(|item| item.title.as_str())
        .collect();
    let second_titles: Vec<&str> = second
        .catalog
        .iter()
        .map(|item| item.title.as_str())
        .collect();
    assert_ne!(first_titles, second_titles);
}

#[test]
fn fault_injection_adds_records_without_changing_the_valid_ones() {
    let clean = run(small(5));
    let faulty = run(SimConfig {
        invalid_rate: 0.1,
        duplicate_rate: 0.1,
        ..small(5)
    });
    let valid_of_faulty: Vec<&SimRecord> = faulty.records.iter().filter(|r| r.is_valid()).collect();
    let valid_of_clean: Vec<&SimRecord> = clean.records.iter().collect();
    assert!(faulty.records.len() > clean.records.len() + clean.records.len() / 5);
    assert_eq!(valid_of_faulty, valid_of_clean);
    assert_eq!(faulty.truths, clean.truths);
}

#[test]
fn every_valid_event_follows_the_raw_event_contract() {
    let config = SimConfig {
        sessions: Some(4_000),
        ..SimConfig::default()
    };
    let start_ms = config.start_ms;
    let output = run(config);
    let item_ids: BTreeSet<&str> = output
        .catalog
        .iter()
        .map(|item| item.item_id.as_str())
        .collect();
    let mut event_ids = BTreeSet::new();
    let mut order_lines: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen_types = BTreeSet::new();

    for record in &output.records {
        assert_eq!(record.kind, RecordKind::Valid);
        assert!(
            !record.payload.contains(&b'\n'),
            "payloads must fit on one NDJSON line"
        );
        let event = json(record);
        let fields = event.as_object().expect("events are JSON objects");
        let event_id = str_field(&event, "event_id");
        assert!((1..=128).contains(&event_id.len()));
        assert!(
            event_ids.insert(event_id.to_owned()),
            "duplicate event_id {event_id}"
        );
        let ts = event["ts"].as_i64().expect("ts is epoch ms by default");
        assert!(ts >= start_ms);
        let kind = str_field(&event, "type");
        seen_types.insert(kind.to_owned());
        let known_item = |field: &str| {
            let id = str_field(&event, field);
            assert!(item_ids.contains(id), "unknown item {id} in {event}");
            id.to_owned()
        };
        let positive_integer = |field: &str| {
            let value = event[field]
                .as_i64()
                .unwrap_or_else(|| panic!("{field} should be an integer in {event}"));
            assert!(value >= 1, "{field} should be at least 1 in {event}");
        };
        if kind == "item" {
            assert!(event.get("user_id").is_none() && event.get("session_id").is_none());
            assert_eq!(record.key.as_deref(), Some(str_field(&event, "item_id")));
        } else {
            assert!(str_field(&event, "user_id").starts_with("u-"));
            assert_eq!(record.key.as_deref(), Some(str_field(&event, "user_id")));
        }
        if BROWSING_TYPES.contains(&kind) && kind != "ticket" {
            assert!(str_field(&event, "session_id").starts_with("s-"), "{event}");
        }

        let allowed: &[&str] = match kind {
            "search" => {
                let query = str_field(&event, "query");
                assert!((1..=512).contains(&query.len()));
                for result in event["results"].as_array().unwrap() {
                    assert!(item_ids.contains(result.as_str().unwrap()));
                }
                &["query", "results"]
            }
            "impression" => {
                let shown = event["item_ids"].as_array().unwrap();
                assert!(!shown.is_empty());
                assert!(
                    shown
                        .iter()
                        .all(|id| item_ids.contains(id.as_str().unwrap()))
                );
                assert!(
                    ["search", "home", "item_page", "cart"].contains(&str_field(&event, "list"))
                );
                if event.get("recomm_id").is_some() {
                    assert!(!str_field(&event, "recomm_id").is_empty());
                }
                &["item_ids", "recomm_id", "list"]
            }
            "click" => {
                known_item("item_id");
                if event.get("position").is_some() {
                    positive_integer("position");
                    assert!(event["position"].as_i64().unwrap() <= 24);
                }
                &["item_id", "position", "recomm_id"]
            }
            "add_to_cart" | "remove_from_cart" => {
                known_item("item_id");
                positive_integer("quantity");
                &["item_id", "quantity"]
            }
            "order" => {
                let lines = event["lines"].as_array().unwrap();
                assert!(!lines.is_empty());
                let mut items = Vec::new();
                for line in lines {
                    let id = line["item_id"].as_str().unwrap();
                    assert!(item_ids.contains(id));
                    assert!(line["quantity"].as_i64().unwrap() >= 1);
                    assert!(line["price"].as_f64().unwrap() > 0.0);
                    items.push(id.to_owned());
                }
                assert_eq!(str_field(&event, "currency"), "EUR");
                order_lines.insert(str_field(&event, "order_id").to_owned(), items);
                &["order_id", "lines", "currency"]
            }
            "review" => {
                let item = known_item("item_id");
                let order = str_field(&event, "order_id");
                assert!(
                    order_lines[order].contains(&item),
                    "review of an item not in its order"
                );
                assert!((1..=5).contains(&event["rating"].as_i64().unwrap()));
                assert!(str_field(&event, "text").len() > 10);
                &["item_id", "order_id", "rating", "text"]
            }
            "return" => {
                let item = known_item("item_id");
                assert!(order_lines[str_field(&event, "order_id")].contains(&item));
                assert!(!str_field(&event, "reason").is_empty());
                &["order_id", "item_id", "reason"]
            }
            "ticket" => {
                if event.get("order_id").is_some() {
                    assert!(order_lines.contains_key(str_field(&event, "order_id")));
                }
                assert!(str_field(&event, "text").len() > 10);
                assert!(["email", "chat", "phone"].contains(&str_field(&event, "channel")));
                &["order_id", "text", "channel"]
            }
            "item" => {
                known_item("item_id");
                assert!(!str_field(&event, "title").is_empty());
                assert!(!str_field(&event, "brand").is_empty());
                let category = str_field(&event, "category");
                assert_eq!(category.split('/').count(), 3, "{category}");
                assert_eq!(category, category.to_lowercase());
                assert!(event["price"].as_f64().unwrap() > 0.0);
                assert!(event["stock"].as_i64().unwrap() >= 0);
                assert!(
                    event["attributes"]
                        .as_object()
                        .unwrap()
                        .values()
                        .all(Value::is_string)
                );
                &[
                    "item_id",
                    "title",
                    "category",
                    "brand",
                    "price",
                    "stock",
                    "attributes",
                ]
            }
            other => panic!("unexpected type {other}"),
        };
        for field in fields.keys() {
            let common =
                ["event_id", "type", "ts", "user_id", "session_id"].contains(&field.as_str());
            assert!(
                common || allowed.contains(&field.as_str()),
                "unexpected field {field} in {event}"
            );
        }
    }
    let expected_types = [
        "add_to_cart",
        "click",
        "impression",
        "item",
        "order",
        "remove_from_cart",
        "return",
        "review",
        "search",
        "ticket",
    ];
    assert_eq!(
        seen_types,
        expected_types.iter().map(|t| (*t).to_owned()).collect()
    );
}

#[test]
fn rfc3339_timestamps_carry_the_same_instant() {
    let output = run(SimConfig {
        rfc3339_timestamps: true,
        sessions: Some(200),
        ..small(3)
    });
    for record in output.records.iter().step_by(7) {
        let event = json(record);
        let text = str_field(&event, "ts");
        let parsed = chrono::DateTime::parse_from_rfc3339(text).expect("ts should be RFC 3339");
        assert_eq!(parsed.timestamp_millis(), record.ts_ms);
        assert!(text.ends_with('Z'), "{text}");
    }
}

#[test]
fn the_catalog_comes_first_and_time_never_goes_backwards() {
    let run = funnel_run();
    assert_eq!(run.time_reversals, vec![]);
    assert_eq!(run.ts_mismatches, 0);
    assert_eq!(run.leading_catalog_events, run.config.items);
    let span_days =
        (run.truths.last().unwrap().start_ms - run.config.start_ms) as f64 / 86_400_000.0;
    // 5,000 shoppers returning every two days on average: 20,000 sessions take about 8 days.
    assert!(
        (6.0..11.0).contains(&span_days),
        "traffic spanned {span_days:.1} days"
    );
}

#[test]
fn funnel_rates_match_a_real_shop() {
    let stats = &funnel_run().stats;
    let conversion = stats.conversion_rate();
    let abandonment = stats.cart_abandonment_rate();
    let click_through = stats.click_through_rate();
    let returns = stats.return_rate();
    let reviews = stats.review_rate();
    println!(
        "conversion {conversion:.4}, abandonment {abandonment:.4}, click-through {click_through:.4}, \
         returns {returns:.4}, reviews {reviews:.4}"
    );
    assert_eq!(stats.sessions, 20_000);
    assert!(
        (0.02..=0.04).contains(&conversion),
        "conversion {conversion}"
    );
    assert!(
        (0.60..=0.75).contains(&abandonment),
        "cart abandonment {abandonment}"
    );
    assert!(
        (0.015..=0.06).contains(&click_through),
        "click-through {click_through}"
    );
    assert!(
        (0.05..=0.10).contains(&returns),
        "returns per order line {returns}"
    );
    assert!(
        (0.05..=0.10).contains(&reviews),
        "reviews per order {reviews}"
    );
    assert!(stats.events("remove_from_cart") > 0 && stats.events("ticket") > 0);
}

#[test]
fn clicks_fall_off_down_the_list_and_concentrate_on_popular_items() {
    let run = funnel_run();
    let ctr_at = |position: usize| {
        run.clicks_by_position[position - 1] as f64
            / run.impressions_by_position[position - 1] as f64
    };
    let (first, third, tenth) = (ctr_at(1), ctr_at(3), ctr_at(10));
    assert!(
        first > 1.5 * third && third > 1.5 * tenth,
        "CTR at 1, 3, 10: {first:.4} {third:.4} {tenth:.4}"
    );

    let mut clicks: Vec<u64> = run.clicks_by_item.values().copied().collect();
    clicks.sort_unstable_by(|a, b| b.cmp(a));
    let total: u64 = clicks.iter().sum();
    let top_tenth: u64 = clicks.iter().take(run.config.items / 10).sum();
    let share = top_tenth as f64 / total as f64;
    assert!(
        share > 0.4,
        "the top 10% of items drew only {share:.2} of clicks"
    );
}

#[test]
fn session_truths_agree_with_the_events() {
    let run = funnel_run();
    assert_eq!(run.truths.len(), 20_000);
    assert_eq!(
        run.sessions.len(),
        20_000,
        "every session emits at least one event"
    );
    let mut probability_if_ordered = Vec::new();
    let mut probability_otherwise = Vec::new();
    for truth in &run.truths {
        let facts = &run.sessions[&truth.session_id];
        assert_eq!(
            (facts.first_ms, facts.last_ms),
            (truth.start_ms, truth.end_ms),
            "{truth:?}"
        );
        assert_eq!(facts.events, truth.events);
        assert!(
            truth.end_ms - truth.start_ms < 6 * 3_600_000,
            "a session lasting hours: {truth:?}"
        );
        assert!(truth.purchase_probability > 0.0 && truth.purchase_probability < 1.0);
        match &truth.order_id {
            Some(order_id) => {
                assert!(truth.ordered && !truth.cart_abandoned);
                assert_eq!(facts.order_ids, vec![order_id.clone()]);
                probability_if_ordered.push(truth.purchase_probability);
            }
            None => {
                assert!(!truth.ordered && facts.order_ids.is_empty());
                assert_eq!(truth.cart_abandoned, facts.net_cart_units > 0, "{truth:?}");
                probability_otherwise.push(truth.purchase_probability);
            }
        }
    }
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    let all: Vec<f64> = run
        .truths
        .iter()
        .map(|truth| truth.purchase_probability)
        .collect();
    // The outcome is drawn from the probability, so the probability is calibrated.
    let (expected, actual) = (mean(&all), run.stats.conversion_rate());
    assert!(
        (expected - actual).abs() < 0.005,
        "mean probability {expected:.4} vs conversion {actual:.4}"
    );
    let (buyers, others) = (mean(&probability_if_ordered), mean(&probability_otherwise));
    assert!(
        buyers > 3.0 * others,
        "buyers {buyers:.4}, others {others:.4}"
    );
}

#[test]
fn queries_carry_typos_mixed_case_and_get_retyped_after_finding_nothing() {
    let run = funnel_run();
    let total = run.queries.len() as f64;
    let mixed_case = run
        .queries
        .iter()
        .filter(|q| q.chars().any(char::is_uppercase))
        .count() as f64;
    let padded = run
        .queries
        .iter()
        .filter(|q| q.starts_with(' ') || q.ends_with(' ') || q.contains("  "))
        .count();
    assert!(
        (0.15..0.4).contains(&(mixed_case / total)),
        "mixed-case share {}",
        mixed_case / total
    );
    assert!(padded > 100, "{padded} queries with stray whitespace");
    let zero_result_share = run.zero_result_searches as f64 / total;
    assert!(
        (0.02..0.1).contains(&zero_result_share),
        "zero-result share {zero_result_share}"
    );
    // A shopper who found nothing mostly retypes the same words, fixing the typo: the pairs
    // a spelling corrector learns from.
    let normalise = |query: &str| {
        query
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    let corrections = run
        .retyped_queries
        .iter()
        .filter(|(failed, next)| {
            let distance = edit_distance(&normalise(failed), &normalise(next));
            (1..=2).contains(&distance)
        })
        .count();
    let corrected = corrections as f64 / run.zero_result_searches as f64;
    assert!(
        corrected > 0.6,
        "only {corrected:.2} of zero-result searches were retyped correctly"
    );
    let synonyms = ["trainers", "headset", "notebook", "kibble"];
    assert!(
        synonyms
            .iter()
            .all(|word| run.queries.iter().any(|q| q.to_lowercase().contains(word)))
    );
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != *b_char);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[test]
fn ratings_follow_latent_item_quality() {
    let run = funnel_run();
    let quality: BTreeMap<&str, f64> = run
        .catalog
        .iter()
        .map(|item| (item.item_id.as_str(), item.quality))
        .collect();
    let mean_quality = |keep: fn(u64) -> bool| {
        let picked: Vec<f64> = run
            .reviews
            .iter()
            .filter(|(_, rating)| keep(*rating))
            .map(|(item, _)| quality[item.as_str()])
            .collect();
        picked.iter().sum::<f64>() / picked.len() as f64
    };
    let (praised, panned) = (
        mean_quality(|rating| rating >= 4),
        mean_quality(|rating| rating <= 2),
    );
    assert!(
        praised > panned + 0.1,
        "quality of 4-5 star items {praised:.3}, of 1-2 star items {panned:.3}"
    );
}

#[test]
fn the_catalog_looks_like_a_shop() {
    let catalog = &funnel_run().catalog;
    let top_levels: BTreeSet<&str> = catalog
        .iter()
        .map(|item| item.category.split('/').next().unwrap())
        .collect();
    assert_eq!(top_levels.len(), 8);
    let median_price = |leaf: &str| {
        let mut prices: Vec<i64> = catalog
            .iter()
            .filter(|item| item.category.ends_with(leaf))
            .map(|item| item.price_cents)
            .collect();
        prices.sort_unstable();
        prices[prices.len() / 2]
    };
    assert!(median_price("/laptops") > 20 * median_price("/t-shirts"));
    let sold_out =
        catalog.iter().filter(|item| item.stock == 0).count() as f64 / catalog.len() as f64;
    assert!(
        (0.01..0.15).contains(&sold_out),
        "sold-out share {sold_out}"
    );
    let item = catalog
        .iter()
        .find(|item| item.category == "electronics/audio/headphones")
        .unwrap();
    assert!(
        item.title.starts_with(&item.brand) && item.title.contains("Headphones"),
        "{}",
        item.title
    );
    assert!(item.attributes.contains_key("color"));
}

#[test]
fn injected_faults_have_the_requested_shares_and_break_the_contract() {
    let output = run(SimConfig {
        invalid_rate: 0.05,
        duplicate_rate: 0.03,
        sessions: Some(5_000),
        ..small(21)
    });
    let total = output.records.len() as f64;
    let mut by_reason: BTreeMap<InvalidReason, u32> = BTreeMap::new();
    let mut duplicates = 0;
    let mut earlier_valid: BTreeMap<String, &SimRecord> = BTreeMap::new();
    for record in &output.records {
        match record.kind {
            RecordKind::Valid => {
                earlier_valid.insert(str_field(&json(record), "event_id").to_owned(), record);
            }
            RecordKind::Duplicate => {
                duplicates += 1;
                let event = json(record);
                let original = earlier_valid[str_field(&event, "event_id")];
                assert_eq!(original.payload, record.payload);
                assert!(record.ts_ms >= original.ts_ms);
            }
            RecordKind::Invalid(reason) => {
                *by_reason.entry(reason).or_default() += 1;
                assert!(record.json().is_none());
                assert!(!record.payload.contains(&b'\n'));
                assert_breaks_contract(reason, &record.payload);
            }
        }
    }
    let invalid_share = by_reason.values().sum::<u32>() as f64 / total;
    let duplicate_share = f64::from(duplicates) / total;
    assert!(
        (invalid_share - 0.05).abs() < 0.005,
        "invalid share {invalid_share}"
    );
    assert!(
        (duplicate_share - 0.03).abs() < 0.004,
        "duplicate share {duplicate_share}"
    );
    assert_eq!(
        by_reason.len(),
        InvalidReason::ALL.len(),
        "every kind of fault shows up: {by_reason:?}"
    );
}

fn assert_breaks_contract(reason: InvalidReason, payload: &[u8]) {
    let parsed = serde_json::from_slice::<Value>(payload);
    if reason == InvalidReason::NotJson {
        assert!(parsed.is_err(), "{}", String::from_utf8_lossy(payload));
        return;
    }
    let event = parsed.expect("only NotJson faults are unparseable");
    let broken = match reason {
        InvalidReason::NotJson => unreachable!(),
        InvalidReason::MissingEventId => event.get("event_id").is_none(),
        InvalidReason::OversizedEventId => event["event_id"].as_str().unwrap().len() > 128,
        InvalidReason::MissingUserId => event.get("user_id").is_none() && event["type"] != "item",
        InvalidReason::UnknownType => !["search", "impression", "click", "item"]
            .iter()
            .chain(&BROWSING_TYPES)
            .chain(&["review", "return"])
            .any(|known| event["type"] == *known),
        InvalidReason::NegativePrice => event["lines"][0]["price"].as_f64().unwrap() < 0.0,
        InvalidReason::RatingOutOfRange => !(1..=5).contains(&event["rating"].as_i64().unwrap()),
        InvalidReason::BadTimestamp => event["ts"]
            .as_str()
            .is_some_and(|ts| chrono::DateTime::parse_from_rfc3339(ts).is_err()),
        InvalidReason::OversizedQuery => event["query"].as_str().unwrap().len() > 512,
        InvalidReason::WrongFieldType => event["quantity"].is_string(),
    };
    assert!(broken, "{reason:?} fault looks valid: {event}");
}

#[test]
fn without_session_ids_a_30_minute_inactivity_rule_recovers_the_sessions() {
    let with_ids = run(small(8));
    let without_ids = run(SimConfig {
        omit_session_ids: true,
        ..small(8)
    });
    assert_eq!(with_ids.records.len(), without_ids.records.len());
    let mut true_sessions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut recovered: Vec<Vec<String>> = Vec::new();
    let mut open_by_user: BTreeMap<String, (i64, usize)> = BTreeMap::new();
    for (labelled, bare) in with_ids.records.iter().zip(&without_ids.records) {
        let (labelled, bare) = (json(labelled), json(bare));
        assert!(bare.get("session_id").is_none());
        let Some(session_id) = labelled["session_id"].as_str() else {
            continue;
        };
        let event_id = str_field(&bare, "event_id").to_owned();
        true_sessions
            .entry(session_id.to_owned())
            .or_default()
            .push(event_id.clone());
        let user = str_field(&bare, "user_id").to_owned();
        let ts = bare["ts"].as_i64().unwrap();
        match open_by_user.get_mut(&user) {
            Some((last_ms, session)) if ts - *last_ms <= 30 * 60_000 => {
                *last_ms = ts;
                recovered[*session].push(event_id);
            }
            _ => {
                recovered.push(vec![event_id]);
                open_by_user.insert(user, (ts, recovered.len() - 1));
            }
        }
    }
    let expected: BTreeSet<Vec<String>> = true_sessions.into_values().collect();
    let actual: BTreeSet<Vec<String>> = recovered.into_iter().collect();
    assert_eq!(expected.len(), 1_500);
    assert!(
        expected == actual,
        "the 30-minute rule split or merged sessions"
    );
}

#[test]
fn an_endless_stream_keeps_going_past_any_session_count() {
    let config = SimConfig {
        sessions: None,
        collect_truths: false,
        ..small(2)
    };
    let mut simulator = Simulator::new(config).unwrap();
    let records: Vec<SimRecord> = simulator.by_ref().take(30_000).collect();
    assert_eq!(records.len(), 30_000);
    assert!(
        records
            .windows(2)
            .all(|pair| pair[0].ts_ms <= pair[1].ts_ms)
    );
    assert!(
        simulator.take_finished_truths().is_empty(),
        "truths are not kept when collect_truths is off"
    );
}

#[test]
fn invalid_configs_are_refused() {
    let error = Simulator::new(SimConfig {
        users: 0,
        ..SimConfig::default()
    })
    .err()
    .expect("zero users is refused");
    assert_eq!(error.to_string(), "users must be at least 1");
}
