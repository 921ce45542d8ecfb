//! `funnel.recommender.v1.Recommender`: ranked lists and experiment counters.
//!
//! A request is validated, assigned its arm, reads Redis once (the user's signals, the
//! anchors' neighbour sets, and records the answer for attribution), is ranked, answered,
//! logged to `funnel.recommendations.v1` in the background and counted (served counters
//! reach Redis every `experiment.stats_flush_ms`).
//!
//! Ranking runs on the async worker that serves the request, not on the blocking pool:
//! it is CPU work bounded by `candidates.total_max` (a few hundred microseconds for 600
//! candidates), and the hand-off to a blocking thread and back cost more than that
//! bound is worth (README, Benchmarks: 9–15% fewer requests per CPU-second and a higher
//! p99 with the hand-off).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use funnel_bus::{OutRecord, Producer};
use funnel_proto::pb::recommender::v1 as pb;
use funnel_proto::pb::recommender::v1::recommender_server::Recommender;
use funnel_runtime::grpc::check_id;
use prost::Message as _;
use tonic::{Request, Response, Status};

use crate::features::Scenario;
use crate::ranking::{ARM_RANKER, Answer, Arms, Ask, COVIS_MODEL, Engine};
use crate::state::{AnswerRecord, ArmCounters, RecStore};

/// Most ids in `exclude_item_ids`.
pub const MAX_EXCLUDED: usize = 1000;
/// Largest `count`.
pub const MAX_COUNT: u32 = 200;

/// Served counters not yet added to Redis: `{arm}|{model}|{version}` → (answers, items).
#[derive(Clone, Default)]
pub struct Served {
    pending: Arc<Mutex<HashMap<String, (u64, u64)>>>,
}

impl Served {
    fn add(&self, group: String, items: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let entry = pending.entry(group).or_default();
        entry.0 += 1;
        entry.1 += items;
    }

    /// Takes what is pending.
    pub fn take(&self) -> HashMap<String, (u64, u64)> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts back counters a flush could not write.
    pub fn restore(&self, counts: HashMap<String, (u64, u64)>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (group, (answers, items)) in counts {
            let entry = pending.entry(group).or_default();
            entry.0 += answers;
            entry.1 += items;
        }
    }
}

/// The gRPC edge.
pub struct RecommenderService {
    parts: ServiceParts,
    ids: RecommIds,
}

/// Unique recommendation ids: this process's random-enough seed and a counter.
struct RecommIds {
    seed: u64,
    next: AtomicU64,
}

impl RecommIds {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = format!("{nanos}/{}/{:p}", std::process::id(), &nanos);
        RecommIds {
            seed: xxhash_rust::xxh3::xxh3_64(seed.as_bytes()),
            next: AtomicU64::new(0),
        }
    }

    fn next(&self) -> String {
        format!(
            "{:016x}{:08x}",
            self.seed,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// The parts of a [`RecommenderService`].
pub struct ServiceParts {
    pub engine: Engine,
    pub store: RecStore,
    pub arms: Arms,
    pub producer: Producer,
    pub topic: String,
    pub neighbours_per_anchor: usize,
    pub record_ttl_secs: u64,
    pub served: Served,
}

impl RecommenderService {
    pub fn new(parts: ServiceParts) -> Self {
        RecommenderService {
            parts,
            ids: RecommIds::new(),
        }
    }

    fn log(&self, answer: pb::Recommendation) {
        let p = &self.parts;
        let record = OutRecord::new(
            &p.topic,
            Some(answer.user_id.as_bytes()),
            answer.encode_to_vec(),
        )
        .header("content-type", "application/x-protobuf");
        let (producer, errors) = (p.producer.clone(), p.engine.metrics.log_errors.clone());
        tokio::spawn(async move {
            if let Err(e) = producer.send_all(&[record]).await {
                errors.inc();
                tracing::warn!(error = %e, "recommendation not logged");
            }
        });
    }
}

fn scenario(s: pb::Scenario) -> Option<Scenario> {
    match s {
        pb::Scenario::Home => Some(Scenario::Home),
        pb::Scenario::ItemPage => Some(Scenario::ItemPage),
        pb::Scenario::Cart => Some(Scenario::Cart),
        pb::Scenario::PostPurchase => Some(Scenario::PostPurchase),
        pb::Scenario::Unspecified => None,
    }
}

/// The request as the engine takes it, or `INVALID_ARGUMENT` naming the field.
pub fn validate(req: &pb::RecommendRequest, now_ms: i64) -> Result<Ask, Status> {
    check_id("user_id", &req.user_id, true)?;
    check_id("context_item_id", &req.context_item_id, false)?;
    let scenario = pb::Scenario::try_from(req.scenario)
        .ok()
        .and_then(scenario)
        .ok_or_else(|| {
            Status::invalid_argument("scenario must be HOME, ITEM_PAGE, CART or POST_PURCHASE")
        })?;
    if !(1..=MAX_COUNT).contains(&req.count) {
        return Err(Status::invalid_argument(format!(
            "count is {}, must be between 1 and {MAX_COUNT}",
            req.count
        )));
    }
    if req.category.len() > 512 || req.category.starts_with('/') || req.category.ends_with('/') {
        return Err(Status::invalid_argument(
            "category must be a path of at most 512 bytes without a leading or trailing '/'",
        ));
    }
    if req.exclude_item_ids.len() > MAX_EXCLUDED {
        return Err(Status::invalid_argument(format!(
            "exclude_item_ids has {} ids, more than {MAX_EXCLUDED}",
            req.exclude_item_ids.len()
        )));
    }
    for id in &req.exclude_item_ids {
        check_id("exclude_item_ids", id, true)?;
    }
    Ok(Ask {
        scenario,
        context_item: (!req.context_item_id.is_empty()).then(|| req.context_item_id.clone()),
        count: req.count as usize,
        // The catalog's categories are lower case (ingest normalises them).
        category: req.category.to_lowercase(),
        exclude: req.exclude_item_ids.clone(),
        now_ms,
    })
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// The counters of one `{arm}|{model}|{version}` group as the API gives them.
pub fn arm_stats(group: &str, c: &ArmCounters) -> pb::ArmStats {
    let mut parts = group.splitn(3, '|');
    let mut next = || parts.next().unwrap_or_default().to_owned();
    let (arm, model, model_version) = (next(), next(), next());
    let shown = if c.impressions > 0 {
        c.impressions
    } else {
        c.items
    };
    pb::ArmStats {
        arm,
        model,
        model_version,
        recommendations: c.recommendations,
        items_served: c.items,
        impressions: c.impressions,
        clicks: c.clicks,
        orders: c.orders,
        ctr: ratio(c.clicks, shown),
        conversion_rate: ratio(c.orders, c.recommendations),
    }
}

#[tonic::async_trait]
impl Recommender for RecommenderService {
    async fn recommend(
        &self,
        request: Request<pb::RecommendRequest>,
    ) -> Result<Response<pb::RecommendResponse>, Status> {
        let started = Instant::now();
        let p = &self.parts;
        let metrics = &p.engine.metrics;
        let req = request.into_inner();
        let now_ms = funnel_core::now_ms();
        let ask = validate(&req, now_ms).inspect_err(|_| {
            metrics.invalid_requests.inc();
        })?;
        let arm = p.arms.arm(&req.user_id);
        let model = (arm == ARM_RANKER).then(|| p.engine.ranker.current());
        let (model_name, model_version) = match &model {
            Some(m) => (m.id().name.clone(), m.id().version.clone()),
            None => (COVIS_MODEL.0.to_owned(), COVIS_MODEL.1.to_owned()),
        };
        let recomm_id = self.ids.next();
        let record = AnswerRecord {
            recomm_id: &recomm_id,
            user: &req.user_id,
            arm,
            model: &model_name,
            version: &model_version,
            ts_ms: now_ms,
        };
        let read = p
            .store
            .read_user(
                ask.context_item.as_deref(),
                p.neighbours_per_anchor,
                &record,
                p.record_ttl_secs,
            )
            .await
            .map_err(|e| {
                metrics.request_errors.inc();
                tracing::error!(error = %e, "user read failed");
                Status::unavailable("feature store unavailable")
            })?;
        let ranking_started = Instant::now();
        let answer: Answer = p.engine.rank(&ask, read, model.as_deref()).map_err(|e| {
            metrics.request_errors.inc();
            tracing::error!(error = %e, "ranking failed");
            Status::internal("ranking failed")
        })?;
        metrics
            .ranking_seconds
            .observe(ranking_started.elapsed().as_secs_f64());
        if answer.cold_start {
            metrics.cold_starts.inc();
        }
        metrics.requests(arm, ask.scenario.name()).inc();
        p.served.add(
            format!("{arm}|{model_name}|{model_version}"),
            answer.items.len() as u64,
        );
        self.log(pb::Recommendation {
            recomm_id: recomm_id.clone(),
            user_id: req.user_id.clone(),
            scenario: req.scenario,
            context_item_id: req.context_item_id.clone(),
            item_ids: answer.items.iter().map(|i| i.item.clone()).collect(),
            scores: answer.items.iter().map(|i| i.score).collect(),
            arm: arm.to_owned(),
            model: model_name.clone(),
            model_version: model_version.clone(),
            ts_ms: now_ms,
            candidates: answer.candidates as u32,
        });
        metrics
            .request_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(Response::new(pb::RecommendResponse {
            recomm_id,
            items: answer
                .items
                .into_iter()
                .map(|i| pb::RecommendedItem {
                    item_id: i.item,
                    score: i.score,
                    sources: i.sources.into_iter().map(str::to_owned).collect(),
                })
                .collect(),
            model: model_name,
            model_version,
            arm: arm.to_owned(),
            cold_start: answer.cold_start,
        }))
    }

    async fn get_experiment_stats(
        &self,
        _request: Request<pb::GetExperimentStatsRequest>,
    ) -> Result<Response<pb::ExperimentStats>, Status> {
        let groups = self.parts.store.stats().await.map_err(|e| {
            tracing::error!(error = %e, "stats read failed");
            Status::unavailable("feature store unavailable")
        })?;
        Ok(Response::new(pb::ExperimentStats {
            arms: groups.iter().map(|(g, c)| arm_stats(g, c)).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> pb::RecommendRequest {
        pb::RecommendRequest {
            user_id: "u-1".into(),
            scenario: pb::Scenario::Home as i32,
            count: 10,
            ..pb::RecommendRequest::default()
        }
    }

    #[test]
    fn bad_requests_are_invalid_arguments_naming_the_field() {
        type Breaker = fn(&mut pb::RecommendRequest);
        let cases: [(Breaker, &str); 6] = [
            (|r| r.user_id.clear(), "user_id is required"),
            (|r| r.count = 0, "count is 0"),
            (|r| r.count = 201, "count is 201"),
            (|r| r.scenario = 0, "scenario must be"),
            (
                |r| r.context_item_id = "x".repeat(129),
                "context_item_id is 129 bytes",
            ),
            (
                |r| r.exclude_item_ids = vec![String::new()],
                "exclude_item_ids is required",
            ),
        ];
        for (break_it, message) in cases {
            let mut r = request();
            break_it(&mut r);
            let err = validate(&r, 0).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(err.message().starts_with(message), "{}", err.message());
        }
        assert_eq!(validate(&request(), 5).unwrap().count, 10);
    }

    #[test]
    fn ctr_is_per_impression_else_per_item_served() {
        let c = ArmCounters {
            recommendations: 4,
            items: 40,
            impressions: 0,
            clicks: 2,
            orders: 1,
        };
        let s = arm_stats("ranker|ranker|1", &c);
        assert_eq!(
            (s.arm.as_str(), s.model.as_str(), s.model_version.as_str()),
            ("ranker", "ranker", "1")
        );
        assert_eq!(s.ctr, 0.05);
        assert_eq!(s.conversion_rate, 0.25);
        let s = arm_stats(
            "covis|covis|1",
            &ArmCounters {
                impressions: 10,
                ..c
            },
        );
        assert_eq!(s.ctr, 0.2);
    }
}
