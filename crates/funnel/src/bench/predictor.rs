//! `funnel bench predictor`: the real behavior-predictor binary on a real broker and
//! Redis.
//!
//! The input is what ingest would publish: simulated traffic goes through ingest's own
//! [`ingest::pipeline::Processor`] in this process (which also writes the catalog records
//! `P:i:{item}` the predictor reads), and the resulting canonical events are produced to
//! a fresh topic. Then:
//! 1. throughput: a backlog of canonical events is produced before the predictor starts,
//!    and the predictor is timed from its first to its last consumed event;
//! 2. latency: more canonical events are produced at a fixed rate, each stamped with
//!    `ingest_ts_ms` when it is handed to the producer, and a consumer of the predictions
//!    topic measures from that moment to when it reads the prediction naming the event
//!    (also by 2-second window of sending, and up to the prediction's `prediction_ts_ms`);
//!    the same events through the broker alone (to a topic of their own, read back by a
//!    plain consumer, before the predictor starts) show what one broker hop costs, and the
//!    predictor's histograms where its own time goes.
//!
//! Not every event gets a prediction: with `predictor.debounce_ms` > 0 (default 1000)
//! only a session's latest event in a batch is scored, and only when at least that much
//! event time passed since the session's last published prediction.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use funnel_bus::{BatchConsumer, ConsumerMetrics, KafkaConfig, Message, OutRecord, Producer};
use funnel_core::pb::{self, EventType};
use funnel_proto::pb::behavior::v1::IntentPrediction;
use hdrhistogram::Histogram;
use prost::Message as _;

use super::{Fresh, Ingested, ServiceChild, ServiceEnv, Target, sibling_binary};

#[derive(clap::Args)]
pub struct PredictorArgs {
    #[command(flatten)]
    target: Target,
    /// Canonical events in the backlog the throughput is measured on.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Offered rate of the latency run, events per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Length of the latency run, in seconds.
    #[arg(long, default_value_t = 10)]
    latency_secs: u64,
    /// Partitions of the events and predictions topics.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// The behavior-predictor binary (default: next to this one).
    #[arg(long)]
    predictor_bin: Option<PathBuf>,
    /// Passed as `models.root` (default: the service's, `models` under the working directory).
    #[arg(long)]
    models_root: Option<PathBuf>,
    /// Passed as `models.runtime_library` (default: the service's).
    #[arg(long)]
    onnxruntime: Option<PathBuf>,
    /// Passed as `predictor.debounce_ms` (default: the service's, 1000).
    #[arg(long)]
    debounce_ms: Option<u64>,
    /// Swap the intent model this many seconds into the latency run: the predictor then
    /// serves a copy of the models root whose intent version 2 is version 1 under another
    /// name, watched every second, and latency around the swap is reported apart.
    #[arg(long)]
    swap_at_secs: Option<u64>,
    /// Log filter of the predictor child.
    #[arg(long, default_value = "warn")]
    log_filter: String,
    /// Where the predictor child's log goes (default: discarded).
    #[arg(long)]
    log: Option<PathBuf>,
}

/// The predictions topic, under the run's prefix.
const PREDICTIONS: &str = "funnel.predictions.behavior.v1";
/// The topic of the broker-alone run, under the run's prefix.
const HOP: &str = "funnel.bench.hop";
/// Events the broker-alone reader reads before the paced run starts (its group joined).
const HOP_WARMUP: usize = 100;
/// Events per produce call of the backlog.
const CHUNK: usize = 5_000;
/// `fetch.wait.max.ms` of the consumer that reads predictions back.
const READER_FETCH_WAIT_MS: &str = "5";
/// The paced producer sends a slice of events this often.
const TICK: Duration = Duration::from_millis(5);

pub async fn run(args: PredictorArgs) -> anyhow::Result<()> {
    let Fresh {
        prefix,
        topics,
        kafka,
    } = Fresh::create(&args.target, args.partitions, &[PREDICTIONS, HOP]).await?;
    let predictions = format!("{prefix}.{PREDICTIONS}");
    let paced_events = args.rate * args.latency_secs;
    println!(
        "funnel bench predictor: {} backlog events, then {} s at {} events/s; {} partitions, broker {}, redis {}",
        args.events,
        args.latency_secs,
        args.rate,
        args.partitions,
        args.target.kafka,
        args.target.redis
    );

    // 0. Canonical events as ingest makes them, catalog records in Redis.
    let started = Instant::now();
    let Ingested {
        events: mut canonical,
        ..
    } = Ingested::simulated(
        &args.target.redis,
        &prefix,
        &topics,
        (args.events + paced_events) as usize,
    )
    .await?;
    println!(
        "  simulate→ingest pipeline (in-process) {:>7.0} events/s  (canonical events prepared, catalog in Redis)",
        canonical.len() as f64 / started.elapsed().as_secs_f64()
    );
    let paced = canonical.split_off(args.events as usize);
    let backlog = canonical;
    let user_events = |records: &[OutRecord]| {
        records
            .iter()
            .filter(|r| decode_event(r).is_some_and(|e| e.r#type() != EventType::Item))
            .count()
    };
    let backlog_user_events = user_events(&backlog);

    // 1. The backlog, produced before the predictor starts.
    let producer = Producer::new(&kafka)?;
    let started = Instant::now();
    for chunk in backlog.chunks(CHUNK) {
        producer.send_all(chunk).await?;
    }
    println!(
        "  produce canonical backlog        {:>9.0} events/s  ({} events, {} of them user events)",
        backlog.len() as f64 / started.elapsed().as_secs_f64(),
        backlog.len(),
        backlog_user_events
    );

    // 2. The broker alone: the latency run's events, at its rate, to a topic of their own
    // read back by a plain consumer, before the predictor starts. Event → prediction
    // makes two such hops (the event in, the prediction out).
    let hop_topic = format!("{prefix}.{HOP}");
    let to_hop = |records: &[OutRecord]| {
        records
            .iter()
            .map(|r| OutRecord {
                topic: hop_topic.clone(),
                ..r.clone()
            })
            .collect::<Vec<_>>()
    };
    producer
        .send_all(&to_hop(&backlog[..HOP_WARMUP.min(backlog.len())]))
        .await?;
    let hop = LatencyReader::start(
        &args.target.kafka,
        &format!("{prefix}-hop"),
        &hop_topic,
        HOP_WARMUP.min(backlog.len()) as u64,
        event_of,
    )
    .await?;
    let started = Instant::now();
    let (hop_offered, _) = produce_paced(&producer, to_hop(&paced), args.rate, &hop.sent).await?;
    let hop_rate = hop_offered as f64 / started.elapsed().as_secs_f64();
    let hop = hop.finish().await?;
    let hop_windows = hop.by_window()?;
    let hop = hop.all;
    println!(
        "  one broker hop alone at {hop_rate:.0} events/s  p50 {:.1}  p99 {:.1}  p999 {:.1}  max {:.1} ms  (producer → broker → plain consumer, nothing else running)",
        ms(&hop, 0.5),
        ms(&hop, 0.99),
        ms(&hop, 0.999),
        hop.max() as f64 / 1000.0,
    );
    print_windows(&hop_windows);

    // 3. The predictor binary, timed from its first to its last consumed event.
    let bin = sibling_binary(args.predictor_bin, "behavior-predictor")?;
    let mut extra = vec![
        ("FUNNEL_TOPICS__EVENTS", topics.events.clone()),
        ("FUNNEL_TOPICS__PREDICTIONS", predictions.clone()),
    ];
    let models_root = args.models_root.clone().unwrap_or_else(|| "models".into());
    let swap = match args.swap_at_secs {
        Some(at) => Some((
            SwapCopy::create(&models_root, &prefix)?,
            Duration::from_secs(at),
        )),
        None => None,
    };
    match &swap {
        Some((copy, _)) => {
            extra.push(("FUNNEL_MODELS__ROOT", copy.root.display().to_string()));
            extra.push(("FUNNEL_MODELS__RELOAD_SECS", "1".into()));
        }
        None => extra.push(("FUNNEL_MODELS__ROOT", models_root.display().to_string())),
    }
    if let Some(lib) = &args.onnxruntime {
        extra.push(("FUNNEL_MODELS__RUNTIME_LIBRARY", lib.display().to_string()));
    }
    if let Some(ms) = args.debounce_ms {
        extra.push(("FUNNEL_PREDICTOR__DEBOUNCE_MS", ms.to_string()));
    }
    let mut child = ServiceChild::spawn(
        &bin,
        &ServiceEnv::new(&args.target, &prefix, "predictor", &args.log_filter),
        &extra,
        args.log.as_deref(),
    )?;
    let name = "behavior-predictor";
    let rss_ready = child.wait_ready(name).await?;
    let run = child
        .follow(name, "behavior_events_in_total", backlog.len() as f64)
        .await?;
    // The last batch is counted when fetched: wait until its predictions are out.
    let published = settled(&child, "behavior_predictions_total").await;
    if run.events > 0.0 {
        println!(
            "  behavior-predictor from backlog  {:>9.0} events/s  ({:.2} cores, {:.0} events per CPU-second)",
            run.rate(),
            run.cores(),
            run.per_cpu_second()
        );
    } else {
        println!(
            "  behavior-predictor from backlog    not timed  (all {} events were in before its first count: too few to time)",
            backlog.len()
        );
    }
    println!(
        "  predictions published            {published:>9.0}  ({:.1}% of {backlog_user_events} user events; debounced {:.0})",
        100.0 * published / backlog_user_events.max(1) as f64,
        child.counter("behavior_debounced_total").await
    );
    println!(
        "  predictor resident memory MiB    ready {rss_ready:.1}; end {:.1}; peak {:.1}",
        run.rss_end, run.rss_peak
    );

    // 4. Latency at a fixed offered rate, read back from the predictions topic.
    let reader = LatencyReader::start(
        &args.target.kafka,
        &format!("{prefix}-latency"),
        &predictions,
        published as u64,
        prediction_of,
    )
    .await?;
    let parts0 = Parts::read(&child).await;
    let cpu0 = crate::probe::cpu_seconds(child.pid()).unwrap_or(0.0);
    let cpu_windows = CpuWindows::start(
        args.target.broker_pid,
        child.pid(),
        args.latency_secs.div_ceil(WINDOW_SECS),
    );
    let started = Instant::now();
    let swapping = swap.as_ref().map(|(copy, at)| {
        let (serving, at, swapped) = (copy.serving(), *at, Arc::clone(&reader.swapped));
        tokio::spawn(async move {
            tokio::time::sleep(at).await;
            *swapped.lock().expect("lock") = Some(Instant::now());
            SwapCopy::serve(&serving, "2")
        })
    });
    let (offered, tracked) = produce_paced(&producer, paced, args.rate, &reader.sent).await?;
    if let Some(task) = swapping {
        task.await??;
    }
    let offered_rate = offered as f64 / started.elapsed().as_secs_f64();
    child
        .follow(
            name,
            "behavior_events_in_total",
            (backlog.len() + offered) as f64,
        )
        .await?;
    settled(&child, "behavior_predictions_total").await;
    let cores = (crate::probe::cpu_seconds(child.pid()).unwrap_or(0.0) - cpu0)
        / started.elapsed().as_secs_f64();
    let parts = Parts::read(&child).await.since(&parts0);
    let read = reader.finish().await?;
    let windows = read.by_window()?;
    let Latencies {
        all: latencies,
        around_swap,
        by_version,
        made,
        ..
    } = read;
    println!(
        "  latency run: offered {offered_rate:.0} events/s for {:.1} s ({offered} events, {tracked} user events); predictor {cores:.2} cores",
        offered as f64 / offered_rate
    );
    println!(
        "  event→prediction latency ms      p50 {:.1}  p99 {:.1}  p999 {:.1}  max {:.1}  ({} predictions = {:.1}% of user events)",
        ms(&latencies, 0.5),
        ms(&latencies, 0.99),
        ms(&latencies, 0.999),
        latencies.max() as f64 / 1000.0,
        latencies.len(),
        100.0 * latencies.len() as f64 / tracked.max(1) as f64
    );
    print_windows(&windows);
    cpu_windows.print().await?;
    println!(
        "    until the prediction was made   p50 {:.0}  p99 {:.0}  p999 {:.0} ms  (its prediction_ts_ms, ms resolution: before it is published and read back)",
        ms(&made, 0.5),
        ms(&made, 0.99),
        ms(&made, 0.999),
    );
    let mean_ms = |histogram: &str| parts.mean(histogram) * 1000.0;
    println!(
        "  predictor batches, means         {:.1} ms from fetch to offsets stored, {:.0} events; per lane part: Redis read {:.1} ms, inference {:.1} ms, publish until acknowledged {:.1} ms, Redis write {:.1} ms",
        mean_ms("behavior_batch_seconds"),
        parts.mean("behavior_batch_size"),
        mean_ms("behavior_read_seconds"),
        mean_ms("behavior_inference_seconds"),
        mean_ms("behavior_publish_seconds"),
        mean_ms("behavior_write_seconds"),
    );
    if swap.is_some() {
        println!(
            "  around the swap (events sent {SWAP_WINDOW_BEFORE:?} before to {SWAP_WINDOW_AFTER:?} after): p50 {:.1}  p99 {:.1}  max {:.1}  ({} predictions)",
            ms(&around_swap, 0.5),
            ms(&around_swap, 0.99),
            around_swap.max() as f64 / 1000.0,
            around_swap.len()
        );
        let mut versions = by_version.into_iter().collect::<Vec<_>>();
        versions.sort();
        for (version, n) in versions {
            println!("  predictions by intent version {version}: {n}");
        }
    }
    child.terminate();
    Ok(())
}

/// p50/p99 of each window of the run, on one line: how latency moves as the run goes on.
fn print_windows(windows: &[Histogram<u64>]) {
    let line = windows
        .iter()
        .enumerate()
        .map(|(n, h)| {
            let from = n as u64 * WINDOW_SECS;
            format!(
                "{from}–{}s {:.1}/{:.1}",
                from + WINDOW_SECS,
                ms(h, 0.5),
                ms(h, 0.99)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    println!("    p50/p99 ms by send time          {line}");
}

/// Cores used by the broker, the predictor and the whole machine in each window of the
/// latency run: on a machine they share, whether the broker or the predictor is what
/// runs out of CPU as the run goes on.
struct CpuWindows(tokio::task::JoinHandle<Vec<[Option<f64>; 3]>>);

/// Columns of a [`CpuWindows`] sample.
const BROKER: usize = 0;
const PREDICTOR: usize = 1;
const MACHINE: usize = 2;

impl CpuWindows {
    fn start(broker: Option<u32>, predictor: u32, windows: u64) -> Self {
        CpuWindows(tokio::spawn(async move {
            // In column order: BROKER, PREDICTOR, MACHINE.
            let read = || {
                [
                    broker.and_then(crate::probe::cpu_seconds),
                    crate::probe::cpu_seconds(predictor),
                    crate::probe::machine_busy_seconds(),
                ]
            };
            let started = tokio::time::Instant::now();
            let mut last = read();
            let mut cores = Vec::new();
            for n in 1..=windows {
                tokio::time::sleep_until(started + Duration::from_secs(n * WINDOW_SECS)).await;
                let now = read();
                cores.push(std::array::from_fn(|i| {
                    Some((now[i]? - last[i]?) / WINDOW_SECS as f64)
                }));
                last = now;
            }
            cores
        }))
    }

    async fn print(self) -> anyhow::Result<()> {
        let windows = self.0.await?;
        let column = |i: usize| {
            windows
                .iter()
                .map(|w| w[i].map_or("?".into(), |c| format!("{c:.2}")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let broker = if windows.iter().any(|w| w[BROKER].is_some()) {
            format!("broker {}; ", column(BROKER))
        } else {
            String::new()
        };
        println!(
            "    cores by {WINDOW_SECS} s of sending        {broker}predictor {}; whole machine {} of {}",
            column(PREDICTOR),
            column(MACHINE),
            std::thread::available_parallelism().map_or(0, usize::from)
        );
        Ok(())
    }
}

/// Quantile `q` of a histogram of µs, in ms.
fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn decode_event(record: &OutRecord) -> Option<pb::Event> {
    pb::Event::decode(record.payload.as_slice()).ok()
}

/// Produces `records` at `rate` per second in slices every [`TICK`], stamping each event's
/// `ingest_ts_ms` and noting in `sent` when its slice was handed to the producer.
/// Returns the events produced and how many of them were user events (tracked).
async fn produce_paced(
    producer: &Producer,
    records: Vec<OutRecord>,
    rate: u64,
    sent: &Sent,
) -> anyhow::Result<(usize, usize)> {
    let per_tick = ((rate as f64 * TICK.as_secs_f64()).round() as usize).max(1);
    let started = Instant::now();
    let mut sends = Vec::new();
    let (mut offered, mut tracked) = (0, 0);
    for slice in records.chunks(per_tick) {
        let now = Instant::now();
        let now_ms = funnel_core::now_ms();
        let mut stamped = Vec::with_capacity(slice.len());
        for record in slice {
            let Some(mut event) = decode_event(record) else {
                continue;
            };
            event.ingest_ts_ms = now_ms;
            if event.r#type() != EventType::Item {
                sent.lock()
                    .expect("lock")
                    .insert(event.event_id.clone(), (now, now_ms));
                tracked += 1;
            }
            stamped.push(OutRecord {
                payload: event.encode_to_vec(),
                ..record.clone()
            });
        }
        offered += stamped.len();
        // Acknowledgements are awaited aside, so a slow one does not hold the pace.
        let producer = producer.clone();
        sends.push(tokio::spawn(
            async move { producer.send_all(&stamped).await },
        ));
        let due = Duration::from_secs_f64(offered as f64 / rate.max(1) as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    for send in sends {
        send.await??;
    }
    Ok((offered, tracked))
}

/// Events handed to the producer: when (monotonic, and wall-clock ms), by event id.
type Sent = Mutex<HashMap<String, (Instant, i64)>>;

/// What a latency reader takes from a message.
struct Answer {
    /// The event the message is about.
    event_id: String,
    /// The model version that answered it (empty for the events themselves).
    version: String,
    /// When the prediction was made (`prediction_ts_ms`), for predictions.
    made_ms: Option<i64>,
}

type Decode = fn(&[u8]) -> Option<Answer>;

fn prediction_of(payload: &[u8]) -> Option<Answer> {
    let p = IntentPrediction::decode(payload).ok()?;
    Some(Answer {
        event_id: p.event_id,
        version: p.model_version,
        made_ms: Some(p.prediction_ts_ms),
    })
}

fn event_of(payload: &[u8]) -> Option<Answer> {
    let e = pb::Event::decode(payload).ok()?;
    Some(Answer {
        event_id: e.event_id,
        version: String::new(),
        made_ms: None,
    })
}

/// Reads a topic and records, for each event in `sent`, the time from its send to the
/// first message about it (its prediction, or the event itself).
struct LatencyReader {
    sent: Arc<Sent>,
    /// When the model swap was asked for, if it was.
    swapped: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<anyhow::Result<Latencies>>,
}

/// Event → prediction latencies in µs: all of them, those of events sent around the
/// swap, and predictions counted by model version.
struct Latencies {
    all: Histogram<u64>,
    around_swap: Histogram<u64>,
    by_version: HashMap<String, u64>,
    /// From the send to the prediction's `prediction_ts_ms` (ms resolution): before its
    /// publish and the reader's fetch.
    made: Histogram<u64>,
    /// Every latency with its event's send time, for [`Latencies::by_window`].
    samples: Vec<(Instant, u64)>,
}

/// The windows latencies are also reported by, in seconds of the run.
const WINDOW_SECS: u64 = 2;

impl Latencies {
    /// Latencies by the [`WINDOW_SECS`] window of the run their event was sent in.
    fn by_window(&self) -> anyhow::Result<Vec<Histogram<u64>>> {
        let Some(first) = self.samples.iter().map(|(at, _)| *at).min() else {
            return Ok(Vec::new());
        };
        let mut windows = Vec::new();
        for (at, us) in &self.samples {
            let window = (at.duration_since(first).as_secs() / WINDOW_SECS) as usize;
            while windows.len() <= window {
                windows.push(Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?);
            }
            windows[window].saturating_record(*us);
        }
        Ok(windows)
    }
}

/// The window around a model swap whose events' latencies are reported apart.
const SWAP_WINDOW_BEFORE: Duration = Duration::from_secs(1);
const SWAP_WINDOW_AFTER: Duration = Duration::from_secs(3);

impl LatencyReader {
    /// Subscribes as `group` and returns once the `earlier` messages already on the topic
    /// are read, so the latency run starts with the reader caught up.
    async fn start(
        brokers: &str,
        group: &str,
        topic: &str,
        earlier: u64,
        decode: Decode,
    ) -> anyhow::Result<LatencyReader> {
        let mut config = KafkaConfig::new(brokers, group);
        // The measuring consumer must not add latency of its own: a broker that holds an
        // empty fetch for librdkafka's default 500 ms would otherwise be measured too.
        config
            .options
            .insert("fetch.wait.max.ms".into(), READER_FETCH_WAIT_MS.into());
        let consumer = BatchConsumer::subscribe(&config, &[topic], ConsumerMetrics::default())?;
        let mut read = 0u64;
        while read < earlier {
            let batch = tokio::time::timeout(
                Duration::from_secs(60),
                consumer.next_batch(10_000, Duration::from_millis(1)),
            )
            .await
            .with_context(|| {
                format!("reading the earlier messages of {topic} stalled for 60 s")
            })??;
            read += batch.len() as u64;
        }
        let sent = Arc::new(Sent::default());
        let swapped = Arc::new(Mutex::new(None::<Instant>));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (sent, swapped, stop) =
                (Arc::clone(&sent), Arc::clone(&swapped), Arc::clone(&stop));
            tokio::spawn(async move {
                let histogram = || Histogram::<u64>::new_with_bounds(1, 600_000_000, 3);
                let mut latencies = Latencies {
                    all: histogram()?,
                    around_swap: histogram()?,
                    by_version: HashMap::new(),
                    made: histogram()?,
                    samples: Vec::new(),
                };
                while !stop.load(Ordering::Relaxed) {
                    let Ok(batch) = tokio::time::timeout(
                        Duration::from_millis(100),
                        consumer.next_batch(10_000, Duration::from_millis(1)),
                    )
                    .await
                    else {
                        continue;
                    };
                    let read_at = Instant::now();
                    let swapped_at = *swapped.lock().expect("lock");
                    let mut sent = sent.lock().expect("lock");
                    for m in batch? {
                        let Some(answer) = decode(m.payload().unwrap_or_default()) else {
                            continue;
                        };
                        let Some((at, at_ms)) = sent.remove(&answer.event_id) else {
                            continue;
                        };
                        let us = read_at.duration_since(at).as_micros() as u64;
                        latencies.all.saturating_record(us);
                        latencies.samples.push((at, us));
                        if let Some(made_ms) = answer.made_ms {
                            let made_us = (made_ms - at_ms).max(0) as u64 * 1000;
                            latencies.made.saturating_record(made_us);
                        }
                        if !answer.version.is_empty() {
                            *latencies.by_version.entry(answer.version).or_default() += 1;
                        }
                        if swapped_at.is_some_and(|s| {
                            at + SWAP_WINDOW_BEFORE >= s && at <= s + SWAP_WINDOW_AFTER
                        }) {
                            latencies.around_swap.saturating_record(us);
                        }
                    }
                }
                Ok(latencies)
            })
        };
        Ok(LatencyReader {
            sent,
            swapped,
            stop,
            task,
        })
    }

    /// Waits a moment for predictions still in flight, then stops reading.
    async fn finish(self) -> anyhow::Result<Latencies> {
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.stop.store(true, Ordering::Relaxed);
        self.task.await?
    }
}

/// The predictor's histograms whose means the latency run prints.
const HISTOGRAMS: [&str; 6] = [
    "behavior_batch_seconds",
    "behavior_batch_size",
    "behavior_read_seconds",
    "behavior_inference_seconds",
    "behavior_publish_seconds",
    "behavior_write_seconds",
];

/// Sum and count of each of [`HISTOGRAMS`], in that order, to average over a span.
struct Parts(Vec<(f64, f64)>);

impl Parts {
    async fn read(child: &ServiceChild) -> Parts {
        let mut read = Vec::with_capacity(HISTOGRAMS.len());
        for name in HISTOGRAMS {
            read.push((
                child.counter(&format!("{name}_sum")).await,
                child.counter(&format!("{name}_count")).await,
            ));
        }
        Parts(read)
    }

    fn since(&self, before: &Parts) -> Parts {
        let delta = self.0.iter().zip(&before.0);
        Parts(delta.map(|(a, b)| (a.0 - b.0, a.1 - b.1)).collect())
    }

    /// The mean of `histogram`, one of [`HISTOGRAMS`].
    fn mean(&self, histogram: &str) -> f64 {
        let at = HISTOGRAMS
            .iter()
            .position(|h| *h == histogram)
            .expect("one of HISTOGRAMS");
        let (sum, count) = self.0[at];
        sum / count.max(1.0)
    }
}

/// The child's counter `metric` once two reads 500 ms apart agree.
async fn settled(child: &ServiceChild, metric: &str) -> f64 {
    let mut last = child.counter(metric).await;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = child.counter(metric).await;
        if now == last {
            return now;
        }
        last = now;
    }
}

/// A copy of the models root whose intent version 2 is version 1 under another name,
/// removed when dropped.
struct SwapCopy {
    root: PathBuf,
}

impl SwapCopy {
    fn create(models_root: &std::path::Path, prefix: &str) -> anyhow::Result<SwapCopy> {
        let root = std::env::temp_dir().join(format!("{prefix}-models"));
        for (from, to) in [
            ("intent/1", "intent/1"),
            ("intent/1", "intent/2"),
            ("repurchase/1", "repurchase/1"),
        ] {
            let (from, to) = (models_root.join(from), root.join(to));
            std::fs::create_dir_all(&to)?;
            for entry in std::fs::read_dir(&from)
                .with_context(|| format!("cannot read {}", from.display()))?
            {
                let entry = entry?;
                std::fs::copy(entry.path(), to.join(entry.file_name()))?;
            }
        }
        let card = root.join("intent/2/model.json");
        let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&card)?)?;
        json["version"] = "2".into();
        std::fs::write(&card, serde_json::to_vec_pretty(&json)?)?;
        Ok(SwapCopy { root })
    }

    fn serving(&self) -> PathBuf {
        self.root.join("intent/serving")
    }

    /// Points the intent model at `version` in one step (a rename), as an operator would.
    fn serve(serving: &std::path::Path, version: &str) -> anyhow::Result<()> {
        let staged = serving.with_extension("staged");
        std::fs::write(&staged, format!("{version}\n"))?;
        std::fs::rename(&staged, serving)?;
        Ok(())
    }
}

impl Drop for SwapCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
