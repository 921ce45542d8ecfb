//! Candidate sources. Each produces items with a score of its own, tagged with its name;
//! an item several sources produce carries every tag (the ranker's `n_sources`).
//!
//! - `covis`: co-visited with the anchors (ingest's `P:i:{item}:covis`), best first by
//!   the ranker's `covis` feature (each list normalised by its maximum, weighted 1/(1+i)
//!   by anchor rank), computed once for both.
//! - `bought`: bought together with the bought-together anchors, the same way.
//! - `embedding`: the anchors' nearest neighbours in the item embeddings.
//! - `popular`: top items of the context item's category and its parent, of the user's
//!   recent categories, and trending over every top-level category (today + yesterday).
//! - `recent`: the user's own recent items.
//! - `content`: items sharing the anchors' leaf category, brand or title words, scored by
//!   content similarity, items new to the catalog first (a word shared by more than
//!   `catalog.index_per_key` items is too common to count); without anchors, the newest items
//!   of the trending items' categories (cold start).

use std::collections::HashMap;

use crate::catalog::{CatalogData, Popularity};
use crate::config::CandidateLimits;
use crate::features::{
    FastMap, ItemLookup, Prepared, RankInputs, content_similarity, ranked, recent_distinct,
};

/// A candidate source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Covis,
    Bought,
    Embedding,
    Popular,
    Recent,
    Content,
}

impl Source {
    pub const ALL: [Source; 6] = [
        Source::Covis,
        Source::Bought,
        Source::Embedding,
        Source::Popular,
        Source::Recent,
        Source::Content,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Source::Covis => "covis",
            Source::Bought => "bought",
            Source::Embedding => "embedding",
            Source::Popular => "popular",
            Source::Recent => "recent",
            Source::Content => "content",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// One candidate and the sources that produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate<'a> {
    /// Borrowed from what the sources read (the request's lists, the catalog).
    pub item: &'a str,
    sources: u8,
}

impl Candidate<'_> {
    pub fn sources(&self) -> impl Iterator<Item = Source> + '_ {
        Source::ALL
            .into_iter()
            .filter(|s| self.sources & s.bit() != 0)
    }

    pub fn source_count(&self) -> usize {
        self.sources.count_ones() as usize
    }
}

/// Candidates in the order sources produced them, at most `max`.
#[derive(Debug, Default)]
pub struct Candidates<'a> {
    pub list: Vec<Candidate<'a>>,
    index: FastMap<&'a str, usize>,
    max: usize,
    /// Items each source produced (also those already produced by another).
    pub produced: HashMap<Source, usize>,
}

impl<'a> Candidates<'a> {
    pub fn new(max: usize) -> Self {
        Candidates {
            max,
            // Room for a typical request's candidates without growing.
            index: FastMap::with_capacity_and_hasher(max.min(1024), Default::default()),
            ..Candidates::default()
        }
    }

    /// How many of a source's best items an [`Candidates::add`] of up to `limit` reads:
    /// `limit` while the list has room for them all, else all of them (an item the full
    /// list has no room for is skipped, not counted).
    fn wanted(&self, limit: usize) -> usize {
        if self.list.len() + limit <= self.max {
            limit
        } else {
            usize::MAX
        }
    }

    /// Adds `items` of `source` (best first), up to `limit` of them.
    fn add(&mut self, source: Source, items: impl IntoIterator<Item = &'a str>, limit: usize) {
        let mut n = 0;
        for item in items {
            if n == limit {
                break;
            }
            match self.index.get(item) {
                Some(at) => self.list[*at].sources |= source.bit(),
                None if self.list.len() < self.max => {
                    self.index.insert(item, self.list.len());
                    self.list.push(Candidate {
                        item,
                        sources: source.bit(),
                    });
                }
                None => continue,
            }
            n += 1;
        }
        *self.produced.entry(source).or_default() += n;
    }
}

/// Takes from each list in turn, so that no one list fills the source alone.
fn interleave<'a>(lists: &[&'a [(String, f64)]]) -> Vec<&'a str> {
    let longest = lists.iter().map(|l| l.len()).max().unwrap_or(0);
    (0..longest)
        .flat_map(|rank| lists.iter().filter_map(move |l| l.get(rank)))
        .map(|(item, _)| item.as_str())
        .collect()
}

/// Everything the sources read.
pub struct SourceData<'a, L: ItemLookup> {
    pub inputs: &'a RankInputs,
    pub prepared: &'a Prepared<'a, L>,
    pub catalog: &'a CatalogData,
    pub popularity: &'a Popularity,
    /// Items first seen at or after this time (ms) are new.
    pub new_since_ms: i64,
    /// `catalog.index_per_key`: a title word's pool this full is skipped.
    pub index_per_key: usize,
}

impl<'a, L: ItemLookup> SourceData<'a, L> {
    fn popular(&self) -> Vec<&'a str> {
        let p = self.popularity;
        let mut categories: Vec<&str> = Vec::new();
        let context = self.inputs.context_item.as_deref();
        if let Some(leaf) = context
            .and_then(|c| self.catalog.get(c))
            .map(|e| e.record.category.as_str())
        {
            categories.push(leaf);
            if let Some((parent, _)) = leaf.rsplit_once('/') {
                categories.push(parent);
            }
        }
        for c in &self.inputs.user.categories {
            if categories.len() >= 7 {
                break;
            }
            if !categories.contains(&c.as_str()) {
                categories.push(c);
            }
        }
        let mut lists: Vec<&[(String, f64)]> = categories
            .iter()
            .filter_map(|c| p.by_category.get(*c).map(Vec::as_slice))
            .collect();
        lists.push(&p.trending);
        interleave(&lists)
    }

    fn embedding(&self, max: usize) -> Vec<&'a str> {
        let Some(e) = self.catalog.embeddings.as_deref() else {
            return Vec::new();
        };
        let mut scores: FastMap<&str, f64> = FastMap::default();
        for anchor in self.prepared.covis_anchors() {
            for (item, dot) in e.neighbours(anchor) {
                let s = scores.entry(item).or_insert(f64::MIN);
                *s = s.max(f64::from(dot));
            }
        }
        ranked(scores.into_iter(), max)
    }

    fn content(&self, max: usize) -> Vec<&'a str> {
        let catalog: &'a CatalogData = self.catalog;
        let anchors: Vec<&str> = self.prepared.covis_anchors().collect();
        if anchors.is_empty() {
            // Cold start: the newest items of the trending items' categories.
            let mut leaves: Vec<&str> = Vec::new();
            for (item, _) in self.popularity.trending.iter().take(20) {
                if let Some(e) = catalog.get(item)
                    && !leaves.contains(&e.record.category.as_str())
                {
                    leaves.push(&e.record.category);
                }
            }
            let pools: Vec<_> = leaves
                .iter()
                .filter_map(|l| catalog.by_leaf.get(*l))
                .collect();
            let longest = pools.iter().map(|p| p.len()).max().unwrap_or(0);
            return (0..longest)
                .flat_map(|rank| pools.iter().filter_map(move |p| p.get(rank)))
                .filter_map(|slot| Some(catalog.at(*slot)?.0))
                .collect();
        }
        // By slot: the pools hold slots, and an item in several pools is scored once.
        let mut scores: FastMap<u32, f64> = FastMap::default();
        for anchor in anchors {
            let Some((anchor_slot, (_, a))) = catalog
                .slot(anchor)
                .and_then(|slot| Some((slot, catalog.at(slot)?)))
            else {
                continue;
            };
            let r = &a.record;
            // A title word that fills its index (`catalog.index_per_key` items) is too
            // common to say anything; such pools are skipped.
            let words = r
                .tokens
                .iter()
                .filter_map(|t| catalog.by_token.get(t))
                .filter(|pool| pool.len() < self.index_per_key);
            let pools = [
                catalog.by_leaf.get(&r.category),
                catalog.by_brand.get(&r.brand),
            ]
            .into_iter()
            .flatten()
            .chain(words);
            for pool in pools {
                scores.reserve(pool.len());
                for &slot in pool {
                    if slot == anchor_slot {
                        continue;
                    }
                    let std::collections::hash_map::Entry::Vacant(score) = scores.entry(slot)
                    else {
                        continue;
                    };
                    let Some((_, entry)) = catalog.at(slot) else {
                        continue;
                    };
                    let sim = content_similarity(Some(r), Some(&entry.record));
                    // New items first: they have no interactions for the other sources.
                    let new = entry.first_seen_ms >= self.new_since_ms;
                    score.insert(sim + if new { 1.0 } else { 0.0 });
                }
            }
        }
        ranked(
            scores
                .into_iter()
                .filter_map(|(slot, score)| Some((catalog.at(slot)?.0, score))),
            max,
        )
    }

    /// Every source's candidates, in source order, within `limits`.
    pub fn generate(&self, limits: &CandidateLimits) -> Candidates<'a> {
        let mut c = Candidates::new(limits.total_max);
        let prepared = self.prepared;
        c.add(
            Source::Covis,
            prepared.covis.ranked(c.wanted(limits.covis)),
            limits.covis,
        );
        c.add(
            Source::Bought,
            prepared.bought.ranked(c.wanted(limits.bought)),
            limits.bought,
        );
        c.add(
            Source::Embedding,
            self.embedding(c.wanted(limits.embedding)),
            limits.embedding,
        );
        c.add(
            Source::Recent,
            recent_distinct(&self.inputs.user),
            limits.recent,
        );
        c.add(
            Source::Content,
            self.content(c.wanted(limits.content)),
            limits.content,
        );
        c.add(Source::Popular, self.popular(), limits.popular);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candidate_from_two_sources_carries_both_and_the_total_is_bounded() {
        let mut c = Candidates::new(3);
        c.add(Source::Covis, ["a", "b"], 10);
        c.add(Source::Popular, ["b", "c", "d", "e"], 3);
        assert_eq!(c.list.len(), 3);
        let b: Vec<_> = c.list[1].sources().map(Source::name).collect();
        assert_eq!(b, ["covis", "popular"]);
        assert_eq!(c.list[1].source_count(), 2);
        assert_eq!(c.produced[&Source::Popular], 2);
    }

    #[test]
    fn interleaving_takes_from_each_list_in_turn() {
        let a = vec![("a1".to_owned(), 3.0), ("a2".to_owned(), 2.0)];
        let b = vec![("b1".to_owned(), 1.0)];
        assert_eq!(interleave(&[&a, &b]), ["a1", "b1", "a2"]);
    }
}
