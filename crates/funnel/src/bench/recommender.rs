//! `funnel bench recommender`: the real recommender binary on a real broker and Redis,
//! asked for lists by a closed loop of concurrent callers.
//!
//! The state it serves from is real: simulated traffic goes through ingest's own
//! pipeline in this process (user keys, co-visitation, bought-together and category
//! popularity land in Redis under the run's prefix), the catalog records and canonical
//! events are produced to the run's topics, and the recommender reads them as in
//! production (the catalog whole, the events in its group). Then `clients` callers each
//! send `Recommend` and wait for the answer before sending the next, for `secs` seconds
//! after a warm-up: latency percentiles (HdrHistogram), requests per second, the
//! service's CPU time (so requests per CPU-second, the rate one core reaches), resident
//! memory, candidates scored per request and Redis calls per request.

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use funnel_bus::{OutRecord, Producer};
use funnel_core::pb;
use funnel_proto::pb::recommender::v1::recommender_client::RecommenderClient;
use funnel_proto::pb::recommender::v1::{RecommendRequest, Scenario};
use hdrhistogram::Histogram;
use prost::Message as _;
use tonic::transport::Channel;

use super::{Fresh, Ingested, ServiceChild, ServiceEnv, Target, sibling_binary};

#[derive(clap::Args)]
pub struct RecommenderArgs {
    #[command(flatten)]
    target: Target,
    /// Canonical events of simulated traffic behind the state served.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Concurrent callers, each waiting for its answer before the next request.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds measured, after a warm-up of 3 s.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// Items asked for per request.
    #[arg(long, default_value_t = 10)]
    count: u32,
    /// Partitions of the events topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// The recommender binary (default: next to this one).
    #[arg(long)]
    recommender_bin: Option<PathBuf>,
    /// Passed as `models.root`, and its `rules.toml` as `rules.file` (default: the
    /// service's, `models` under the working directory).
    #[arg(long)]
    models_root: Option<PathBuf>,
    /// Passed as `models.runtime_library` (default: the service's).
    #[arg(long)]
    onnxruntime: Option<PathBuf>,
    /// Log filter of the recommender child.
    #[arg(long, default_value = "warn")]
    log_filter: String,
    /// Where the recommender child's log goes (default: discarded).
    #[arg(long)]
    log: Option<PathBuf>,
}

/// The recommendations log topic, under the run's prefix.
const RECOMMENDATIONS: &str = "funnel.recommendations.v1";
/// Records per produce call.
const CHUNK: usize = 5_000;
/// Calls before the measured span, not recorded.
const WARM_UP: Duration = Duration::from_secs(3);
/// Most distinct users asked about (the latest active ones).
const USERS: usize = 5_000;

pub async fn run(args: RecommenderArgs) -> anyhow::Result<()> {
    let Fresh {
        prefix,
        topics,
        kafka,
    } = Fresh::create(&args.target, args.partitions, &[RECOMMENDATIONS]).await?;
    println!(
        "funnel bench recommender: state from {} simulated events, then {} clients for {} s (count {}); broker {}, redis {}",
        args.events, args.clients, args.secs, args.count, args.target.kafka, args.target.redis
    );

    // 1. The state: features in Redis, catalog and events on the run's topics.
    let started = Instant::now();
    let Ingested { events, catalog } =
        Ingested::simulated(&args.target.redis, &prefix, &topics, args.events as usize).await?;
    let (users, items) = users_and_items(&events, &catalog);
    println!(
        "  simulate→ingest pipeline (in-process) {:>7.0} events/s  ({} catalog records, {} items, {} users asked about)",
        events.len() as f64 / started.elapsed().as_secs_f64(),
        catalog.len(),
        items.len(),
        users.len()
    );
    let producer = Producer::new(&kafka)?;
    for chunk in catalog.chunks(CHUNK).chain(events.chunks(CHUNK)) {
        producer.send_all(chunk).await?;
    }

    // 2. The recommender, once it has read the catalog and the events.
    let bin = sibling_binary(args.recommender_bin, "recommender")?;
    let models_root = args.models_root.unwrap_or_else(|| "models".into());
    let mut extra = vec![
        ("FUNNEL_TOPICS__EVENTS", topics.events.clone()),
        ("FUNNEL_TOPICS__CATALOG", topics.catalog.clone()),
        (
            "FUNNEL_TOPICS__RECOMMENDATIONS",
            format!("{prefix}.{RECOMMENDATIONS}"),
        ),
        ("FUNNEL_MODELS__ROOT", models_root.display().to_string()),
        (
            "FUNNEL_RULES__FILE",
            models_root.join("rules.toml").display().to_string(),
        ),
    ];
    if let Some(lib) = &args.onnxruntime {
        extra.push(("FUNNEL_MODELS__RUNTIME_LIBRARY", lib.display().to_string()));
    }
    let mut child = ServiceChild::spawn(
        &bin,
        &ServiceEnv::new(&args.target, &prefix, "recommender", &args.log_filter),
        &extra,
        args.log.as_deref(),
    )?;
    let name = "recommender";
    let rss_ready = child.wait_ready(name).await?;
    let stream = child
        .follow(name, "recommender_events_in_total", events.len() as f64)
        .await?;
    let in_catalog = child.counter("recommender_catalog_items").await;
    println!(
        "  recommender ready                {rss_ready:>9.1} MiB resident; {in_catalog:.0} items in its catalog"
    );
    println!(
        "  its event stream from backlog    {:>9.0} events/s  ({:.2} cores; purchases and attribution)",
        stream.rate(),
        stream.cores()
    );

    // 3. The closed loop: a warm-up, then the measured span.
    let channel = Channel::from_shared(format!("http://{}", child.grpc))?
        .connect()
        .await
        .context("cannot connect to the recommender")?;
    let plan = Plan {
        users,
        items,
        count: args.count,
    };
    closed_loop(&channel, &plan, args.clients, WARM_UP).await?;
    let before = Sample::take(&child, &args.target.redis).await?;
    let started = Instant::now();
    let measured = closed_loop(
        &channel,
        &plan,
        args.clients,
        Duration::from_secs(args.secs),
    )
    .await?;
    let secs = started.elapsed().as_secs_f64();
    let after = Sample::take(&child, &args.target.redis).await?;

    let requests = measured.latencies.len() as f64;
    let cpu = after.cpu_secs - before.cpu_secs;
    let ms = |q: f64| measured.latencies.value_at_quantile(q) as f64 / 1000.0;
    let delta = |f: fn(&Sample) -> f64| f(&after) - f(&before);
    println!(
        "  closed loop, {} clients           {:>9.0} requests/s  ({requests:.0} requests in {secs:.1} s, {} failed)",
        args.clients,
        requests / secs,
        measured.failed
    );
    println!(
        "  Recommend latency ms             p50 {:.2}  p99 {:.2}  p999 {:.2}  max {:.2}  (client side, count {})",
        ms(0.5),
        ms(0.99),
        ms(0.999),
        measured.latencies.max() as f64 / 1000.0,
        args.count
    );
    println!(
        "  recommender CPU                  {:>9.2} cores  ({:.0} requests per CPU-second)",
        cpu / secs,
        requests / cpu.max(1e-3)
    );
    println!(
        "  recommender resident memory MiB  before the span {:.1}; after {:.1}; peak since start {:.1}",
        before.rss_mib, after.rss_mib, after.rss_peak_mib
    );
    println!(
        "  per request                      {:.0} candidates scored; {:.2} ms in the service (mean); Redis: {:.2} script calls (round trips), {:.2} commands run (inside scripts included)",
        delta(|s| s.candidates_sum) / delta(|s| s.candidates_count).max(1.0),
        1000.0 * delta(|s| s.service_sum) / delta(|s| s.service_count).max(1.0),
        delta(|s| s.redis_scripts) / requests.max(1.0),
        delta(|s| s.redis_calls) / requests.max(1.0),
    );
    child.terminate();
    Ok(())
}

/// The latest distinct users of the events (newest first) and the catalog's items.
fn users_and_items(events: &[OutRecord], catalog: &[OutRecord]) -> (Vec<String>, Vec<String>) {
    let mut seen = HashSet::new();
    let users = events
        .iter()
        .rev()
        .filter_map(|r| pb::Event::decode(r.payload.as_slice()).ok())
        .map(|e| e.user_id)
        .filter(|u| !u.is_empty() && seen.insert(u.clone()))
        .take(USERS)
        .collect();
    let mut seen = HashSet::new();
    let items = catalog
        .iter()
        .filter_map(|r| r.key.as_ref())
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .filter(|i| seen.insert(i.clone()))
        .collect();
    (users, items)
}

/// What the callers ask: request `n` is about user `n mod users`, for the home page when
/// `n` is even and for the page of an item otherwise.
struct Plan {
    users: Vec<String>,
    items: Vec<String>,
    count: u32,
}

impl Plan {
    fn request(&self, n: usize) -> RecommendRequest {
        let item_page = n % 2 == 1 && !self.items.is_empty();
        RecommendRequest {
            user_id: self.users[n % self.users.len()].clone(),
            scenario: if item_page {
                Scenario::ItemPage
            } else {
                Scenario::Home
            } as i32,
            context_item_id: if item_page {
                self.items[(n / 2).wrapping_mul(7919) % self.items.len()].clone()
            } else {
                String::new()
            },
            count: self.count,
            ..RecommendRequest::default()
        }
    }
}

/// Latencies in µs of the answered requests, and the requests that failed.
struct Measured {
    latencies: Histogram<u64>,
    failed: u64,
}

/// `clients` callers, each sending its next request when the last is answered, for `span`.
async fn closed_loop(
    channel: &Channel,
    plan: &Plan,
    clients: usize,
    span: Duration,
) -> anyhow::Result<Measured> {
    anyhow::ensure!(!plan.users.is_empty(), "no users to ask about");
    let deadline = Instant::now() + span;
    let callers = (0..clients).map(|c| {
        let mut client = RecommenderClient::new(channel.clone());
        async move {
            let mut measured = Measured {
                latencies: Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?,
                failed: 0,
            };
            let mut n = c;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match client.recommend(plan.request(n)).await {
                    Ok(_) => measured
                        .latencies
                        .saturating_record(sent.elapsed().as_micros() as u64),
                    Err(_) => measured.failed += 1,
                }
                n += clients;
            }
            anyhow::Ok(measured)
        }
    });
    let mut all = Measured {
        latencies: Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?,
        failed: 0,
    };
    for measured in futures::future::join_all(callers).await {
        let measured = measured?;
        all.latencies.add(&measured.latencies)?;
        all.failed += measured.failed;
    }
    Ok(all)
}

/// Counters read before and after the measured span.
struct Sample {
    cpu_secs: f64,
    rss_mib: f64,
    rss_peak_mib: f64,
    candidates_sum: f64,
    candidates_count: f64,
    service_sum: f64,
    service_count: f64,
    redis_scripts: f64,
    redis_calls: f64,
}

impl Sample {
    async fn take(child: &ServiceChild, redis: &str) -> anyhow::Result<Sample> {
        let (redis_scripts, redis_calls) = redis_command_calls(redis)?;
        let (rss_mib, rss_peak_mib) = crate::probe::rss_mib(child.pid()).unwrap_or_default();
        Ok(Sample {
            cpu_secs: crate::probe::cpu_seconds(child.pid()).unwrap_or(0.0),
            rss_mib,
            rss_peak_mib,
            candidates_sum: child
                .counter("recommender_candidates_per_request_sum")
                .await,
            candidates_count: child
                .counter("recommender_candidates_per_request_count")
                .await,
            service_sum: child.counter("recommender_request_seconds_sum").await,
            service_count: child.counter("recommender_request_seconds_count").await,
            redis_scripts,
            redis_calls,
        })
    }
}

/// Redis's calls of `EVALSHA` and of all commands so far (`INFO commandstats`). The
/// measured span has no other client but the recommender (its popularity refresh
/// included).
fn redis_command_calls(url: &str) -> anyhow::Result<(f64, f64)> {
    let addr = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_string();
    let mut stream = std::net::TcpStream::connect(&addr)
        .with_context(|| format!("cannot connect to redis at {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"INFO commandstats\r\n")?;
    // A bulk string: `$<len>\r\n<len bytes>\r\n`.
    let mut reply = Vec::new();
    let mut buf = [0u8; 8192];
    let body = loop {
        let n = stream.read(&mut buf)?;
        anyhow::ensure!(n > 0, "redis closed the connection");
        reply.extend_from_slice(&buf[..n]);
        let Some(eol) = reply.windows(2).position(|w| w == b"\r\n") else {
            continue;
        };
        let len: usize = std::str::from_utf8(&reply[1..eol])?.parse()?;
        if reply.len() >= eol + 2 + len {
            break String::from_utf8_lossy(&reply[eol + 2..eol + 2 + len]).into_owned();
        }
    };
    let (mut scripts, mut all) = (0.0, 0.0);
    for line in body.lines() {
        // cmdstat_evalsha:calls=12,usec=...
        let Some((name, stats)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let calls = stats
            .split(',')
            .find_map(|kv| kv.strip_prefix("calls="))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if name == "info" {
            continue;
        }
        all += calls;
        if name == "evalsha" {
            scripts += calls;
        }
    }
    Ok((scripts, all))
}
