//! Lanes: one consumer's batches processed by several workers at once, with offsets
//! still stored in order.
//!
//! A batch is split by message key into one part per lane, so the messages of one key
//! (one user) stay in order and in one lane; each lane processes its parts one after
//! another while the others do the same, so Redis round trips, inference and produce
//! acknowledgements of different parts overlap, and the next batch is fetched while
//! earlier ones are still in hand. A batch's offsets are stored once every part of it,
//! and every batch before it, is done (head-of-line), so a crash replays from the oldest
//! unfinished batch: at-least-once, as with one batch at a time.
//!
//! A lane processes a part by one attempt of [`Lane::process`]; a failed attempt is
//! retried with exponential backoff until it succeeds or shutdown begins. Messages a
//! [`Lanes::with_prelude`] predicate selects (catalog records, say) are processed by the
//! dispatcher itself before the batch's other messages are handed out, so those see them.

use std::collections::VecDeque;
use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

use funnel_runtime::Shutdown;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use tokio::sync::mpsc;

use crate::{BatchConsumer, Offsets};

/// A worker that processes parts of batches.
pub trait Lane: Send + 'static {
    type Error: Display + Send;

    /// One attempt at processing `messages` (all of them, or none of their effects
    /// visible to a replay); an error makes the lane retry the same part.
    fn process(
        &mut self,
        messages: &[OwnedMessage],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// How batches are formed and failures retried.
#[derive(Debug, Clone)]
pub struct LaneSettings {
    /// Messages per batch at most.
    pub batch_max: usize,
    /// How long a batch waits for more messages once it has one.
    pub linger: Duration,
    /// The longest wait between two attempts at a failed part.
    pub retry_backoff_max: Duration,
    /// Batches fetched whose offsets are not stored yet, at most: more overlap fetching
    /// with processing (throughput); fewer keep a fetched message from waiting behind
    /// batches still in hand, and let batches grow instead when the lanes are busy
    /// (latency).
    pub max_inflight: usize,
}

/// Batches waiting in a lane's queue: enough to keep it busy while the dispatcher
/// fetches the next batch, few enough to bound memory.
const LANE_QUEUE: usize = 2;

/// The batch metrics of a lanes consumer, registered under the service's prefix.
#[derive(Clone)]
pub struct BatchMetrics {
    pub events_in: Counter,
    pub batch_retries: Counter,
    pub batch_seconds: Histogram,
    pub batch_size: Histogram,
}

impl Default for BatchMetrics {
    fn default() -> Self {
        BatchMetrics {
            events_in: Counter::default(),
            batch_retries: Counter::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 17)),
        }
    }
}

impl BatchMetrics {
    /// Registers `events_in` (described as `consumed`), `batch_retries`,
    /// `batch_seconds` and `batch_size` in `registry`.
    pub fn register(&self, registry: &mut Registry, consumed: &str) {
        registry.register("events_in", consumed, self.events_in.clone());
        registry.register(
            "batch_retries",
            "Batch attempts that failed and were retried",
            self.batch_retries.clone(),
        );
        registry.register(
            "batch_seconds",
            "Time from fetching a batch to storing its offsets",
            self.batch_seconds.clone(),
        );
        registry.register("batch_size", "Messages per batch", self.batch_size.clone());
    }
}

/// Which messages of a batch the prelude takes.
pub type Takes = fn(&OwnedMessage) -> bool;

/// The lanes of one consumer, and the optional prelude.
pub struct Lanes<L: Lane> {
    lanes: Vec<L>,
    prelude: Option<(L, Takes)>,
}

impl<L: Lane> Lanes<L> {
    pub fn new(lanes: Vec<L>) -> Self {
        Lanes {
            lanes,
            prelude: None,
        }
    }

    /// Messages `takes` selects are processed by `lane` before the rest of their batch
    /// is handed out.
    pub fn with_prelude(mut self, lane: L, takes: Takes) -> Self {
        self.prelude = Some((lane, takes));
        self
    }

    /// Consumes until `shutdown`, or until a lane stops unexpectedly (an error). On
    /// shutdown each lane finishes the part in hand; parts not done are not stored, so
    /// the partitions' next owner replays them.
    pub async fn run(
        self,
        consumer: &BatchConsumer,
        settings: &LaneSettings,
        metrics: &BatchMetrics,
        shutdown: &Shutdown,
    ) -> Result<(), LanesError> {
        if self.lanes.is_empty() {
            return Err(LanesError::NoLanes);
        }
        let max_inflight = settings.max_inflight.max(1);
        let retry = Retry {
            max_backoff: settings.retry_backoff_max,
            retries: metrics.batch_retries.clone(),
            shutdown: shutdown.clone(),
        };
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<u64>();
        // A JoinSet, so that the lanes end with this task even when it is aborted.
        let mut running = tokio::task::JoinSet::new();
        let lanes = self
            .lanes
            .into_iter()
            .map(|lane| {
                let (tx, rx) = mpsc::channel::<Part>(LANE_QUEUE);
                running.spawn(run_lane(lane, rx, done_tx.clone(), retry.clone()));
                tx
            })
            .collect::<Vec<_>>();
        drop(done_tx);
        let mut prelude = self.prelude;

        let mut inflight = Inflight::default();
        let mut outcome = Ok(());
        // One fetch at a time, kept across iterations: dropping a fetch that already
        // took messages would skip them.
        let fetch = || consumer.next_batch(settings.batch_max, settings.linger);
        let mut fetching = Box::pin(fetch());
        'batches: loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(seq) = done_rx.recv() => inflight.part_done(seq, consumer, metrics),
                batch = &mut fetching, if inflight.batches.len() < max_inflight => {
                    fetching.set(fetch());
                    let batch = match batch {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::warn!(error = %e, "consume failed; retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    };
                    metrics.events_in.inc_by(batch.len() as u64);
                    metrics.batch_size.observe(batch.len() as f64);
                    let offsets = Offsets::of(&batch);
                    let (first, parts) = split(batch, lanes.len(), prelude.as_ref().map(|p| p.1));
                    if let Some((lane, _)) = prelude.as_mut()
                        && !first.is_empty()
                        && !retry.run(lane, &first).await
                    {
                        break;
                    }
                    let parts = parts
                        .into_iter()
                        .enumerate()
                        .filter(|(_, messages)| !messages.is_empty())
                        .collect::<Vec<_>>();
                    let seq = inflight.add(offsets, parts.len());
                    for (lane, messages) in parts {
                        if lanes[lane].send(Part { seq, messages }).await.is_err() {
                            // A lane stops early only on shutdown, or when it failed.
                            if !shutdown.is_triggered() {
                                outcome = Err(LanesError::LaneStopped(lane));
                            }
                            break 'batches;
                        }
                    }
                    inflight.store_finished(consumer, metrics);
                }
            }
        }

        drop(lanes);
        while let Some(ended) = running.join_next().await {
            if let Err(e) = ended {
                tracing::error!(error = %e, "lane failed");
                outcome = Err(LanesError::LaneFailed(e.to_string()));
            }
        }
        while let Ok(seq) = done_rx.try_recv() {
            inflight.part_done(seq, consumer, metrics);
        }
        outcome
    }
}

/// Why consuming through lanes ended other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum LanesError {
    #[error("no lanes to process batches")]
    NoLanes,
    #[error("lane {0} stopped unexpectedly")]
    LaneStopped(usize),
    #[error("a lane failed: {0}")]
    LaneFailed(String),
}

/// One lane's share of a batch.
struct Part {
    seq: u64,
    messages: Vec<OwnedMessage>,
}

/// Processes parts in arrival order until its queue closes or shutdown.
async fn run_lane<L: Lane>(
    mut lane: L,
    mut parts: mpsc::Receiver<Part>,
    done: mpsc::UnboundedSender<u64>,
    retry: Retry,
) {
    while let Some(part) = parts.recv().await {
        if retry.shutdown.is_triggered() || !retry.run(&mut lane, &part.messages).await {
            break;
        }
        let _ = done.send(part.seq);
    }
}

/// Retries a part until it is processed.
#[derive(Clone)]
struct Retry {
    max_backoff: Duration,
    retries: Counter,
    shutdown: Shutdown,
}

impl Retry {
    /// Processes `messages`, retrying with backoff until it succeeds; false if shutdown
    /// came first (the part is not done).
    async fn run<L: Lane>(&self, lane: &mut L, messages: &[OwnedMessage]) -> bool {
        let mut backoff = Duration::from_millis(50);
        loop {
            let Err(e) = lane.process(messages).await else {
                return true;
            };
            self.retries.inc();
            tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "batch failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.cancelled() => return false,
            }
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }
}

/// Batches handed to the lanes, oldest first.
#[derive(Default)]
struct Inflight {
    next_seq: u64,
    batches: VecDeque<Pending>,
}

struct Pending {
    seq: u64,
    offsets: Offsets,
    parts_left: usize,
    started: Instant,
}

impl Inflight {
    fn add(&mut self, offsets: Offsets, parts: usize) -> u64 {
        self.next_seq += 1;
        self.batches.push_back(Pending {
            seq: self.next_seq,
            offsets,
            parts_left: parts,
            started: Instant::now(),
        });
        self.next_seq
    }

    fn part_done(&mut self, seq: u64, consumer: &BatchConsumer, metrics: &BatchMetrics) {
        if let Some(b) = self.batches.iter_mut().find(|b| b.seq == seq) {
            b.parts_left -= 1;
        }
        self.store_finished(consumer, metrics);
    }

    /// Stores the offsets of finished batches at the head: a batch's offsets never pass
    /// an unfinished earlier batch's.
    fn store_finished(&mut self, consumer: &BatchConsumer, metrics: &BatchMetrics) {
        while self.batches.front().is_some_and(|b| b.parts_left == 0) {
            let b = self.batches.pop_front().expect("checked above");
            if let Err(e) = consumer.store(&b.offsets) {
                tracing::warn!(error = %e, "failed to store offsets");
            }
            metrics
                .batch_seconds
                .observe(b.started.elapsed().as_secs_f64());
        }
    }
}

/// The messages the prelude takes, and the rest in `n` parts by key hash (keyless
/// messages in part 0).
fn split(
    batch: Vec<OwnedMessage>,
    n: usize,
    prelude: Option<Takes>,
) -> (Vec<OwnedMessage>, Vec<Vec<OwnedMessage>>) {
    let mut first = Vec::new();
    let mut parts = vec![Vec::with_capacity(batch.len() / n + 1); n];
    for m in batch {
        if prelude.is_some_and(|takes| takes(&m)) {
            first.push(m);
            continue;
        }
        let part = m
            .key()
            .map_or(0, |k| xxhash_rust::xxh3::xxh3_64(k) as usize % n);
        parts[part].push(m);
    }
    (first, parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn message(key: Option<&str>, offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            Some(b"x".to_vec()),
            key.map(|k| k.as_bytes().to_vec()),
            "t".into(),
            Timestamp::NotAvailable,
            0,
            offset,
            None,
        )
    }

    #[test]
    fn a_key_always_lands_in_the_same_part_and_order_is_kept() {
        let batch = (0..40)
            .map(|i| message(Some(&format!("u-{}", i % 7)), i))
            .chain([message(None, 40)])
            .collect::<Vec<_>>();
        let (first, parts) = split(batch, 3, None);
        assert!(first.is_empty());
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 41);
        for user in 0..7 {
            let key = format!("u-{user}");
            let holding = parts
                .iter()
                .filter(|p| p.iter().any(|m| m.key() == Some(key.as_bytes())))
                .collect::<Vec<_>>();
            assert_eq!(holding.len(), 1, "{key} is split over lanes");
            let offsets = holding[0]
                .iter()
                .filter(|m| m.key() == Some(key.as_bytes()))
                .map(|m| m.offset())
                .collect::<Vec<_>>();
            assert!(
                offsets.windows(2).all(|w| w[0] < w[1]),
                "{key}: {offsets:?}"
            );
        }
        assert!(
            parts[0].iter().any(|m| m.offset() == 40),
            "keyless goes to part 0"
        );
        assert!(
            parts.iter().all(|p| !p.is_empty()),
            "7 keys spread over 3 lanes"
        );
    }

    #[test]
    fn the_prelude_takes_what_its_predicate_selects() {
        let batch = vec![
            message(Some("item-1"), 0),
            message(Some("u-1"), 1),
            message(Some("item-2"), 2),
        ];
        let (first, parts) = split(
            batch,
            2,
            Some(|m| m.key().is_some_and(|k| k.starts_with(b"item"))),
        );
        assert_eq!(first.iter().map(|m| m.offset()).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 1);
    }
}
