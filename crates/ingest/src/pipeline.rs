//! One batch of raw messages to canonical events, DLQ entries and feature
//! writes.
//!
//! A batch is planned from one pipelined read of the store (user states,
//! dedup markers, unknown items), applied in one atomic write that re-checks
//! every marker, and only then published. If the publish fails, the batch is
//! retried: its markers now say "replay", so features are not written again
//! but the events are republished.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::Instant;

use funnel_bus::headers::{self, CONTENT_TYPE, DeadLetter};
use funnel_bus::{Message, OutRecord, OwnedHeaders, OwnedMessage, Topics};
use funnel_core::pb::{self, event::Payload};
use funnel_core::{ContentType, Limits, Rejection, SessionRules, TimeCheck, UserClock};
use funnel_store::batch::marker_session;
use funnel_store::{ApplyOutcome, Keys, MarkerState, Read, Store, StoreError, WriteBatch, Writer};
use lru::LruCache;
use prost::Message as _;

use crate::config::IngestSettings;
use crate::features::{FeatureWriter, ItemInfo, UserState};
use crate::metrics::{Metrics, ReasonLabel, TypeLabel};

/// Keys remembered as having their TTL (about 130 bytes each).
const TTL_KEYS: usize = 50_000;

/// How often a batch is re-planned after marker conflicts before it fails.
const MAX_CONFLICT_RETRIES: usize = 5;

/// What a batch produced, ready to publish.
#[derive(Debug, Default)]
pub struct BatchOutput {
    pub records: Vec<OutRecord>,
    /// Canonical events published, by type name.
    pub published: HashMap<&'static str, u64>,
    /// Messages dead-lettered, by reject code.
    pub dead_lettered: HashMap<&'static str, u64>,
    pub fresh: usize,
    pub replays: usize,
    pub duplicates: usize,
    pub rejected: usize,
}

enum Parsed {
    Event {
        event: Box<pb::Event>,
        origin: String,
    },
    Rejected(Rejection),
}

/// Turns batches of raw messages into outputs and feature writes.
pub struct Processor {
    keys: Keys,
    settings: IngestSettings,
    rules: SessionRules,
    limits: Limits,
    topics: Topics,
    writer: Writer,
    items: LruCache<String, ItemInfo>,
    ttl_set: LruCache<String, Instant>,
    /// The last batch's writes, cleared and reused for the next.
    spare: WriteBatch,
    metrics: Metrics,
}

impl Processor {
    pub fn new(
        keys: Keys,
        settings: IngestSettings,
        topics: Topics,
        store: Store,
        metrics: Metrics,
    ) -> Self {
        let rules = SessionRules {
            session_gap_ms: settings.session_gap_secs as i64 * 1000,
            max_lateness_ms: settings.max_lateness_secs as i64 * 1000,
            max_future_skew_ms: settings.max_future_skew_secs as i64 * 1000,
        };
        let limits = Limits {
            max_payload_bytes: settings.max_payload_bytes,
            ..Limits::default()
        };
        let cache = NonZeroUsize::new(settings.item_cache_size).unwrap_or(NonZeroUsize::MIN);
        let spare = WriteBatch::new(settings.dedup_window_secs);
        Processor {
            keys,
            settings,
            rules,
            limits,
            topics,
            writer: store.writer(),
            items: LruCache::new(cache),
            ttl_set: LruCache::new(NonZeroUsize::new(TTL_KEYS).expect("non-zero")),
            spare,
            metrics,
        }
    }

    /// Plans and applies one batch; returns what to publish. Nothing is
    /// published by this call, and on error nothing was written.
    pub async fn process(
        &mut self,
        batch: &[OwnedMessage],
        now_ms: i64,
    ) -> Result<BatchOutput, StoreError> {
        let parse = |this: &Self| {
            cpu_bound(|| {
                batch
                    .iter()
                    .map(|m| this.parse(m, now_ms))
                    .collect::<Vec<_>>()
            })
        };
        let mut parsed = Some(parse(self));
        for attempt in 0.. {
            let started = std::time::Instant::now();
            // Planning takes the parsed events; after a conflict they are parsed again
            // (rare) rather than copied on every batch.
            let parsed = parsed.take().unwrap_or_else(|| parse(self));
            let (wb, out) = self.plan(batch, parsed, now_ms).await?;
            let planned = started.elapsed();
            let outcome = self.writer.apply(&wb).await;
            self.spare = wb;
            match outcome? {
                ApplyOutcome::Applied => {
                    let applied = Instant::now();
                    for key in self.spare.ttl_keys() {
                        match self.ttl_set.get_mut(key) {
                            Some(set) => *set = applied,
                            None => {
                                self.ttl_set.put(key.to_owned(), applied);
                            }
                        }
                    }
                    tracing::debug!(
                        messages = batch.len(),
                        commands = self.spare.command_count(),
                        plan_ms = planned.as_secs_f64() * 1e3,
                        apply_ms = (started.elapsed() - planned).as_secs_f64() * 1e3,
                        "batch written"
                    );
                    self.count(&out);
                    return Ok(out);
                }
                ApplyOutcome::Conflict if attempt < MAX_CONFLICT_RETRIES => {
                    self.metrics.store_conflicts.inc();
                    tracing::info!(
                        attempt,
                        "dedup markers changed concurrently; re-planning the batch"
                    );
                }
                ApplyOutcome::Conflict => break,
            }
        }
        Err(StoreError::Reply {
            op: "apply",
            detail: format!("dedup markers kept changing after {MAX_CONFLICT_RETRIES} attempts"),
        })
    }

    fn parse(&self, m: &OwnedMessage, now_ms: i64) -> Parsed {
        let content_type = match ContentType::from_header(headers::get(m.headers(), CONTENT_TYPE)) {
            Ok(ct) => ct,
            Err(r) => return Parsed::Rejected(r),
        };
        match funnel_core::parse_event(m.payload().unwrap_or_default(), content_type, &self.limits)
        {
            Ok(mut event) => {
                event.ingest_ts_ms = now_ms;
                event.source = Some(pb::Source {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                });
                Parsed::Event {
                    event: Box::new(event),
                    origin: format!("{}/{}/{}", m.topic(), m.partition(), m.offset()),
                }
            }
            Err(r) => Parsed::Rejected(r),
        }
    }

    async fn plan(
        &mut self,
        batch: &[OwnedMessage],
        parsed: Vec<Parsed>,
        now_ms: i64,
    ) -> Result<(WriteBatch, BatchOutput), StoreError> {
        // One round trip: dedup markers (one MGET, index 0), user states,
        // items not cached.
        let mut markers = Vec::with_capacity(parsed.len());
        let mut marker_slot = Vec::with_capacity(parsed.len());
        for p in &parsed {
            match p {
                Parsed::Event { event, .. } => {
                    marker_slot.push(markers.len());
                    markers.push(self.keys.dedup(&event.event_id));
                }
                Parsed::Rejected(_) => marker_slot.push(usize::MAX),
            }
        }
        let mut reads = Vec::new();
        if !markers.is_empty() {
            reads.push(Read::MGet(markers));
        }
        let mut user_slot: HashMap<&str, usize> = HashMap::new();
        let mut item_slot: HashMap<String, usize> = HashMap::new();
        for p in &parsed {
            let Parsed::Event { event, .. } = p else {
                continue;
            };
            if !event.user_id.is_empty() && !matches!(event.payload, Some(Payload::Item(_))) {
                user_slot.entry(event.user_id.as_str()).or_insert_with(|| {
                    reads.push(Read::HGetAll(self.keys.user_state(&event.user_id)));
                    reads.len() - 1
                });
            }
            for item in referenced_items(event) {
                if !self.items.contains(item) && !item_slot.contains_key(item) {
                    item_slot.insert(item.to_string(), reads.len());
                    reads.push(Read::HMGet(
                        self.keys.item(item),
                        vec!["category".into(), "price".into()],
                    ));
                }
            }
        }
        let watched = match reads.first() {
            Some(Read::MGet(keys)) => keys.as_slice(),
            _ => &[],
        };
        let replies = self.writer.read_watching(watched, &reads).await?;
        // The marker keys are set again by the write; moved, not built twice.
        let marker_keys = match reads.into_iter().next() {
            Some(Read::MGet(keys)) => keys,
            _ => Vec::new(),
        };
        let user_slot: Vec<(String, usize)> = user_slot
            .into_iter()
            .map(|(user, slot)| (user.to_owned(), slot))
            .collect();
        Ok(cpu_bound(|| {
            self.compute(
                batch,
                parsed,
                marker_slot,
                marker_keys,
                user_slot,
                item_slot,
                replies,
                now_ms,
            )
        }))
    }

    /// The CPU part of planning, once the store's answers are in.
    #[allow(clippy::too_many_arguments)]
    fn compute(
        &mut self,
        batch: &[OwnedMessage],
        parsed: Vec<Parsed>,
        marker_slot: Vec<usize>,
        mut marker_keys: Vec<String>,
        user_slot: Vec<(String, usize)>,
        item_slot: HashMap<String, usize>,
        mut replies: Vec<funnel_store::Reply>,
        now_ms: i64,
    ) -> (WriteBatch, BatchOutput) {
        let mut states: HashMap<String, UserState> = user_slot
            .into_iter()
            .map(|(user, slot)| {
                let hash = std::mem::take(&mut replies[slot]).into_hash();
                (user, UserState::from_hash(hash))
            })
            .collect();
        let mut known_items: HashMap<String, ItemInfo> = HashMap::new();
        for (item, slot) in item_slot {
            let fields = std::mem::take(&mut replies[slot]).into_fields();
            if let [Some(category), price] = fields.as_slice() {
                let info = ItemInfo {
                    category: category.clone(),
                    price: price.as_deref().and_then(|p| p.parse().ok()).unwrap_or(0.0),
                };
                self.items.put(item, info);
            }
        }

        let marker_values = match replies.first_mut() {
            Some(reply @ funnel_store::Reply::Fields(_)) => std::mem::take(reply).into_fields(),
            _ => Vec::new(),
        };
        let fresh = WriteBatch::new(self.settings.dedup_window_secs);
        let mut wb = std::mem::replace(&mut self.spare, fresh);
        wb.clear();
        let mut out = BatchOutput::default();
        // Event ids applied by this batch: a second copy in it is a duplicate.
        let mut seen: std::collections::HashSet<String> = Default::default();
        let writer = FeatureWriter {
            keys: &self.keys,
            settings: &self.settings,
            ttl_set: &self.ttl_set,
            now: Instant::now(),
        };
        for ((m, p), slot) in batch.iter().zip(parsed).zip(marker_slot) {
            let (mut event, origin) = match p {
                Parsed::Rejected(r) => {
                    out.records.push(self.dead_letter(m, &r));
                    *out.dead_lettered.entry(r.code.as_str()).or_default() += 1;
                    out.rejected += 1;
                    continue;
                }
                Parsed::Event { event, origin } => (*event, origin),
            };
            let current = marker_values.get(slot).cloned().flatten();
            let state = match seen.contains(&event.event_id) {
                true => MarkerState::Duplicate,
                false => MarkerState::of(current.as_deref(), &origin),
            };
            match state {
                MarkerState::Duplicate => {
                    out.duplicates += 1;
                    continue;
                }
                MarkerState::Replay => {
                    let sid = marker_session(current.as_deref().unwrap_or_default());
                    if event.session_id.is_empty() && !sid.is_empty() {
                        event.session_id = sid.to_string();
                        event.session_assigned = true;
                    }
                    out.replays += 1;
                }
                MarkerState::Fresh => {
                    let is_item = matches!(event.payload, Some(Payload::Item(_)));
                    let no_history = UserClock::default();
                    let clock = match states.get(&event.user_id) {
                        Some(s) if !is_item => &s.clock,
                        _ => &no_history,
                    };
                    if let Err(r) = self.rules.check_time(event.ts_ms, now_ms, clock) {
                        out.records.push(self.dead_letter(m, &r));
                        *out.dead_lettered.entry(r.code.as_str()).or_default() += 1;
                        out.rejected += 1;
                        continue;
                    }
                    if let Some(Payload::Item(item)) = &event.payload {
                        writer.item_event(&mut wb, item);
                        let info = ItemInfo {
                            category: item.category.clone(),
                            price: item.price,
                        };
                        known_items.insert(item.item_id.clone(), info.clone());
                        self.items.put(item.item_id.clone(), info);
                    } else {
                        // `states` holds every user the batch read (the insert is a
                        // fallback); `entry` would copy the id for every event.
                        if !states.contains_key(&event.user_id) {
                            states.insert(event.user_id.clone(), UserState::default());
                        }
                        let state = states.get_mut(&event.user_id).expect("inserted above");
                        let explicit = (!event.session_id.is_empty()).then_some(&*event.session_id);
                        let assignment = self.rules.assign(
                            &mut state.clock,
                            &event.user_id,
                            event.ts_ms,
                            explicit,
                        );
                        event.session_id = assignment.session_id;
                        event.session_assigned = assignment.assigned;
                        for item in referenced_items(&event) {
                            if known_items.contains_key(item) {
                                continue;
                            }
                            if let Some(info) = self.items.get(item) {
                                known_items.insert(item.to_string(), info.clone());
                            }
                        }
                        writer.user_event(
                            &mut wb,
                            &event,
                            state,
                            assignment.new_session,
                            &known_items,
                        );
                    }
                    let mut value = origin;
                    value.push('|');
                    value.push_str(&event.session_id);
                    wb.marker(
                        std::mem::take(&mut marker_keys[slot]),
                        value,
                        MarkerState::Fresh,
                    );
                    seen.insert(event.event_id.clone());
                    out.fresh += 1;
                }
            }
            self.publish(&mut out, m, &event);
        }
        (wb, out)
    }

    fn publish(&self, out: &mut BatchOutput, m: &OwnedMessage, event: &pb::Event) {
        let trace = trace_context(m, event);
        let type_name =
            funnel_core::type_name(pb::EventType::try_from(event.r#type).unwrap_or_default());
        let mut record = OutRecord::new(
            &self.topics.events,
            Some(funnel_core::event_key(event).as_bytes()),
            event.encode_to_vec(),
        )
        .header(CONTENT_TYPE, "application/x-protobuf")
        .header("funnel-event-type", type_name);
        *out.published.entry(type_name).or_default() += 1;
        for (k, v) in &trace {
            record = record.header(k, v);
        }
        out.records.push(record);
        if let Some(Payload::Item(item)) = &event.payload {
            let mut catalog = OutRecord::new(
                &self.topics.catalog,
                Some(item.item_id.as_bytes()),
                item.encode_to_vec(),
            )
            .header(CONTENT_TYPE, "application/x-protobuf");
            for (k, v) in &trace {
                catalog = catalog.header(k, v);
            }
            out.records.push(catalog);
        }
    }

    fn dead_letter(&self, m: &OwnedMessage, r: &Rejection) -> OutRecord {
        let h: OwnedHeaders = headers::dead_letter_headers(
            m.headers(),
            &DeadLetter {
                code: r.code.as_str(),
                reason: &r.reason,
                topic: m.topic(),
                partition: m.partition(),
                offset: m.offset(),
                rejected_by: "ingest",
            },
        );
        OutRecord::new(
            &self.topics.dlq,
            m.key(),
            m.payload().unwrap_or_default().to_vec(),
        )
        .with_headers(h)
    }

    fn count(&self, out: &BatchOutput) {
        self.metrics.dedup_hits.inc_by(out.duplicates as u64);
        self.metrics.replays.inc_by(out.replays as u64);
        for (reason, n) in &out.dead_lettered {
            self.metrics
                .dlq
                .get_or_create(&ReasonLabel {
                    reason: reason.to_string(),
                })
                .inc_by(*n);
        }
        for (t, n) in &out.published {
            self.metrics
                .events_out
                .get_or_create(&TypeLabel {
                    r#type: t.to_string(),
                })
                .inc_by(*n);
        }
    }
}

/// Runs CPU-heavy work without stalling the runtime: on a multi-threaded
/// runtime the worker hands its other tasks to another thread meanwhile.
fn cpu_bound<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The trace context for the next hop. A message that carries `traceparent`
/// gets a span of ours as its child when traces are exported, and the next
/// hop continues from that span; otherwise the context passes unchanged.
fn trace_context(m: &OwnedMessage, event: &pb::Event) -> Vec<(String, String)> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let carried = headers::trace_headers(m.headers());
    if carried.is_empty() {
        return carried;
    }
    let parent = headers::extract_context(m.headers());
    if !parent.span().span_context().is_valid() {
        // No propagator installed (embedded use) or a context we cannot
        // read: pass it on as it came.
        return carried;
    }
    let span =
        tracing::info_span!("ingest.event", event_id = %event.event_id, user_id = %event.user_id);
    let _ = span.set_parent(parent);
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        headers::inject_context(&cx)
    } else {
        carried
    }
}

/// Items whose catalog record an event's features need.
fn referenced_items(event: &pb::Event) -> Vec<&str> {
    match &event.payload {
        Some(Payload::Click(c)) => vec![&c.item_id],
        Some(Payload::Cart(c)) => vec![&c.item_id],
        Some(Payload::Order(o)) => o.lines.iter().map(|l| l.item_id.as_str()).collect(),
        _ => Vec::new(),
    }
}
