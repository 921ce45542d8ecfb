//! From a request and what Redis said about the user to a ranked, filtered, diversified
//! list: candidates, rules, features, scores (the ONNX ranker or the co-visitation score,
//! by arm), boosts, diversity.
//!
//! [`Engine::rank`] is CPU work (features for every candidate and one inference run over
//! them), bounded by `candidates.total_max`; the gRPC edge calls it on its async worker.

use std::path::Path;
use std::sync::Arc;

use funnel_model::{LoadOptions, Model, ModelHandle};
use ndarray::Array2;

use crate::candidates::{Candidate, Source, SourceData};
use crate::catalog::{Catalog, CatalogData, CatalogEntry, Popularity};
use crate::config::{CandidateLimits, ExperimentConfig};
use crate::features::{
    BOUGHT, COVIS, FEATURE_COUNT, ItemLookup, ItemRecord, POPULARITY, RANKER_FEATURES, RankInputs,
    RankerRow, Scenario, sort_front,
};
use crate::metrics::Metrics;
use crate::rules::{Drop, RequestLimits, RulesCell};
use crate::state::UserRead;

/// Arm names as served and counted.
pub const ARM_RANKER: &str = "ranker";
pub const ARM_COVIS: &str = "covis";
/// What the `covis` arm reports as its model: the fixed source-score formula.
pub const COVIS_MODEL: (&str, &str) = ("covis", "1");

const BUCKETS: u64 = 10_000;

/// The A/B split by a stable hash of the user id.
#[derive(Debug, Clone)]
pub struct Arms {
    ranker_buckets: u64,
    salt: String,
}

impl Arms {
    pub fn new(config: &ExperimentConfig) -> Self {
        Arms {
            ranker_buckets: (config.ranker_share * BUCKETS as f64).round() as u64,
            salt: config.salt.clone(),
        }
    }

    /// `ranker` or `covis`: xxh3_64(salt + user id) mod 10000 against the share; stable
    /// across instances and restarts.
    pub fn arm(&self, user_id: &str) -> &'static str {
        let mut bytes = Vec::with_capacity(self.salt.len() + user_id.len());
        bytes.extend_from_slice(self.salt.as_bytes());
        bytes.extend_from_slice(user_id.as_bytes());
        if xxhash_rust::xxh3::xxh3_64(&bytes) % BUCKETS < self.ranker_buckets {
            ARM_RANKER
        } else {
            ARM_COVIS
        }
    }
}

/// A model whose card does not list the ranker's features in order.
#[derive(Debug, thiserror::Error)]
#[error("model {model} lists features {listed:?}, the code computes {RANKER_FEATURES:?}")]
pub struct FeatureMismatch {
    pub model: String,
    pub listed: Vec<String>,
}

/// Loads, validates (card, sha256, golden vectors, the feature list) and warms a ranker
/// version. Blocking.
pub fn load_ranker(
    root: &Path,
    name: &str,
    version: &str,
    sessions: usize,
) -> anyhow::Result<Model> {
    let options = LoadOptions {
        sessions,
        ..LoadOptions::default()
    };
    let model = Model::from_store(root, name, version, &options)?;
    if !model
        .features()
        .iter()
        .map(String::as_str)
        .eq(RANKER_FEATURES)
    {
        return Err(FeatureMismatch {
            model: model.id().to_string(),
            listed: model.features().to_vec(),
        }
        .into());
    }
    Ok(model)
}

/// Click probabilities of `rows`; blocking.
pub fn score_rows(model: &Model, rows: &[RankerRow]) -> Result<Vec<f32>, funnel_model::ModelError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let matrix = Array2::from_shape_fn((rows.len(), FEATURE_COUNT), |(r, c)| rows[r][c]);
    Ok(model.predict_scores(matrix.view())?.to_vec())
}

/// The `covis` arm's score: co-visitation plus bought-together, popularity breaking ties.
pub fn covis_score(row: &RankerRow) -> f32 {
    row[COVIS] + row[BOUGHT] + 1e-3 * row[POPULARITY]
}

/// `pick(items sorted by order)` for a `pick` that keeps at most `count` items reading
/// from the front (diversity), sorting only what it reads: the best `4 · count` first,
/// the rest only when `pick` found fewer than `count` among them.
fn best_first<T, X, O, P>(items: &mut [T], count: usize, order: O, pick: P) -> Vec<X>
where
    O: Fn(&T, &T) -> std::cmp::Ordering + Copy,
    P: Fn(&[T]) -> Vec<X>,
{
    let window = sort_front(items, count.saturating_mul(4), order);
    let top = pick(&items[..window]);
    if top.len() >= count || window == items.len() {
        return top;
    }
    items[window..].sort_unstable_by(order);
    pick(items)
}

/// What features read, over the catalog (with the embeddings) and popularity of the
/// moment.
pub struct View<'a> {
    pub catalog: &'a CatalogData,
    pub popularity: &'a Popularity,
}

impl ItemLookup for View<'_> {
    fn item(&self, id: &str) -> Option<&ItemRecord> {
        self.catalog.get(id).map(|e| &e.record)
    }

    fn embedding(&self, id: &str) -> Option<&[f32]> {
        self.catalog.embeddings.as_deref()?.get(id)
    }

    fn popularity(&self, id: &str) -> f64 {
        self.popularity.by_item.get(id).copied().unwrap_or(0.0)
    }
}

/// A request as the engine takes it (validated).
#[derive(Debug, Clone)]
pub struct Ask {
    pub scenario: Scenario,
    pub context_item: Option<String>,
    pub count: usize,
    pub category: String,
    pub exclude: Vec<String>,
    pub now_ms: i64,
}

/// One item of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub item: String,
    pub score: f32,
    pub sources: Vec<&'static str>,
}

/// An answer before it is sent.
#[derive(Debug, Clone)]
pub struct Answer {
    pub items: Vec<Ranked>,
    /// Candidates scored (after the rules).
    pub candidates: usize,
    pub cold_start: bool,
}

/// Everything ranking reads; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub catalog: Catalog,
    pub rules: RulesCell,
    pub ranker: Arc<ModelHandle>,
    pub limits: CandidateLimits,
    pub new_item_ms: i64,
    /// `catalog.index_per_key`.
    pub index_per_key: usize,
    pub metrics: Metrics,
}

impl Engine {
    /// Ranks for `ask` with what Redis said about the user; `model` is the ranker version
    /// this request uses, `None` for the `covis` arm. Blocking.
    pub fn rank(
        &self,
        ask: &Ask,
        read: UserRead,
        model: Option<&Model>,
    ) -> Result<Answer, funnel_model::ModelError> {
        let cold_start = read.user.is_empty();
        let inputs = RankInputs {
            scenario: ask.scenario,
            context_item: ask.context_item.clone(),
            user: read.user,
            covis: read.covis,
            bought: read.bought,
        };
        let data = self.catalog.read();
        let popularity = self.catalog.popularity();
        let view = View {
            catalog: &data,
            popularity: &popularity,
        };
        let prepared = inputs.prepare(&view);
        let new_since_ms = ask.now_ms - self.new_item_ms;
        let candidates = SourceData {
            inputs: &inputs,
            prepared: &prepared,
            catalog: &data,
            popularity: &popularity,
            new_since_ms,
            index_per_key: self.index_per_key,
        }
        .generate(&self.limits);
        for (source, n) in &candidates.produced {
            self.metrics.candidates(source.name()).inc_by(*n as u64);
        }

        let rules = self.rules.get();
        let mut excluded: Vec<&str> = ask.exclude.iter().map(String::as_str).collect();
        excluded.extend(ask.context_item.as_deref());
        let limits = RequestLimits {
            scenario: ask.scenario,
            now_ms: ask.now_ms,
            purchased: &read.purchased_at,
            cart: &inputs.user.cart,
            excluded: &excluded,
            category: &ask.category,
        };
        // Each candidate's catalog entry is looked up once, for the rules, its row and
        // its boost; drops are counted per request, not per candidate.
        let mut drops = [0_u64; Drop::ALL.len()];
        let kept: Vec<(&Candidate, &CatalogEntry)> = candidates
            .list
            .iter()
            .filter_map(|c| {
                let entry = data.get(c.item);
                match rules.drop_reason(c.item, entry.map(|e| &e.record), &limits) {
                    Some(d) => {
                        drops[d as usize] += 1;
                        None
                    }
                    // `drop_reason` drops a candidate without an entry (`Unknown`).
                    None => Some((c, entry?)),
                }
            })
            .collect();
        for d in Drop::ALL {
            let n = drops[d as usize];
            if n > 0 {
                self.metrics.rule_drops(d.label()).inc_by(n);
            }
        }
        self.metrics
            .candidates_per_request
            .observe(kept.len() as f64);

        let rows: Vec<RankerRow> = kept
            .iter()
            .map(|(c, entry)| {
                let embedding = data.embedding(entry);
                prepared.row_of(c.item, Some(&entry.record), embedding, c.source_count())
            })
            .collect();
        let scores = match model {
            Some(model) => score_rows(model, &rows)?,
            None => rows.iter().map(covis_score).collect(),
        };
        let mut scored: Vec<(usize, f32, &ItemRecord)> = kept
            .iter()
            .zip(scores)
            .enumerate()
            .map(|(n, ((_, entry), score))| {
                let boost = rules.boost(&entry.record, entry.first_seen_ms >= new_since_ms);
                (n, (f64::from(score) * boost) as f32, &entry.record)
            })
            .collect();
        // Ids are distinct, so the order is total and an unstable sort is deterministic.
        let order = |a: &(usize, f32, &ItemRecord), b: &(usize, f32, &ItemRecord)| {
            b.1.total_cmp(&a.1)
                .then_with(|| kept[a.0].0.item.cmp(kept[b.0].0.item))
        };
        let top = best_first(&mut scored, ask.count, order, |best| {
            rules.diversify(best.iter().map(|(n, s, r)| ((*n, *s), *r)), ask.count)
        });
        let items = top
            .into_iter()
            .map(|(n, score)| {
                let sources: Vec<&'static str> = kept[n].0.sources().map(Source::name).collect();
                for s in &sources {
                    self.metrics.served(s).inc();
                }
                Ranked {
                    item: kept[n].0.item.to_owned(),
                    score,
                    sources,
                }
            })
            .collect();
        Ok(Answer {
            items,
            candidates: kept.len(),
            cold_start,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At most one item per group (`x / 10`), the first `count` best by value.
    fn one_per_group(sorted: &[u32], count: usize) -> Vec<u32> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for x in sorted {
            if out.len() == count {
                break;
            }
            if !seen.contains(&(x / 10)) {
                seen.push(x / 10);
                out.push(*x);
            }
        }
        out
    }

    #[test]
    fn sorting_only_the_best_picks_what_sorting_everything_picks() {
        // Descending by value; groups of ten, so the caps read past the first 4 · count.
        let order = |a: &u32, b: &u32| b.cmp(a);
        for count in [1, 3, 10, 40] {
            let shuffled: Vec<u32> = (0..200).map(|i| (i * 73) % 200).collect();
            let mut all = shuffled.clone();
            all.sort_unstable_by(order);
            let want = one_per_group(&all, count);
            let mut items = shuffled;
            let got = best_first(&mut items, count, order, |s| one_per_group(s, count));
            assert_eq!(got, want, "count {count}");
            assert_eq!(got.len(), count.min(20));
        }
        // The window holds the answer: caps that do not bind.
        let mut items: Vec<u32> = (0..50).map(|i| i * 10).collect();
        let got = best_first(&mut items, 3, order, |s| one_per_group(s, 3));
        assert_eq!(got, [490, 480, 470]);
    }

    #[test]
    fn arms_are_stable_and_follow_the_share() {
        let config = ExperimentConfig {
            ranker_share: 0.3,
            ..ExperimentConfig::default()
        };
        let arms = Arms::new(&config);
        let ranker = (0..10_000)
            .filter(|n| arms.arm(&format!("u-{n}")) == ARM_RANKER)
            .count();
        assert!((2_800..=3_200).contains(&ranker), "{ranker}");
        assert_eq!(arms.arm("u-42"), arms.arm("u-42"));
        let all = Arms::new(&ExperimentConfig {
            ranker_share: 1.0,
            ..config.clone()
        });
        let none = Arms::new(&ExperimentConfig {
            ranker_share: 0.0,
            ..config
        });
        assert_eq!(all.arm("u-42"), ARM_RANKER);
        assert_eq!(none.arm("u-42"), ARM_COVIS);
    }
}
