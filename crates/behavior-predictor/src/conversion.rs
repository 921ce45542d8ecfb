//! Conversion actions: the policy applied to predictions and to idle sessions, with caps,
//! cool-downs and the holdout arm, published as `funnel.behavior.v1.ConversionAction`.
//!
//! Two paths decide:
//! - after each batch of the stream, `offer_coupon` on the predictions it published;
//! - every `policy.idle_scan_ms`, `remind_cart` on sessions whose cart is not empty and
//!   whose last event is older than `remind_cart.idle_secs`, so a user who sends nothing
//!   more is still reminded. The batch keeps `P:bp:idle` (session -> event time of its
//!   last event) up to date; the scan takes the sessions due by wall clock
//!   (`now - idle_secs`), claims each with ZREM (only the instance whose ZREM removed it
//!   goes on, so several instances share the scan), reads the session, rescores it and
//!   applies the rule. Idle time is wall clock minus event time: it assumes event times
//!   near the wall clock, as ingest's validation keeps them.
//!
//! Every decision (both arms) passes one Lua script that checks the user's cool-down of
//! the action and frequency cap and takes both at once, so two instances cannot both
//! send. Holdout users (see [`Policy::arm`]) pass the same caps and are published with
//! arm `holdout`: a holdout action is exactly one a treatment user would have received,
//! so the arms compare. Actions are at most once: caps are taken before publishing, and a
//! failed publish (or a crash between claim and publish) loses the action, never
//! duplicates it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use funnel_bus::{OutRecord, Producer};
use funnel_proto::pb::behavior::v1::{ConversionAction, IntentPrediction};
use funnel_runtime::Shutdown;
use funnel_runtime::reload::{self, FileStamp};
use funnel_store::RedisConfig;
use prost::Message as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, watch};

use crate::config::PolicyConfig;
use crate::features::{INTENT_FEATURES, IntentFeatures, intent_features};
use crate::metrics::Metrics;
use crate::policy::{Cart, Decision, Policy};
use crate::scoring::Scorer;
use crate::state::{SESSION_FIELDS, StateKeys, StoredSession};

/// Checks the cool-down (KEYS[1]) and the cap counter (KEYS[2]); when both allow, sets
/// the cool-down for ARGV[1] s and counts the action, the window (ARGV[3] s) starting at
/// the first. 0 = allowed, 1 = cooling down, 2 = capped.
const TAKE_SLOT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
local sent = tonumber(redis.call('GET', KEYS[2]) or '0')
if sent >= tonumber(ARGV[2]) then return 2 end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
if redis.call('INCR', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
return 0
";

/// A prediction the stream published, with the cart it saw.
#[derive(Debug, Clone)]
pub struct Scored {
    pub prediction: IntentPrediction,
    pub cart: Cart,
}

/// How a batch left one session.
#[derive(Debug, Clone)]
pub struct IdleMark {
    pub session_id: String,
    pub last_event_ms: i64,
    pub cart_empty: bool,
}

/// What one batch of the stream gives the policy.
#[derive(Debug, Clone, Default)]
pub struct BatchOutcome {
    pub scored: Vec<Scored>,
    pub idle: Vec<IdleMark>,
}

/// The cart facts of a feature row.
pub fn cart_of(features: &IntentFeatures) -> Cart {
    let at = |name: &str| {
        INTENT_FEATURES
            .iter()
            .position(|f| *f == name)
            .map_or(0.0, |i| f64::from(features[i]))
    };
    Cart {
        lines: at("cart_lines"),
        value: at("cart_value"),
    }
}

/// The policy in service, its Redis connection and where actions go.
#[derive(Clone)]
pub struct Conversion {
    policy: watch::Receiver<Arc<Policy>>,
    redis: ConnectionManager,
    keys: StateKeys,
    scorer: Arc<Scorer>,
    producer: Producer,
    topic: String,
    settings: PolicyConfig,
    session_ttl_secs: u64,
    metrics: Metrics,
}

/// Everything [`Conversion::start`] needs.
pub struct ConversionParts {
    pub settings: PolicyConfig,
    pub redis: RedisConfig,
    pub keys: StateKeys,
    pub scorer: Arc<Scorer>,
    pub producer: Producer,
    pub topic: String,
    pub session_ttl_secs: u64,
    pub metrics: Metrics,
}

impl Conversion {
    /// Loads the policy, connects to Redis, and starts the file watcher and the idle
    /// scan, both until `stop`.
    pub async fn start(parts: ConversionParts, stop: &Shutdown) -> anyhow::Result<Conversion> {
        use anyhow::Context as _;
        let path = PathBuf::from(&parts.settings.file);
        let stamp = FileStamp::of(&path);
        let policy = Policy::load(&path)
            .with_context(|| format!("failed to load policy.file {}", path.display()))?;
        let client = redis::Client::open(parts.redis.url.as_str())
            .context("redis.url is not a valid redis URL")?;
        let timeout = Duration::from_millis(parts.redis.timeout_ms);
        let redis = ConnectionManager::new_with_config(
            client,
            ConnectionManagerConfig::new()
                .set_response_timeout(Some(timeout))
                .set_connection_timeout(Some(timeout))
                .set_number_of_retries(3),
        )
        .await
        .context("failed to connect to redis for the conversion policy")?;
        tracing::info!(version = %policy.version, file = %path.display(), "conversion policy loaded");
        let (policy_tx, policy_rx) = watch::channel(Arc::new(policy));
        let conversion = Conversion {
            policy: policy_rx,
            redis,
            keys: parts.keys,
            scorer: parts.scorer,
            producer: parts.producer,
            topic: parts.topic,
            settings: parts.settings,
            session_ttl_secs: parts.session_ttl_secs,
            metrics: parts.metrics,
        };
        tokio::spawn(watch_file(
            path,
            stamp,
            policy_tx,
            Duration::from_secs(conversion.settings.reload_secs),
            conversion.metrics.clone(),
            stop.clone(),
        ));
        tokio::spawn(conversion.clone().scan_idle_until(stop.clone()));
        Ok(conversion)
    }

    /// The policy serving now.
    pub fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.policy.borrow())
    }

    /// Applies the outcomes `outcomes` yields, in the order the stream's lanes hand them
    /// over, until every sender is gone: the lanes go on with their next parts, so the
    /// policy's Redis round trips and the acknowledgements of its actions are not on the
    /// predictions' path. A lane's outcomes keep their order, and a session is only ever
    /// in one lane.
    pub async fn follow(self, mut outcomes: mpsc::Receiver<BatchOutcome>) {
        while let Some(outcome) = outcomes.recv().await {
            self.after_batch(outcome).await;
        }
    }

    /// Records how the batch left its sessions and applies `offer_coupon` to its
    /// predictions. Failures are logged and counted; the stream goes on.
    pub async fn after_batch(&self, outcome: BatchOutcome) {
        if let Err(e) = self.try_after_batch(outcome).await {
            self.metrics.policy_errors.inc();
            tracing::warn!(error = %e, "conversion policy failed on a batch");
        }
    }

    async fn try_after_batch(&self, outcome: BatchOutcome) -> anyhow::Result<()> {
        let idle_key = self.keys.idle_sessions();
        if !outcome.idle.is_empty() {
            let mut pipe = redis::pipe();
            for mark in &outcome.idle {
                if mark.cart_empty {
                    pipe.zrem(&idle_key, &mark.session_id).ignore();
                } else {
                    pipe.cmd("ZADD")
                        .arg(&idle_key)
                        .arg("GT")
                        .arg(mark.last_event_ms)
                        .arg(&mark.session_id)
                        .ignore();
                }
            }
            pipe.expire(&idle_key, self.session_ttl_secs as i64)
                .ignore();
            pipe.query_async::<()>(&mut self.redis.clone()).await?;
        }
        let policy = self.policy();
        let mut records = Vec::new();
        for s in outcome.scored {
            if let Some(decision) = policy.on_prediction(s.prediction.purchase_probability, s.cart)
            {
                records.extend(self.decide(&policy, s.prediction, decision).await?);
            }
        }
        self.producer.send_all(&records).await?;
        Ok(())
    }

    async fn scan_idle_until(self, stop: Shutdown) {
        let every = Duration::from_millis(self.settings.idle_scan_ms);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.scan_idle().await {
                self.metrics.policy_errors.inc();
                tracing::warn!(error = %e, "idle scan failed");
            }
        }
    }

    /// One scan: prune, claim the sessions due, rescore them, apply `remind_cart`.
    pub async fn scan_idle(&self) -> anyhow::Result<()> {
        let policy = self.policy();
        let key = self.keys.idle_sessions();
        let mut redis = self.redis.clone();
        let now = funnel_core::now_ms();
        let expired = now - (self.session_ttl_secs as i64) * 1000;
        redis::cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(expired)
            .query_async::<()>(&mut redis)
            .await?;
        let Some(idle_secs) = policy.idle_secs() else {
            return Ok(());
        };
        let cutoff = now - (idle_secs as i64) * 1000;
        let due: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(cutoff)
            .arg("LIMIT")
            .arg(0)
            .arg(self.settings.idle_scan_max)
            .query_async(&mut redis)
            .await?;
        if due.is_empty() {
            return Ok(());
        }
        let mut claim = redis::pipe();
        for session in &due {
            claim.zrem(&key, session);
        }
        let removed: Vec<i64> = claim.query_async(&mut redis).await?;
        let claimed: Vec<&String> = due
            .iter()
            .zip(removed)
            .filter_map(|(s, n)| (n == 1).then_some(s))
            .collect();
        self.metrics.idle_claimed.inc_by(claimed.len() as u64);
        let mut read = redis::pipe();
        for session in &claimed {
            read.cmd("HMGET")
                .arg(self.keys.session(session))
                .arg(&SESSION_FIELDS[..]);
        }
        let stored: Vec<Vec<Option<String>>> = read.query_async(&mut redis).await?;
        let mut sessions = Vec::new();
        for (session_id, fields) in claimed.into_iter().zip(stored) {
            let Some(session) = StoredSession::from_fields(fields) else {
                continue;
            };
            if session.state.cart_is_empty() {
                continue;
            }
            let last = session.state.last_event_ms();
            if last > cutoff {
                // An event arrived since the range was read: not idle yet.
                redis::cmd("ZADD")
                    .arg(&key)
                    .arg("GT")
                    .arg(last)
                    .arg(session_id)
                    .query_async::<()>(&mut redis)
                    .await?;
                continue;
            }
            sessions.push((session_id.clone(), session));
        }
        if sessions.is_empty() {
            return Ok(());
        }
        let rows: Vec<IntentFeatures> = sessions
            .iter()
            .map(|(_, s)| intent_features(&s.state))
            .collect();
        let scorer = Arc::clone(&self.scorer);
        let carts: Vec<Cart> = rows.iter().map(cart_of).collect();
        let (model, scores) = tokio::task::spawn_blocking(move || scorer.intent(&rows)).await??;
        let id = model.id();
        let mut records = Vec::new();
        for (((session_id, session), score), cart) in sessions.into_iter().zip(scores).zip(carts) {
            let last = session.state.last_event_ms();
            let idle = u64::try_from((now - last) / 1000).unwrap_or(0);
            let Some(decision) = policy.on_idle(score.abandonment, idle, cart) else {
                continue;
            };
            let prediction = IntentPrediction {
                event_id: session.last_event_id,
                user_id: session.user_id,
                session_id,
                purchase_probability: score.purchase,
                abandonment_probability: score.abandonment,
                model: id.name.clone(),
                model_version: id.version.clone(),
                event_ts_ms: last,
                prediction_ts_ms: now,
            };
            records.extend(self.decide(&policy, prediction, decision).await?);
        }
        self.producer.send_all(&records).await?;
        Ok(())
    }

    /// Holdout arm, cool-down and cap for one decision; the record to publish if the
    /// user may get it.
    async fn decide(
        &self,
        policy: &Policy,
        prediction: IntentPrediction,
        decision: Decision,
    ) -> anyhow::Result<Option<OutRecord>> {
        let user = prediction.user_id.clone();
        let arm = policy.arm(&user);
        let verdict: i64 = redis::cmd("EVAL")
            .arg(TAKE_SLOT)
            .arg(2)
            .arg(self.keys.cooldown(decision.action, &user))
            .arg(self.keys.cap(&user))
            .arg(decision.cooldown_secs)
            .arg(policy.caps.max_actions_per_user)
            .arg(policy.caps.window_secs)
            .query_async(&mut self.redis.clone())
            .await?;
        let suppressed = match verdict {
            0 => None,
            1 => Some("cooldown"),
            _ => Some("cap"),
        };
        if let Some(why) = suppressed {
            self.metrics.suppressed(decision.action, why).inc();
            tracing::debug!(user = %user, action = decision.action, why, "conversion action suppressed");
            return Ok(None);
        }
        self.metrics.actions(decision.action, arm).inc();
        tracing::info!(user = %user, action = decision.action, arm, reason = %decision.reason, "conversion action");
        let action = ConversionAction {
            action: decision.action.to_owned(),
            reason: decision.reason,
            arm: arm.to_owned(),
            policy_version: policy.version.clone(),
            prediction: Some(prediction),
        };
        Ok(Some(
            OutRecord::new(&self.topic, Some(user.as_bytes()), action.encode_to_vec())
                .header("content-type", "application/x-protobuf"),
        ))
    }
}

/// Reloads the policy when the file's modification time or length changes from `loaded`
/// (its stamp taken before the serving policy was read); a version that fails validation
/// is refused (error log, `behavior_policy_refusals`) and the one serving keeps serving.
async fn watch_file(
    path: PathBuf,
    loaded: FileStamp,
    policy: watch::Sender<Arc<Policy>>,
    every: Duration,
    metrics: Metrics,
    stop: Shutdown,
) {
    reload::on_change(&path, loaded, every, &stop, || match Policy::load(&path) {
        Ok(new) => {
            tracing::info!(version = %new.version, file = %path.display(), "conversion policy reloaded");
            metrics.policy_reloads.inc();
            policy.send_replace(Arc::new(new));
        }
        Err(e) => {
            metrics.policy_refusals.inc();
            tracing::error!(
                file = %path.display(),
                error = %e,
                serving = %policy.borrow().version,
                "conversion policy refused; the previous version keeps serving"
            );
        }
    })
    .await
}
