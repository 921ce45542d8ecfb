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
//! A part is done in two stages. [`Lane::process`] does the work that later parts depend
//! on (the state written, the outputs handed to the producer); a failed attempt is
//! retried with exponential backoff until it succeeds or shutdown begins. The lane then
//! takes its next part while the [`Lane::Finish`] it returned waits for what is left
//! (the broker's acknowledgements); the part's offsets count as done only when that
//! resolves. A lane whose finish is ready at once has one stage. Messages a
//! [`Lanes::with_prelude`] predicate selects (catalog records, say) are processed by the
//! dispatcher itself before the batch's other messages are handed out, so those see them.

use std::collections::VecDeque;
use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

use funnel_runtime::Shutdown;
use futures::FutureExt as _;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use tokio::sync::mpsc;

use crate::backoff::Backoff;
use crate::{BatchConsumer, Offsets};

/// A worker that processes parts of batches.
pub trait Lane: Send + 'static {
    type Error: Display + Send;
    /// What is left of a processed part: resolves true once its effects are durable, or
    /// false if it gave up at shutdown (its offsets are then not stored, and a replay
    /// must complete it).
    type Finish: Future<Output = bool> + Send + 'static;

    /// One attempt at processing `messages` (all of them, or none of their effects
    /// visible to a replay); an error makes the lane retry the same part.
    fn process(
        &mut self,
        messages: &[OwnedMessage],
    ) -> impl Future<Output = Result<Self::Finish, Self::Error>> + Send;
}

/// The [`Lane::Finish`] of a lane whose parts are durable once processed.
pub type Done = std::future::Ready<bool>;

/// A finished part, for [`Lane::process`] of such a lane.
pub fn done() -> Done {
    std::future::ready(true)
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
    /// Batches fetched and not yet processed by every lane, at most: more overlap
    /// fetching with processing (throughput); fewer keep a fetched message from waiting
    /// behind batches still in hand, and let batches grow instead when the lanes are
    /// busy (latency). Batches processed and still finishing do not count.
    pub max_inflight: usize,
}

/// Batches waiting in a lane's queue: enough to keep it busy while the dispatcher
/// fetches the next batch, few enough to bound memory.
const LANE_QUEUE: usize = 2;

/// Parts one lane has processed and not yet finished, at most; the lane waits for one
/// of them to finish before it takes another part.
const LANE_FINISHING: usize = 8;

/// Batches whose offsets are not stored yet, at most, whatever their stage.
const MAX_UNSTORED: usize = 16;

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
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Progress>();
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

        let mut inflight = Inflight::<Offsets>::default();
        let mut outcome = Ok(());
        // One fetch at a time, kept across iterations: dropping a fetch that already
        // took messages would skip them.
        let fetch = || consumer.next_batch(settings.batch_max, settings.linger);
        let mut fetching = Box::pin(fetch());
        'batches: loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(progress) = done_rx.recv() => inflight.progress(progress, consumer, metrics),
                // A lane returns before its queue closes only at shutdown (handled above)
                // or by panicking: its parts would never finish and the batches behind
                // them never be stored, so the consumer stops instead of stalling.
                Some(ended) = running.join_next() => {
                    outcome = Err(lane_failed(ended.err()));
                    break;
                }
                batch = &mut fetching, if inflight.may_fetch(max_inflight) => {
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
                    {
                        let Some(finish) = retry.run(lane, &first).await else {
                            break;
                        };
                        if !finish.await {
                            break;
                        }
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
                outcome = Err(lane_failed(Some(e)));
            }
        }
        while let Ok(progress) = done_rx.try_recv() {
            inflight.progress(progress, consumer, metrics);
        }
        outcome
    }
}

/// A lane's task that panicked (`Some`) or returned before its queue closed, logged, as
/// the error consuming ends with.
fn lane_failed(panic: Option<tokio::task::JoinError>) -> LanesError {
    let reason = panic.map_or_else(
        || "a lane returned before shutdown".into(),
        |e| e.to_string(),
    );
    tracing::error!(error = %reason, "lane failed");
    LanesError::LaneFailed(reason)
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

/// How far a part of batch `seq` has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// [`Lane::process`] succeeded: the lane is free for the next part.
    Processed(u64),
    /// Its [`Lane::Finish`] resolved true: the part is durable.
    Finished(u64),
}

/// Processes parts in arrival order until its queue closes or shutdown, while the parts
/// it processed finish (also while it processes the next, retries included); waits for
/// those before it returns.
async fn run_lane<L: Lane>(
    mut lane: L,
    mut parts: mpsc::Receiver<Part>,
    progress: mpsc::UnboundedSender<Progress>,
    retry: Retry,
) {
    let mut finishing = FuturesUnordered::new();
    let finished = |(seq, durable): (u64, bool)| {
        if durable {
            let _ = progress.send(Progress::Finished(seq));
        }
    };
    loop {
        tokio::select! {
            Some(part) = finishing.next() => finished(part),
            part = parts.recv(), if finishing.len() < LANE_FINISHING => {
                let Some(part) = part else { break };
                if retry.shutdown.is_triggered() {
                    break;
                }
                let processing = retry.run(&mut lane, &part.messages);
                tokio::pin!(processing);
                let finish = loop {
                    tokio::select! {
                        finish = &mut processing => break finish,
                        Some(earlier) = finishing.next() => finished(earlier),
                    }
                };
                let Some(finish) = finish else { break };
                let _ = progress.send(Progress::Processed(part.seq));
                finishing.push(finish.map(move |durable| (part.seq, durable)));
            }
        }
    }
    while let Some(part) = finishing.next().await {
        finished(part);
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
    /// Processes `messages`, retrying with backoff until it succeeds; `None` if
    /// shutdown came first (the part is not done).
    async fn run<L: Lane>(&self, lane: &mut L, messages: &[OwnedMessage]) -> Option<L::Finish> {
        let mut backoff = Backoff::new(self.max_backoff);
        loop {
            let e = match lane.process(messages).await {
                Ok(finish) => return Some(finish),
                Err(e) => e,
            };
            self.retries.inc();
            tracing::warn!(error = %e, backoff_ms = backoff.next().as_millis() as u64, "batch failed; retrying");
            if !backoff.wait(&self.shutdown).await {
                return None;
            }
        }
    }
}

/// Batches handed to the lanes, oldest first, with their offsets `T`.
struct Inflight<T> {
    next_seq: u64,
    batches: VecDeque<Pending<T>>,
}

impl<T> Default for Inflight<T> {
    fn default() -> Self {
        Inflight {
            next_seq: 0,
            batches: VecDeque::new(),
        }
    }
}

struct Pending<T> {
    seq: u64,
    offsets: T,
    /// Parts not yet processed.
    processing: usize,
    /// Parts not yet finished.
    finishing: usize,
    started: Instant,
}

impl<T> Inflight<T> {
    fn add(&mut self, offsets: T, parts: usize) -> u64 {
        self.next_seq += 1;
        self.batches.push_back(Pending {
            seq: self.next_seq,
            offsets,
            processing: parts,
            finishing: parts,
            started: Instant::now(),
        });
        self.next_seq
    }

    /// Whether another batch may be fetched: fewer than `max_inflight` batches are
    /// still being processed, and fewer than [`MAX_UNSTORED`] wait for their offsets.
    fn may_fetch(&self, max_inflight: usize) -> bool {
        let processing = self.batches.iter().filter(|b| b.processing > 0).count();
        processing < max_inflight && self.batches.len() < MAX_UNSTORED
    }

    fn advance(&mut self, progress: Progress) {
        let seq = match progress {
            Progress::Processed(seq) | Progress::Finished(seq) => seq,
        };
        let Some(b) = self.batches.iter_mut().find(|b| b.seq == seq) else {
            return;
        };
        match progress {
            Progress::Processed(_) => b.processing -= 1,
            Progress::Finished(_) => b.finishing -= 1,
        }
    }

    /// The batches at the head whose every part is finished, oldest first: a batch's
    /// offsets never pass an unfinished earlier batch's.
    fn take_finished(&mut self) -> impl Iterator<Item = Pending<T>> + '_ {
        std::iter::from_fn(|| {
            self.batches
                .front()
                .is_some_and(|b| b.finishing == 0)
                .then(|| self.batches.pop_front())
                .flatten()
        })
    }
}

impl Inflight<Offsets> {
    fn progress(&mut self, progress: Progress, consumer: &BatchConsumer, metrics: &BatchMetrics) {
        self.advance(progress);
        self.store_finished(consumer, metrics);
    }

    /// Stores the offsets of the finished batches at the head.
    fn store_finished(&mut self, consumer: &BatchConsumer, metrics: &BatchMetrics) {
        for b in self.take_finished() {
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
    fn a_processed_batch_frees_the_fetch_but_its_offsets_wait_until_every_part_finished() {
        let mut inflight = Inflight::<&str>::default();
        let first = inflight.add("first", 2);
        assert!(
            !inflight.may_fetch(1),
            "one batch in processing is the limit"
        );
        inflight.advance(Progress::Processed(first));
        assert!(!inflight.may_fetch(1), "a part is still being processed");
        inflight.advance(Progress::Processed(first));
        assert!(inflight.may_fetch(1), "processed: the next batch may come");
        let second = inflight.add("second", 1);
        inflight.advance(Progress::Processed(second));
        inflight.advance(Progress::Finished(second));
        assert_eq!(
            inflight.take_finished().count(),
            0,
            "the second batch waits for the first"
        );
        inflight.advance(Progress::Finished(first));
        assert_eq!(inflight.take_finished().count(), 0, "one part left");
        inflight.advance(Progress::Finished(first));
        let stored = inflight
            .take_finished()
            .map(|b| b.offsets)
            .collect::<Vec<_>>();
        assert_eq!(stored, ["first", "second"]);
        assert!(inflight.batches.is_empty());
    }

    #[test]
    fn batches_waiting_for_their_offsets_are_bounded_too() {
        let mut inflight = Inflight::<usize>::default();
        for n in 0..MAX_UNSTORED {
            assert!(inflight.may_fetch(usize::MAX), "batch {n}");
            let seq = inflight.add(n, 1);
            inflight.advance(Progress::Processed(seq));
        }
        assert!(!inflight.may_fetch(usize::MAX));
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

    /// A lane whose parts wait at a gate while processed and finish when told.
    struct Scripted {
        finishes: VecDeque<tokio::sync::oneshot::Receiver<bool>>,
        gate: std::sync::Arc<tokio::sync::Semaphore>,
    }

    impl Lane for Scripted {
        type Error = String;
        type Finish = futures::future::BoxFuture<'static, bool>;

        fn process(
            &mut self,
            _: &[OwnedMessage],
        ) -> impl Future<Output = Result<Self::Finish, String>> + Send {
            let gate = std::sync::Arc::clone(&self.gate);
            let finish = self.finishes.pop_front().expect("a finish per part");
            async move {
                gate.acquire().await.expect("gate open").forget();
                Ok(finish.map(|told| told.unwrap_or(false)).boxed())
            }
        }
    }

    #[tokio::test]
    async fn a_lane_reports_a_finished_part_while_it_processes_the_next() {
        let (finish_1, finished_1) = tokio::sync::oneshot::channel();
        let (finish_2, finished_2) = tokio::sync::oneshot::channel();
        // Part 1 passes the gate at once; part 2 waits there until let through.
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
        let lane = Scripted {
            finishes: [finished_1, finished_2].into(),
            gate: std::sync::Arc::clone(&gate),
        };
        let (parts, queue) = mpsc::channel(LANE_QUEUE);
        let (progress, mut reported) = mpsc::unbounded_channel();
        let retry = Retry {
            max_backoff: Duration::from_millis(50),
            retries: Counter::default(),
            shutdown: Shutdown::new(),
        };
        let lane = tokio::spawn(run_lane(lane, queue, progress, retry));
        for seq in [1, 2] {
            let messages = vec![message(Some("u"), seq as i64)];
            parts.send(Part { seq, messages }).await.unwrap();
        }

        assert_eq!(reported.recv().await, Some(Progress::Processed(1)));
        // The lane now processes part 2 (held at the gate) when part 1 becomes durable.
        finish_1.send(true).unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), reported.recv())
            .await
            .expect("part 1 reported finished while part 2 is processed");
        assert_eq!(next, Some(Progress::Finished(1)));

        gate.add_permits(1);
        assert_eq!(reported.recv().await, Some(Progress::Processed(2)));
        drop(parts);
        // Part 2 gives up (shutdown): processed, never finished.
        finish_2.send(false).unwrap();
        lane.await.unwrap();
        assert_eq!(reported.recv().await, None);
    }

    /// A lane with a bug: it panics on its first part.
    struct Panics;

    impl Lane for Panics {
        type Error = String;
        type Finish = Done;

        async fn process(&mut self, _: &[OwnedMessage]) -> Result<Done, String> {
            panic!("a bug in the lane")
        }
    }

    #[tokio::test]
    async fn a_lane_that_panics_stops_the_consumer_with_an_error_instead_of_stalling_it() {
        // librdkafka's in-process mock cluster: one topic, one message.
        let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
        mock.create_topic("t", 1, 1).unwrap();
        let config = crate::KafkaConfig::new(&mock.bootstrap_servers(), "lanes-test");
        crate::Producer::new(&config)
            .unwrap()
            .send_all(&[crate::OutRecord::new("t", Some(b"u"), b"x".to_vec())])
            .await
            .unwrap();
        let consumer =
            BatchConsumer::subscribe(&config, &["t"], crate::ConsumerMetrics::default()).unwrap();
        let settings = LaneSettings {
            batch_max: 10,
            linger: Duration::from_millis(10),
            retry_backoff_max: Duration::from_millis(50),
            max_inflight: 1,
        };
        let (metrics, shutdown) = (BatchMetrics::default(), Shutdown::new());
        let run = Lanes::new(vec![Panics]).run(&consumer, &settings, &metrics, &shutdown);
        let outcome = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("the consumer stops instead of waiting for the dead lane");
        match outcome {
            Err(LanesError::LaneFailed(reason)) => {
                assert!(reason.contains("a bug in the lane"), "{reason}")
            }
            other => panic!("expected LaneFailed, got {other:?}"),
        }
        assert!(!shutdown.is_triggered());
    }
}
