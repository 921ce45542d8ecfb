//! One batch of canonical events to session states, intent predictions and one atomic
//! state write.
//!
//! A batch is planned from one pipelined Redis read (the batch's event markers, session
//! states, user histories, catalog records and click counts of the items it names),
//! applied in memory in stream order, scored in one inference run on a blocking thread,
//! handed to the producer, and written in one MULTI/EXEC that Redis refuses if any event
//! marker changed since the read (another instance applied the event meanwhile; the
//! batch is then planned again). The lane then takes its next part, whose read sees this
//! write, while the broker acknowledges the predictions; the part's offsets are stored
//! only once they are acknowledged.
//!
//! An event whose marker is already set (a replayed message, or a canonical event ingest
//! republished) is not applied again. Predictions stay at-least-once because the marker
//! of an event that got a prediction holds it, with the consumer group: a crash after
//! the write and before the acknowledgement replays the part in the same group, which
//! publishes the stored predictions again. Another group reading the same events
//! publishes nothing again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as BASE64;
use funnel_bus::{Message, OutRecord, OwnedMessage, Sending};
use funnel_core::pb::{self, EventType, event::Payload};
use funnel_proto::pb::behavior::v1::IntentPrediction;
use funnel_store::{ApplyOutcome, MarkerState, Read, Reply, Store, StoreError, WriteBatch, Writer};
use indexmap::IndexSet;
use prost::Message as _;

use crate::config::PredictorSettings;
use crate::context::{CatalogItem, EventContext, item_of};
use crate::conversion::{BatchOutcome, IdleMark, Scored, cart_of};
use crate::features::{IntentFeatures, OrderRecord, intent_features};
use crate::metrics::Metrics;
use crate::scoring::Scorer;
use crate::shadow::Shadow;
use crate::state::{
    ITEM_CLICKS, SESSION_FIELDS, SESSION_LAST_EVENT, SESSION_PUBLISHED_TS, SESSION_STATE,
    SESSION_USER, StateKeys, StoredSession, StoredUser, USER_HISTORY, USER_ORDERS, USER_SESSION,
};

/// How often a batch is planned again after marker conflicts before it fails.
const MAX_CONFLICT_RETRIES: usize = 5;

/// A batch failure; the caller retries the batch.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("inference failed: {0}")]
    Model(#[from] funnel_model::ModelError),
    #[error("inference task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Bus(#[from] funnel_bus::BusError),
    #[error("event markers kept changing; {0} plans refused")]
    Conflicts(usize),
}

/// One event of the batch, decoded.
struct Incoming {
    event: pb::Event,
    origin: String,
}

/// An event applied in this batch, with its session's features right after it.
struct Applied {
    /// Its marker among the batch's fresh markers.
    marker: usize,
    session: usize,
    event_id: String,
    user_id: String,
    session_id: String,
    ts_ms: i64,
    features: IntentFeatures,
}

/// Turns batches of canonical events into predictions and state writes.
pub struct Processor {
    keys: StateKeys,
    settings: PredictorSettings,
    predictions_topic: String,
    /// The consumer group, kept in markers beside the prediction they hold.
    group_id: String,
    writer: Writer,
    scorer: Arc<Scorer>,
    metrics: Metrics,
    outcome: BatchOutcome,
    shadow: Option<Shadow>,
    /// The feature rows of the batch's published predictions, in order, for the shadow.
    shadow_rows: Vec<IntentFeatures>,
}

impl Processor {
    pub fn new(
        keys: StateKeys,
        settings: PredictorSettings,
        (predictions_topic, group_id): (String, String),
        store: &Store,
        scorer: Arc<Scorer>,
        metrics: Metrics,
    ) -> Self {
        Processor {
            keys,
            settings,
            predictions_topic,
            group_id,
            writer: store.writer(),
            scorer,
            metrics,
            outcome: BatchOutcome::default(),
            shadow: None,
            shadow_rows: Vec::new(),
        }
    }

    /// Also scores every published prediction's row with `shadow` (see [`crate::shadow`]).
    pub fn with_shadow(mut self, shadow: Shadow) -> Self {
        self.shadow = Some(shadow);
        self
    }

    /// What the last processed batch published and how it left its sessions, for the
    /// conversion policy.
    pub fn take_outcome(&mut self) -> BatchOutcome {
        std::mem::take(&mut self.outcome)
    }

    /// The intent model serving now, as `name@version`.
    pub fn model_id(&self) -> String {
        self.scorer.intent_info().id.to_string()
    }

    /// Applies and scores one batch, hands its predictions to `producer` and writes its
    /// state; the predictions' acknowledgements are left to the caller, who must not
    /// store the batch's offsets before them.
    pub async fn process(
        &mut self,
        messages: &[OwnedMessage],
        producer: &funnel_bus::Producer,
    ) -> Result<Sending, BatchError> {
        self.outcome = BatchOutcome::default();
        let incoming = self.decode(messages);
        if incoming.is_empty() {
            return Ok(producer.enqueue(Vec::new()));
        }
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (records, batch, outcome) = self.plan(&incoming).await?;
            // Handed over before the write, so that the producer's linger runs during it.
            // Should the write be refused, these still go out and the next plan's too:
            // at-least-once, as a replay.
            let sending = producer.enqueue(records);
            let m = &self.metrics;
            let started = Instant::now();
            let applied = self.writer.apply(&batch).await?;
            m.write_seconds.observe(started.elapsed().as_secs_f64());
            match applied {
                ApplyOutcome::Applied => {
                    m.predictions.inc_by(outcome.scored.len() as u64);
                    // The rest of what is sent came from replayed events' markers.
                    m.republished
                        .inc_by((sending.len() - outcome.scored.len()) as u64);
                    if let Some(shadow) = &self.shadow {
                        let served = outcome.scored.iter().map(|s| s.prediction.clone());
                        shadow.publish(std::mem::take(&mut self.shadow_rows), served.collect());
                    }
                    self.outcome = outcome;
                    return Ok(sending);
                }
                ApplyOutcome::Conflict => {
                    self.metrics.store_conflicts.inc();
                }
            }
        }
        Err(BatchError::Conflicts(MAX_CONFLICT_RETRIES))
    }

    /// User events of the batch in order; catalog events (read from ingest's records
    /// instead) and undecodable messages are skipped.
    fn decode(&self, messages: &[OwnedMessage]) -> Vec<Incoming> {
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            let origin = format!("{}/{}/{}", m.topic(), m.partition(), m.offset());
            let event = match pb::Event::decode(m.payload().unwrap_or_default()) {
                Ok(e) => e,
                Err(e) => {
                    self.metrics.undecodable.inc();
                    tracing::warn!(%origin, error = %e, "skipping a message that is not a canonical event");
                    continue;
                }
            };
            if event.r#type() == EventType::Item
                || event.user_id.is_empty()
                || event.session_id.is_empty()
            {
                continue;
            }
            out.push(Incoming { event, origin });
        }
        out
    }

    /// Reads, applies in memory and scores; the records to publish and the writes.
    async fn plan(
        &mut self,
        incoming: &[Incoming],
    ) -> Result<(Vec<OutRecord>, WriteBatch, BatchOutcome), BatchError> {
        let k = &self.keys;
        let mut session_ids: IndexSet<&str> = IndexSet::new();
        let mut user_ids: IndexSet<&str> = IndexSet::new();
        let mut item_ids: IndexSet<&str> = IndexSet::new();
        for i in incoming {
            session_ids.insert(&i.event.session_id);
            user_ids.insert(&i.event.user_id);
            if let Some(item) = item_of(&i.event) {
                item_ids.insert(item);
            }
        }
        let markers: Vec<String> = incoming
            .iter()
            .map(|i| k.event_marker(&i.event.event_id))
            .collect();
        let fields = |names: &[&str]| names.iter().map(|f| (*f).to_owned()).collect::<Vec<_>>();
        let mut reads = vec![Read::MGet(markers.clone())];
        reads.extend(
            session_ids
                .iter()
                .map(|s| Read::HMGet(k.session(s), fields(&SESSION_FIELDS))),
        );
        reads.extend(
            user_ids
                .iter()
                .map(|u| Read::HMGet(k.user(u), fields(&crate::state::USER_FIELDS))),
        );
        reads.extend(
            item_ids
                .iter()
                .map(|i| Read::HMGet(k.catalog_item(i), fields(&["price", "category"]))),
        );
        reads.extend(
            item_ids
                .iter()
                .map(|i| Read::HMGet(k.item_clicks(i), fields(&[ITEM_CLICKS]))),
        );
        let started = Instant::now();
        let replies = self.writer.read_watching(&markers, &reads).await?;
        self.metrics
            .read_seconds
            .observe(started.elapsed().as_secs_f64());
        if replies.len() != reads.len() {
            return Err(StoreError::Reply {
                op: "plan read",
                detail: format!("{} replies to {} reads", replies.len(), reads.len()),
            }
            .into());
        }
        let mut replies = replies.into_iter();
        let current_markers = replies.next().map(Reply::into_fields).unwrap_or_default();
        let mut sessions: Vec<Option<StoredSession>> = (&mut replies)
            .take(session_ids.len())
            .map(|r| StoredSession::from_fields(r.into_fields()))
            .collect();
        let mut users: HashMap<&str, StoredUser> = user_ids
            .iter()
            .zip(&mut replies)
            .map(|(u, r)| {
                (
                    *u,
                    StoredUser::from_fields(r.into_fields()).unwrap_or_default(),
                )
            })
            .collect();
        let catalog: HashMap<&str, CatalogItem> = item_ids
            .iter()
            .zip(&mut replies)
            .filter_map(|(i, r)| Some((*i, catalog_item(r.into_fields())?)))
            .collect();
        let mut clicks: HashMap<&str, u64> = item_ids
            .iter()
            .zip(&mut replies)
            .map(|(i, r)| {
                let count = r.into_fields().into_iter().next().flatten();
                (*i, count.and_then(|c| c.parse().ok()).unwrap_or(0))
            })
            .collect();

        let mut batch = WriteBatch::new(self.settings.session_ttl_secs);
        let mut applied: Vec<Applied> = Vec::with_capacity(incoming.len());
        // The fresh events' markers: which event, and the value to set.
        let mut fresh_markers: Vec<(usize, String)> = Vec::with_capacity(incoming.len());
        let mut republished: Vec<OutRecord> = Vec::new();
        let mut seen_markers: std::collections::HashSet<&str> = Default::default();
        let mut touched_sessions = vec![false; session_ids.len()];
        let mut touched_items: IndexSet<&str> = IndexSet::new();
        for (n, i) in incoming.iter().enumerate() {
            let event = &i.event;
            let current = current_markers.get(n).cloned().flatten();
            let state = MarkerState::of(current.as_deref(), &i.origin);
            let first_in_batch = seen_markers.insert(&markers[n]);
            if state != MarkerState::Fresh || !first_in_batch {
                self.metrics.replays.inc();
                if state == MarkerState::Replay
                    && first_in_batch
                    && let Some(record) = self.stored_prediction(current.as_deref(), i)
                {
                    republished.push(record);
                }
                continue;
            }
            let slot = session_ids
                .get_index_of(event.session_id.as_str())
                .expect("every session was read");
            let user = users
                .get_mut(event.user_id.as_str())
                .expect("every user was read");
            let session = sessions[slot].get_or_insert_with(|| StoredSession {
                state: user.history.begin_session(event.ts_ms),
                user_id: event.user_id.clone(),
                ..StoredSession::default()
            });
            let item = item_of(event);
            let context = EventContext {
                item: item.and_then(|id| catalog.get(id)),
                item_popularity: item.and_then(|id| clicks.get(id).copied()).unwrap_or(0),
            };
            session.state.apply(event, &context);
            session.last_event_id.clone_from(&event.event_id);
            touched_sessions[slot] = true;
            if let Some(Payload::Order(order)) = &event.payload {
                user.history.record_order();
                user.orders.push(OrderRecord {
                    ts_ms: event.ts_ms,
                    value: order.total,
                });
                let excess = user.orders.len().saturating_sub(self.settings.orders_max);
                user.orders.drain(..excess);
            }
            user.latest_session.clone_from(&event.session_id);
            if let (EventType::Click, Some(item)) = (event.r#type(), item) {
                *clicks.entry(item).or_default() += 1;
                batch.hincr(&self.keys.item_clicks(item), ITEM_CLICKS, 1);
                touched_items.insert(item);
            }
            fresh_markers.push((n, format!("{}|{}", i.origin, event.session_id)));
            applied.push(Applied {
                marker: fresh_markers.len() - 1,
                session: slot,
                event_id: event.event_id.clone(),
                user_id: event.user_id.clone(),
                session_id: event.session_id.clone(),
                ts_ms: event.ts_ms,
                features: intent_features(&session.state),
            });
        }

        let chosen = self.debounce(&applied, &mut sessions);
        let (scored_records, scored) = self.score(&applied, &chosen).await?;
        if self.shadow.is_some() {
            self.shadow_rows = chosen.iter().map(|n| applied[*n].features).collect();
        }
        for (n, record) in chosen.iter().zip(&scored_records) {
            let value = &mut fresh_markers[applied[*n].marker].1;
            value.push('|');
            value.push_str(&self.group_id);
            value.push('|');
            BASE64.encode_string(&record.payload, value);
        }
        for (n, value) in fresh_markers {
            batch.marker(markers[n].clone(), value, MarkerState::Fresh);
        }
        let mut records = republished;
        records.extend(scored_records);
        let mut outcome = BatchOutcome {
            scored,
            idle: Vec::new(),
        };

        let s = &self.settings;
        for (slot, session_id) in session_ids.iter().enumerate() {
            let (true, Some(session)) = (touched_sessions[slot], &sessions[slot]) else {
                continue;
            };
            outcome.idle.push(IdleMark {
                session_id: (*session_id).to_owned(),
                last_event_ms: session.state.last_event_ms(),
                cart_empty: session.state.cart_is_empty(),
            });
            let key = self.keys.session(session_id);
            batch.hset(&key, SESSION_STATE, &to_json(&session.state));
            batch.hset(&key, SESSION_USER, &session.user_id);
            batch.hset(&key, SESSION_LAST_EVENT, &session.last_event_id);
            if let Some(ts) = session.published_ts_ms {
                batch.hset_int(&key, SESSION_PUBLISHED_TS, ts);
            }
            batch.expire(&key, s.session_ttl_secs);
        }
        for i in applied.iter().map(|a| a.user_id.as_str()) {
            if let Some(user) = users.remove(i) {
                let key = self.keys.user(i);
                batch.hset(&key, USER_HISTORY, &to_json(&user.history));
                batch.hset(&key, USER_SESSION, &user.latest_session);
                batch.hset(&key, USER_ORDERS, &to_json(&user.orders));
                batch.expire(&key, s.user_ttl_secs);
            }
        }
        for item in touched_items {
            batch.expire(&self.keys.item_clicks(item), s.item_ttl_secs);
        }
        Ok((records, batch, outcome))
    }

    /// The prediction a replayed event's marker holds, to publish again: only when the
    /// marker was set by this consumer group for this very message.
    fn stored_prediction(&self, marker: Option<&str>, i: &Incoming) -> Option<OutRecord> {
        let head = format!("{}|{}|{}|", i.origin, i.event.session_id, self.group_id);
        let bytes = BASE64.decode(marker?.strip_prefix(&head)?).ok()?;
        let prediction = IntentPrediction::decode(bytes.as_slice()).ok()?;
        (prediction.event_id == i.event.event_id).then(|| self.record(&prediction))
    }

    /// The message of one prediction, keyed by user.
    fn record(&self, prediction: &IntentPrediction) -> OutRecord {
        OutRecord::new(
            &self.predictions_topic,
            Some(prediction.user_id.as_bytes()),
            prediction.encode_to_vec(),
        )
        .header("content-type", "application/x-protobuf")
    }

    /// Which applied events get a prediction (see `predictor.debounce_ms`); records the
    /// event time of each session's published prediction.
    fn debounce(&self, applied: &[Applied], sessions: &mut [Option<StoredSession>]) -> Vec<usize> {
        let debounce_ms = self.settings.debounce_ms as i64;
        let mut latest: HashMap<usize, usize> = HashMap::new();
        for (n, a) in applied.iter().enumerate() {
            latest.insert(a.session, n);
        }
        let mut chosen = Vec::new();
        for (n, a) in applied.iter().enumerate() {
            let latest_of_session = latest.get(&a.session) == Some(&n);
            let Some(session) = sessions[a.session].as_mut() else {
                continue;
            };
            let due = debounce_ms == 0
                || (latest_of_session
                    && session
                        .published_ts_ms
                        .is_none_or(|last| a.ts_ms - last >= debounce_ms));
            if due {
                session.published_ts_ms = Some(a.ts_ms);
                chosen.push(n);
            } else {
                self.metrics.debounced.inc();
            }
        }
        chosen
    }

    /// Scores the chosen events in one run on a blocking thread.
    async fn score(
        &self,
        applied: &[Applied],
        chosen: &[usize],
    ) -> Result<(Vec<OutRecord>, Vec<Scored>), BatchError> {
        if chosen.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let rows: Vec<IntentFeatures> = chosen.iter().map(|n| applied[*n].features).collect();
        let scorer = Arc::clone(&self.scorer);
        let started = Instant::now();
        let (model, scores) = tokio::task::spawn_blocking(move || scorer.intent(&rows)).await??;
        self.metrics
            .inference_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .inference_batch_size
            .observe(chosen.len() as f64);
        let id = model.id();
        let now = funnel_core::now_ms();
        let mut scored = Vec::with_capacity(chosen.len());
        let records = chosen
            .iter()
            .zip(scores)
            .map(|(n, score)| {
                let a = &applied[*n];
                self.metrics
                    .purchase_probability
                    .observe(f64::from(score.purchase));
                self.metrics
                    .abandonment_probability
                    .observe(f64::from(score.abandonment));
                let prediction = IntentPrediction {
                    event_id: a.event_id.clone(),
                    user_id: a.user_id.clone(),
                    session_id: a.session_id.clone(),
                    purchase_probability: score.purchase,
                    abandonment_probability: score.abandonment,
                    model: id.name.clone(),
                    model_version: id.version.clone(),
                    event_ts_ms: a.ts_ms,
                    prediction_ts_ms: now,
                };
                let record = self.record(&prediction);
                scored.push(Scored {
                    prediction,
                    cart: cart_of(&a.features),
                });
                record
            })
            .collect();
        Ok((records, scored))
    }
}

/// Ingest's catalog record (`price`, `category`) as the features use it.
fn catalog_item(fields: Vec<Option<String>>) -> Option<CatalogItem> {
    let mut fields = fields.into_iter();
    let price = fields.next().flatten()?.parse().ok()?;
    Some(CatalogItem {
        price,
        category: fields.next().flatten().unwrap_or_default(),
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("state serialises")
}
