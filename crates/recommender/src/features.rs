//! The ranker's features, exactly as the training pipeline computes them offline (the
//! ranker card lists them; `models/ranker/<version>/parity.json` holds golden vectors the
//! black-box tests replay through this code).
//!
//! A request is described by [`RankInputs`] (scenario, context item, the user's recent
//! items and categories, cart and purchases, and the co-visitation and bought-together
//! lists of its anchors); items by an [`ItemLookup`] (catalog records, embeddings,
//! category popularity). [`RankInputs::prepare`] derives what every candidate shares
//! (anchors and their weights, normalisers, the user's price level) once, so that a
//! candidate's row costs a few map look-ups.
//!
//! Computation is in f64, rounded to f32 at the end.

use std::collections::HashMap;

/// Feature names in model column order.
pub const RANKER_FEATURES: [&str; FEATURE_COUNT] = [
    "scenario_home",
    "scenario_item_page",
    "scenario_cart",
    "scenario_post_purchase",
    "covis",
    "bought",
    "embedding",
    "content",
    "popularity",
    "category_affinity",
    "seen",
    "log_price",
    "price_ratio",
    "same_context_category",
    "n_sources",
];
pub const FEATURE_COUNT: usize = 15;
/// One candidate's row.
pub type RankerRow = [f32; FEATURE_COUNT];

/// Column of the co-visitation feature (the `covis` arm's score reads it).
pub const COVIS: usize = 4;
pub const BOUGHT: usize = 5;
pub const POPULARITY: usize = 8;

/// Most distinct recent items considered.
pub const RECENT_DISTINCT_MAX: usize = 20;
/// Most anchors (context item first).
pub const ANCHORS_MAX: usize = 5;
/// Most recent categories the affinity feature reads.
pub const CATEGORIES_MAX: usize = 20;
/// Cap of the price ratio.
const PRICE_RATIO_CAP: f64 = 10.0;

/// Where the list is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    Home,
    ItemPage,
    Cart,
    PostPurchase,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Home => "home",
            Scenario::ItemPage => "item_page",
            Scenario::Cart => "cart",
            Scenario::PostPurchase => "post_purchase",
        }
    }

    pub fn parse(name: &str) -> Option<Scenario> {
        [
            Scenario::Home,
            Scenario::ItemPage,
            Scenario::Cart,
            Scenario::PostPurchase,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    fn column(self) -> usize {
        self as usize
    }
}

/// A catalog record as the features and rules read it. Built by [`ItemRecord::new`]:
/// category, brand and tokens are not changed afterwards, or its content key would be
/// stale.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemRecord {
    pub category: String,
    pub brand: String,
    pub title: String,
    pub price: f64,
    pub stock: i64,
    /// False when the catalog marks the item inactive (attribute `active` = `false`).
    pub active: bool,
    /// The title's tokens (see [`tokens`]), sorted and distinct.
    pub tokens: Vec<String>,
    /// The content fields hashed, for [`content_similarity`]; set by [`ItemRecord::new`].
    pub(crate) content: ContentKey,
}

/// 128-bit hashes of an item's category, top level, brand and title tokens (0 for an
/// empty string), so that comparing two items is integer comparisons: the similarity
/// feature compares every candidate with every anchor, the category features every
/// candidate with the user's categories. Equal hashes are taken for equal strings: two
/// different strings share a hash with probability 2⁻¹²⁸, and a catalog would need about
/// 2⁶⁴ distinct strings before any pair among them is likely to.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ContentKey {
    category: u128,
    top: u128,
    brand: u128,
    /// In the order of [`ItemRecord::tokens`].
    tokens: Vec<u128>,
    /// One bit per token (the high half of its hash mod 64; the low bit of the hash is
    /// always set): two items whose bits do not meet share no token, and their Jaccard is
    /// 0 without comparing the hashes.
    token_bits: u64,
}

impl ContentKey {
    fn of(category: &str, brand: &str, tokens: &[String]) -> ContentKey {
        let tokens: Vec<u128> = tokens.iter().map(|t| content_hash(t)).collect();
        ContentKey {
            category: content_hash(category),
            top: content_hash(top_level(category)),
            brand: content_hash(brand),
            token_bits: tokens
                .iter()
                .fold(0, |bits, h| bits | 1 << ((*h >> 64) as u64 % 64)),
            tokens,
        }
    }
}

/// xxh3-128 of the string, never 0 for a non-empty string; 0 for the empty one.
fn content_hash(s: &str) -> u128 {
    if s.is_empty() {
        return 0;
    }
    xxhash_rust::xxh3::xxh3_128(s.as_bytes()) | 1
}

impl ItemRecord {
    pub fn new(category: &str, brand: &str, title: &str, price: f64) -> ItemRecord {
        let tokens = tokens(title);
        ItemRecord {
            content: ContentKey::of(category, brand, &tokens),
            category: category.to_owned(),
            brand: brand.to_owned(),
            title: title.to_owned(),
            price,
            stock: 0,
            active: true,
            tokens,
        }
    }
}

/// The path before the first `/` (the whole path without one).
pub fn top_level(category: &str) -> &str {
    category.split('/').next().unwrap_or_default()
}

/// Lower-cased title split on anything not alphanumeric, empty pieces removed, sorted
/// and distinct (a set).
pub fn tokens(title: &str) -> Vec<String> {
    let mut out: Vec<String> = title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// What the features read about items.
pub trait ItemLookup {
    fn item(&self, id: &str) -> Option<&ItemRecord>;
    /// The item's L2-normalised embedding.
    fn embedding(&self, id: &str) -> Option<&[f32]>;
    /// Category popularity of the item (the last two day buckets summed); 0 when unknown.
    fn popularity(&self, id: &str) -> f64;
}

/// Content similarity of two items: same leaf 0.4, same top level 0.2, same brand 0.2,
/// title token Jaccard × 0.2 (each only when both sides are non-empty).
pub fn content_similarity(a: Option<&ItemRecord>, c: Option<&ItemRecord>) -> f64 {
    let (Some(a), Some(c)) = (a, c) else {
        return 0.0;
    };
    let (ka, kc) = (&a.content, &c.content);
    // Non-empty (hash 0 is the empty string's) and equal.
    let same = |x: u128, y: u128| f64::from(u8::from(x != 0 && x == y));
    0.4 * same(ka.category, kc.category)
        + 0.2 * same(ka.top, kc.top)
        + 0.2 * same(ka.brand, kc.brand)
        + 0.2 * token_jaccard(ka, kc)
}

/// |a ∩ b| / |a ∪ b| of two items' title token hashes; 0 when both are empty.
fn token_jaccard(ka: &ContentKey, kc: &ContentKey) -> f64 {
    // Also the case of two empty titles.
    if ka.token_bits & kc.token_bits == 0 {
        return 0.0;
    }
    let (ta, tc) = (&ka.tokens, &kc.tokens);
    // Tokens are distinct on each side: each one matches at most one of the other's.
    let common = ta.iter().filter(|h| tc.contains(h)).count();
    common as f64 / (ta.len() + tc.len() - common) as f64
}

/// Inner product of two float32 vectors of one length, summed in float32 over eight
/// lanes (one vector register). The training pipeline's numpy `dot` of the float32
/// vectors is float32 too, in its own summation order; the two agree to float32
/// rounding, far inside the parity tolerance (the golden-vector test).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut sums = [0.0_f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for lane in 0..LANES {
            sums[lane] += x[lane] * y[lane];
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// A user's signals, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserSignals {
    /// Recently clicked or carted items, newest first, may repeat.
    pub recent: Vec<String>,
    /// Their categories, newest first, may repeat.
    pub categories: Vec<String>,
    pub cart: Vec<String>,
    /// Purchased items, most recent first.
    pub purchased: Vec<String>,
}

impl UserSignals {
    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
            && self.categories.is_empty()
            && self.cart.is_empty()
            && self.purchased.is_empty()
    }
}

/// Neighbour lists of anchors: anchor → (item, score), any order.
pub type Neighbours = HashMap<String, Vec<(String, f64)>>;

/// Everything a request brings to ranking.
#[derive(Debug, Clone)]
pub struct RankInputs {
    pub scenario: Scenario,
    pub context_item: Option<String>,
    pub user: UserSignals,
    /// Co-visitation lists of the anchors (ingest's `P:i:{item}:covis`).
    pub covis: Neighbours,
    /// Bought-together lists of the bought anchors (ingest's `P:i:{item}:bought`).
    pub bought: Neighbours,
}

/// `items` without repeats (first occurrence kept), at most `max`.
fn distinct<'a>(items: impl IntoIterator<Item = &'a String>, max: usize) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for item in items {
        if out.len() == max {
            break;
        }
        if !out.contains(&item.as_str()) {
            out.push(item);
        }
    }
    out
}

/// The recent items without repeats, first 20.
pub fn recent_distinct(user: &UserSignals) -> Vec<&str> {
    distinct(&user.recent, RECENT_DISTINCT_MAX)
}

/// Context item first, then `rest` without it, deduplicated, at most 5.
fn anchor_list<'a>(
    context: Option<&'a String>,
    rest: impl Iterator<Item = &'a String>,
) -> Vec<&'a str> {
    distinct(context.into_iter().chain(rest), ANCHORS_MAX)
}

/// The co-visitation anchors: the context item, then the recent distinct items (the first
/// five distinct recent items are always among the first 20).
pub fn anchors<'a>(context: Option<&'a String>, user: &'a UserSignals) -> Vec<&'a str> {
    anchor_list(context, user.recent.iter())
}

/// The bought-together anchors: the context item, then cart items, purchased items and
/// the recent distinct items.
pub fn bought_anchors<'a>(context: Option<&'a String>, user: &'a UserSignals) -> Vec<&'a str> {
    anchor_list(
        context,
        user.cart
            .iter()
            .chain(user.purchased.iter())
            .chain(user.recent.iter()),
    )
}

/// Fast hashing for the maps built per request (keys are item ids, not attacker-chosen
/// at a scale that matters: a request brings at most a few thousand).
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Anchors weighted 1/(1+i) by rank, and what their neighbour lists say of each item.
pub struct NeighbourScores<'a> {
    anchors: Vec<(&'a str, f64)>,
    total_weight: f64,
    /// Item → Σ over the anchors whose list names it of weight · score / the list's
    /// highest score, summed in anchor order.
    sums: FastMap<&'a str, f64>,
}

impl<'a> NeighbourScores<'a> {
    fn new(ids: &[&'a str], lists: &'a Neighbours) -> NeighbourScores<'a> {
        let named: usize = ids
            .iter()
            .filter_map(|id| lists.get(*id))
            .map(Vec::len)
            .sum();
        let mut sums = FastMap::with_capacity_and_hasher(named, Default::default());
        let mut anchors = Vec::with_capacity(ids.len());
        let mut total_weight = 0.0;
        for (i, id) in ids.iter().enumerate() {
            let weight = 1.0 / (1.0 + i as f64);
            total_weight += weight;
            anchors.push((*id, weight));
            let Some(list) = lists.get(*id) else {
                continue;
            };
            let max = list.iter().map(|(_, s)| *s).fold(f64::MIN, f64::max);
            for (item, s) in list {
                let normalised = if max != 0.0 { s / max } else { 0.0 };
                *sums.entry(item.as_str()).or_default() += weight * normalised;
            }
        }
        NeighbourScores {
            anchors,
            total_weight,
            sums,
        }
    }

    /// The feature: the item's sum divided by the anchors' total weight.
    fn score(&self, candidate: &str) -> f64 {
        if self.total_weight == 0.0 {
            return 0.0;
        }
        self.sums
            .get(candidate)
            .map_or(0.0, |sum| sum / self.total_weight)
    }

    /// The first `max` of the items the lists name, best first by the feature, ties by id.
    pub fn ranked(&self, max: usize) -> Vec<&'a str> {
        ranked(self.sums.iter().map(|(item, sum)| (*item, *sum)), max)
    }
}

/// The first `max` items best first by score, ties by id. Only those `max` are sorted: a
/// source names thousands of items and adds a few hundred.
pub fn ranked<'a>(scores: impl Iterator<Item = (&'a str, f64)>, max: usize) -> Vec<&'a str> {
    let mut v: Vec<(&str, f64)> = scores.collect();
    let front = sort_front(&mut v, max, |a, b| {
        b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0))
    });
    v.truncate(front);
    v.into_iter().map(|(i, _)| i).collect()
}

/// Puts the first `n` of `items` in `order` at the front, sorted (the rest after them,
/// in no order); the number sorted, `n` or fewer when there are fewer items.
pub fn sort_front<T>(
    items: &mut [T],
    n: usize,
    order: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> usize {
    let n = n.min(items.len());
    if n < items.len() {
        items.select_nth_unstable_by(n, &order);
    }
    items[..n].sort_unstable_by(&order);
    n
}

/// An anchor's id, catalog record and embedding.
type AnchorItem<'a> = (&'a str, Option<&'a ItemRecord>, Option<&'a [f32]>);

/// What every candidate of one request shares, derived once.
pub struct Prepared<'a, L: ItemLookup> {
    inputs: &'a RankInputs,
    lookup: &'a L,
    pub covis: NeighbourScores<'a>,
    pub bought: NeighbourScores<'a>,
    /// The co-visitation anchors' catalog records and embeddings, looked up once.
    anchor_items: Vec<AnchorItem<'a>>,
    recent_rank: FastMap<&'a str, usize>,
    mean_recent_price: Option<f64>,
    /// Hashes of the top levels of the first 20 recent categories (see [`ContentKey`]),
    /// each distinct one with how many of them it is, and how many they are.
    category_tops: Vec<(u128, usize)>,
    categories_read: usize,
    /// Hash of the context item's leaf category; none for an empty one.
    context_leaf: Option<u128>,
}

impl RankInputs {
    /// Derives the shared parts of every candidate's row.
    pub fn prepare<'a, L: ItemLookup>(&'a self, lookup: &'a L) -> Prepared<'a, L> {
        let context = self.context_item.as_ref();
        let recent = recent_distinct(&self.user);
        let prices: Vec<f64> = recent
            .iter()
            .filter_map(|id| lookup.item(id))
            .map(|r| r.price)
            .filter(|p| *p > 0.0)
            .collect();
        let mean_recent_price =
            (!prices.is_empty()).then(|| prices.iter().sum::<f64>() / prices.len() as f64);
        let covis = NeighbourScores::new(&anchors(context, &self.user), &self.covis);
        let mut category_tops: Vec<(u128, usize)> = Vec::new();
        let mut categories_read = 0;
        for category in self.user.categories.iter().take(CATEGORIES_MAX) {
            let top = content_hash(top_level(category));
            categories_read += 1;
            match category_tops.iter_mut().find(|(t, _)| *t == top) {
                Some((_, n)) => *n += 1,
                None => category_tops.push((top, 1)),
            }
        }
        let anchor_items = covis
            .anchors
            .iter()
            .map(|(id, _)| (*id, lookup.item(id), lookup.embedding(id)))
            .collect();
        Prepared {
            inputs: self,
            lookup,
            covis,
            anchor_items,
            bought: NeighbourScores::new(&bought_anchors(context, &self.user), &self.bought),
            recent_rank: recent.iter().enumerate().map(|(i, id)| (*id, i)).collect(),
            mean_recent_price,
            category_tops,
            categories_read,
            context_leaf: context
                .and_then(|c| lookup.item(c))
                .map(|r| r.content.category)
                .filter(|c| *c != 0),
        }
    }
}

impl<'a, L: ItemLookup> Prepared<'a, L> {
    /// The co-visitation anchors, context item first.
    pub fn covis_anchors(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.covis.anchors.iter().map(|(id, _)| *id)
    }

    /// The row of `candidate`, produced by `n_sources` distinct sources.
    pub fn row(&self, candidate: &str, n_sources: usize) -> RankerRow {
        let lookup = self.lookup;
        self.row_of(
            candidate,
            lookup.item(candidate),
            lookup.embedding(candidate),
            n_sources,
        )
    }

    /// [`Prepared::row`] with the candidate's catalog record and embedding already
    /// looked up.
    pub fn row_of(
        &self,
        candidate: &str,
        item: Option<&ItemRecord>,
        embedding: Option<&[f32]>,
        n_sources: usize,
    ) -> RankerRow {
        let mut f = [0.0_f64; FEATURE_COUNT];
        f[self.inputs.scenario.column()] = 1.0;
        f[COVIS] = self.covis.score(candidate);
        f[BOUGHT] = self.bought.score(candidate);
        f[6] = embedding.map_or(0.0, |c| {
            self.anchor_items
                .iter()
                .filter_map(|(_, _, embedding)| *embedding)
                .map(|a| f64::from(dot(a, c)))
                .reduce(f64::max)
                .unwrap_or(0.0)
        });
        // The most similar anchor other than the candidate itself. Records come from
        // one lookup, so the same record is the same item; an anchor or a candidate
        // without a record has similarity 0, which the maximum (of values ≥ 0, 0 when
        // there are none) ignores whether it is excluded or not.
        f[7] = self
            .anchor_items
            .iter()
            .filter(|(_, record, _)| !record.zip(item).is_some_and(|(a, c)| std::ptr::eq(a, c)))
            .map(|(_, record, _)| content_similarity(*record, item))
            .reduce(f64::max)
            .unwrap_or(0.0);
        f[POPULARITY] = self.lookup.popularity(candidate).ln_1p();
        let top = item.map_or(0, |r| r.content.top);
        f[9] = if self.categories_read == 0 || top == 0 {
            0.0
        } else {
            self.category_tops
                .iter()
                .find(|(t, _)| *t == top)
                .map_or(0.0, |(_, n)| *n as f64 / self.categories_read as f64)
        };
        f[10] = self
            .recent_rank
            .get(candidate)
            .map_or(0.0, |r| 1.0 / (1.0 + *r as f64));
        let price = item.map_or(0.0, |r| r.price);
        f[11] = price.ln_1p();
        f[12] = match self.mean_recent_price {
            Some(mean) => (price / mean).min(PRICE_RATIO_CAP),
            None => 1.0,
        };
        f[13] =
            f64::from(u8::from(self.context_leaf.is_some_and(|leaf| {
                item.is_some_and(|r| r.content.category == leaf)
            })));
        f[14] = n_sources as f64;
        f.map(|v| v as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Items(HashMap<String, ItemRecord>);

    impl ItemLookup for Items {
        fn item(&self, id: &str) -> Option<&ItemRecord> {
            self.0.get(id)
        }
        fn embedding(&self, _: &str) -> Option<&[f32]> {
            None
        }
        fn popularity(&self, _: &str) -> f64 {
            0.0
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn anchors_put_the_context_first_and_keep_five_distinct() {
        let user = UserSignals {
            recent: s(&["b", "a", "b", "c", "d", "e", "f"]),
            cart: s(&["x"]),
            purchased: s(&["y", "a"]),
            ..UserSignals::default()
        };
        let ctx = "a".to_owned();
        assert_eq!(anchors(Some(&ctx), &user), ["a", "b", "c", "d", "e"]);
        assert_eq!(anchors(None, &user), ["b", "a", "c", "d", "e"]);
        assert_eq!(bought_anchors(Some(&ctx), &user), ["a", "x", "y", "b", "c"]);
    }

    #[test]
    fn covis_is_weighted_by_anchor_rank_and_normalised_by_each_lists_maximum() {
        let user = UserSignals {
            recent: s(&["a", "b"]),
            ..UserSignals::default()
        };
        let covis: Neighbours = [
            (
                "a".to_owned(),
                vec![("c".to_owned(), 4.0), ("d".to_owned(), 2.0)],
            ),
            ("b".to_owned(), vec![("c".to_owned(), 1.0)]),
        ]
        .into();
        let inputs = RankInputs {
            scenario: Scenario::Home,
            context_item: None,
            user,
            covis,
            bought: Neighbours::new(),
        };
        let items = Items(HashMap::new());
        let p = inputs.prepare(&items);
        // (1·1 + 0.5·1) / 1.5 and (1·0.5) / 1.5
        assert!((p.row("c", 1)[COVIS] - 1.0).abs() < 1e-6);
        assert!((p.row("d", 2)[COVIS] - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(p.row("d", 2)[14], 2.0);
        assert_eq!(p.row("d", 2)[0], 1.0);
        assert_eq!(p.row("a", 1)[10], 1.0);
        assert_eq!(p.row("b", 1)[10], 0.5);
        assert_eq!(p.row("d", 1)[12], 1.0);
    }

    #[test]
    fn neighbour_lists_rank_their_items_by_the_feature() {
        let lists: Neighbours = [
            (
                "x".to_owned(),
                vec![("a".to_owned(), 10.0), ("b".to_owned(), 5.0)],
            ),
            ("y".to_owned(), vec![("b".to_owned(), 1.0)]),
        ]
        .into();
        // a: 1 · 10/10; b: 1 · 5/10 + 0.5 · 1/1, a tie broken by id
        let scores = NeighbourScores::new(&["x", "y"], &lists);
        assert_eq!(scores.ranked(9), ["a", "b"]);
        assert_eq!(scores.ranked(1), ["a"]);
        assert!((scores.score("b") - 1.0 / 1.5).abs() < 1e-12);
        assert_eq!(scores.score("c"), 0.0);
        // b: 1 · 1/1 + 0.5 · 5/10; a: 0.5 · 10/10; z has no list but counts in the total
        let scores = NeighbourScores::new(&["y", "x", "z"], &lists);
        assert_eq!(scores.ranked(2), ["b", "a"]);
        assert!((scores.score("b") - 1.25 / (1.0 + 0.5 + 1.0 / 3.0)).abs() < 1e-12);
    }

    #[test]
    fn the_lane_dot_product_is_the_sequential_one_to_float32_rounding() {
        for dim in [1, 8, 32, 35] {
            let a: Vec<f32> = (0..dim)
                .map(|i| ((i * 7 % 11) as f32 - 5.0) / 9.0)
                .collect();
            let b: Vec<f32> = (0..dim)
                .map(|i| ((i * 5 % 13) as f32 - 6.0) / 7.0)
                .collect();
            let exact: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            let lanes = f64::from(dot(&a, &b));
            assert!(
                (lanes - exact).abs() < 1e-6,
                "dim {dim}: {lanes} vs {exact}"
            );
        }
        assert_eq!(dot(&[0.5; 16], &[2.0; 16]), 16.0);
    }

    #[test]
    fn content_similarity_adds_leaf_top_brand_and_title_overlap() {
        let a = ItemRecord::new("e/audio/head", "Sonora", "Sonora Wireless Headphones", 10.0);
        let b = ItemRecord::new("e/audio/head", "Sonora", "Wireless Earbuds", 10.0);
        let c = ItemRecord::new("e/tv", "Other", "", 10.0);
        // 0.4 + 0.2 + 0.2 + 0.2 · 1/4
        assert!((content_similarity(Some(&a), Some(&b)) - 0.85).abs() < 1e-12);
        assert!((content_similarity(Some(&a), Some(&c)) - 0.2).abs() < 1e-12);
        assert_eq!(content_similarity(None, None), 0.0);
        assert_eq!(tokens("Sonora, sonora-X1!"), ["sonora", "x1"]);
    }

    /// Content similarity on the strings alone, as it was before the hashed keys.
    fn content_similarity_on_strings(a: Option<&ItemRecord>, c: Option<&ItemRecord>) -> f64 {
        let empty = ItemRecord::default();
        let (a, c) = (a.unwrap_or(&empty), c.unwrap_or(&empty));
        let same = |x: &str, y: &str| !x.is_empty() && x == y;
        0.4 * f64::from(u8::from(same(&a.category, &c.category)))
            + 0.2
                * f64::from(u8::from(same(
                    top_level(&a.category),
                    top_level(&c.category),
                )))
            + 0.2 * f64::from(u8::from(same(&a.brand, &c.brand)))
            + 0.2 * jaccard(&a.tokens, &c.tokens)
    }

    /// |a ∩ b| / |a ∪ b| of two sorted distinct token lists; 0 when both are empty.
    fn jaccard(a: &[String], b: &[String]) -> f64 {
        if a.is_empty() && b.is_empty() {
            return 0.0;
        }
        let (mut i, mut j, mut common) = (0, 0, 0usize);
        while i < a.len() && j < b.len() {
            match a[i].cmp(&b[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    common += 1;
                    i += 1;
                    j += 1;
                }
            }
        }
        common as f64 / (a.len() + b.len() - common) as f64
    }

    #[test]
    fn hashed_content_similarity_equals_the_one_on_strings() {
        let items = [
            ItemRecord::new("e/audio/head", "Sonora", "Sonora Wireless Headphones", 10.0),
            ItemRecord::new("e/audio/head", "Sonora", "Wireless Earbuds", 10.0),
            ItemRecord::new("e/audio/speakers", "Basso", "Wireless speaker, black", 10.0),
            ItemRecord::new("e/tv", "Other", "", 10.0),
            ItemRecord::new("e", "", "Black Cable", 10.0),
            ItemRecord::new("", "Sonora", "cable black headphones", 10.0),
            ItemRecord::new("home/kitchen", "Basso", "Kettle", 10.0),
            ItemRecord::default(),
        ];
        let mut checked = 0;
        for a in items.iter().map(Some).chain([None]) {
            for c in items.iter().map(Some).chain([None]) {
                let (hashed, strings) = (
                    content_similarity(a, c),
                    content_similarity_on_strings(a, c),
                );
                assert_eq!(hashed.to_bits(), strings.to_bits(), "{a:?} vs {c:?}");
                checked += usize::from(hashed > 0.0);
            }
        }
        // Not a test of zeros only: many pairs share something.
        assert!(checked >= 20, "{checked}");
        // The token mask uses even bit positions too (a hash's low bit is always set).
        let bits = items.iter().fold(0, |b, i| b | i.content.token_bits);
        assert_ne!(bits & 0x5555_5555_5555_5555, 0, "{bits:064b}");
    }
}
