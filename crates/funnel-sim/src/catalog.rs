//! The simulated shop's catalog: items placed in the category tree, with brands, prices,
//! stock, a latent quality and a Zipf-like popularity.

use std::collections::BTreeMap;

use crate::ids;
use crate::sampling::{
    CumulativeWeights, SimRng, chance, index, log_normal, normal, pick, uniform, unit,
};
use crate::taxonomy::{Leaf, TITLE_SUFFIXES, TOP_CATEGORIES, attribute_choices};

/// Zipf exponent of item popularity: a few items draw most of the traffic, as in real shops.
const POPULARITY_EXPONENT: f64 = 1.0;
/// Share of items that start out of stock.
const OUT_OF_STOCK_SHARE: f64 = 0.06;

/// One catalog item as the simulator currently knows it (price and stock change over time).
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogItem {
    pub item_id: String,
    /// Brand + adjectives + product noun, e.g. "Sonora Wireless Noise-Cancelling Headphones".
    pub title: String,
    /// Slash-separated, lower-case path, e.g. `electronics/audio/headphones`.
    pub category: String,
    pub brand: String,
    /// Current price in minor currency units (cents), to keep arithmetic exact.
    pub price_cents: i64,
    pub stock: i64,
    pub attributes: BTreeMap<String, String>,
    /// Latent quality in (0, 1): drives ratings, returns and (a little) clicks. Never emitted.
    pub quality: f64,
    /// Latent share of attention, summing to 1 over the catalog. Never emitted.
    pub popularity: f64,
    pub(crate) top: usize,
    pub(crate) leaf: usize,
    pub(crate) brand_index: usize,
    /// The regular price that sales and price rises move around, so prices do not drift.
    pub(crate) list_price_cents: i64,
}

impl CatalogItem {
    /// Current price in major currency units.
    pub fn price(&self) -> f64 {
        self.price_cents as f64 / 100.0
    }
}

pub(crate) struct LeafInfo {
    pub top: usize,
    pub path: String,
    pub def: &'static Leaf,
    pub items: Vec<u32>,
    pub popularity: CumulativeWeights,
}

struct Brand {
    name: &'static str,
    price_factor: f64,
    quality_mean: f64,
}

pub(crate) struct Catalog {
    pub items: Vec<CatalogItem>,
    pub leaves: Vec<LeafInfo>,
    by_popularity: CumulativeWeights,
    /// Per top-level category, the leaves that hold at least one item.
    stocked_leaves_by_top: Vec<Vec<usize>>,
    stocked_leaves: Vec<usize>,
}

impl Catalog {
    pub(crate) fn generate(count: usize, rng: &mut SimRng) -> Self {
        let mut leaves: Vec<LeafInfo> = Vec::new();
        for (top_index, top) in TOP_CATEGORIES.iter().enumerate() {
            for sub in &top.subs {
                for leaf in &sub.leaves {
                    leaves.push(LeafInfo {
                        top: top_index,
                        path: format!("{}/{}/{}", top.slug, sub.slug, leaf.slug),
                        def: leaf,
                        items: Vec::new(),
                        popularity: CumulativeWeights::default(),
                    });
                }
            }
        }

        // Brands differ in price level and quality, and cheaper brands tend to be worse,
        // which is what makes "price vs rating" a real trade-off for shoppers.
        let brands: Vec<Brand> = TOP_CATEGORIES
            .iter()
            .flat_map(|top| top.brands.iter())
            .map(|&name| {
                let price_factor = log_normal(rng, 1.0, 0.25).clamp(0.6, 1.8);
                let quality_mean =
                    (0.6 + 0.25 * price_factor.ln() + 0.1 * normal(rng)).clamp(0.25, 0.85);
                Brand {
                    name,
                    price_factor,
                    quality_mean,
                }
            })
            .collect();
        let brand_share_by_top: Vec<CumulativeWeights> = TOP_CATEGORIES
            .iter()
            .map(|top| CumulativeWeights::new(top.brands.iter().map(|_| log_normal(rng, 1.0, 0.6))))
            .collect();

        let leaf_sizes = CumulativeWeights::new(leaves.iter().map(|_| log_normal(rng, 1.0, 0.4)));
        let mut popularity_rank: Vec<usize> = (0..count).collect();
        shuffle(&mut popularity_rank, rng);
        let harmonic: f64 = (1..=count)
            .map(|rank| (rank as f64).powf(-POPULARITY_EXPONENT))
            .sum();

        let mut items = Vec::with_capacity(count);
        for (item_index, &rank) in popularity_rank.iter().enumerate() {
            // Every leaf gets one item before any gets a second, so small catalogs still
            // cover the tree.
            let leaf_index = if count >= leaves.len() && item_index < leaves.len() {
                item_index
            } else {
                leaf_sizes.sample(rng).unwrap_or(0)
            };
            let leaf = &leaves[leaf_index];
            let top = &TOP_CATEGORIES[leaf.top];
            let brand_in_top = brand_share_by_top[leaf.top].sample(rng).unwrap_or(0);
            let brand_index = leaf.top * 6 + brand_in_top;
            let brand = &brands[brand_index];

            let popularity = ((rank + 1) as f64).powf(-POPULARITY_EXPONENT) / harmonic;
            let list_price_cents = retail_cents(
                leaf.def.median_price * brand.price_factor * log_normal(rng, 1.0, 0.35),
            );
            let quality = (brand.quality_mean + 0.12 * normal(rng)).clamp(0.02, 0.98);
            let stock = if chance(rng, OUT_OF_STOCK_SHARE) {
                0
            } else {
                // Shops stock more of what sells.
                log_normal(rng, 12.0 + 4_000.0 * popularity, 0.8).round() as i64 + 1
            };

            let sub_slug = leaf.path.split('/').nth(1).unwrap_or_default();
            let attributes = attribute_choices(top.slug, sub_slug)
                .into_iter()
                .map(|(key, values)| (key.to_owned(), (*pick(rng, values)).to_owned()))
                .collect();

            items.push(CatalogItem {
                item_id: ids::item(item_index),
                title: compose_title(brand.name, leaf.def, rng),
                category: leaf.path.clone(),
                brand: brand.name.to_owned(),
                price_cents: list_price_cents,
                stock,
                attributes,
                quality,
                popularity,
                top: leaf.top,
                leaf: leaf_index,
                brand_index,
                list_price_cents,
            });
            leaves[leaf_index].items.push(item_index as u32);
        }

        for leaf in &mut leaves {
            leaf.popularity = CumulativeWeights::new(
                leaf.items
                    .iter()
                    .map(|&item| items[item as usize].popularity),
            );
        }
        let stocked_leaves_by_top = (0..TOP_CATEGORIES.len())
            .map(|top| {
                (0..leaves.len())
                    .filter(|&leaf| leaves[leaf].top == top && !leaves[leaf].items.is_empty())
                    .collect()
            })
            .collect();
        let stocked_leaves = (0..leaves.len())
            .filter(|&leaf| !leaves[leaf].items.is_empty())
            .collect();
        let by_popularity = CumulativeWeights::new(items.iter().map(|item| item.popularity));

        Self {
            items,
            leaves,
            by_popularity,
            stocked_leaves_by_top,
            stocked_leaves,
        }
    }

    pub(crate) fn item(&self, item: u32) -> &CatalogItem {
        &self.items[item as usize]
    }

    /// A brand of the given top-level category, weighted towards the big ones (via items).
    pub(crate) fn brand_in_top(&self, top: usize, rng: &mut SimRng) -> usize {
        let leaf = self.leaf_in_top(top, rng);
        let item = self.popular_item_in_leaf(leaf, rng);
        self.item(item).brand_index
    }

    /// A leaf of `top` that holds items; any stocked leaf when `top` has none (tiny catalogs).
    pub(crate) fn leaf_in_top(&self, top: usize, rng: &mut SimRng) -> usize {
        match self.stocked_leaves_by_top.get(top) {
            Some(leaves) if !leaves.is_empty() => *pick(rng, leaves),
            _ => *pick(rng, &self.stocked_leaves),
        }
    }

    pub(crate) fn popular_item_in_leaf(&self, leaf: usize, rng: &mut SimRng) -> u32 {
        let info = &self.leaves[leaf];
        let slot = info.popularity.sample(rng).unwrap_or(0);
        info.items[slot]
    }

    pub(crate) fn popular_item(&self, rng: &mut SimRng) -> u32 {
        self.by_popularity.sample(rng).unwrap_or(0) as u32
    }

    pub(crate) fn in_stock(&self, item: u32) -> bool {
        self.item(item).stock > 0
    }

    /// Takes sold units off the shelf; true when this sale emptied it. Stock never goes
    /// negative: an order for more than is left is treated as a backorder.
    pub(crate) fn sell(&mut self, item: u32, quantity: u32) -> bool {
        let entry = &mut self.items[item as usize];
        let had_stock = entry.stock > 0;
        entry.stock = (entry.stock - i64::from(quantity)).max(0);
        had_stock && entry.stock == 0
    }

    pub(crate) fn restock(&mut self, item: u32, rng: &mut SimRng) {
        let entry = &mut self.items[item as usize];
        entry.stock += log_normal(rng, 15.0 + 3_000.0 * entry.popularity, 0.6).round() as i64 + 1;
    }

    /// One routine catalog change (a sale, a price rise, a delivery, a stock count
    /// correction); returns the item that changed.
    pub(crate) fn routine_update(&mut self, rng: &mut SimRng) -> u32 {
        let item = self.popular_item(rng);
        let roll = unit(rng);
        let out_of_stock = self.items[item as usize].stock == 0;
        if out_of_stock || roll < 0.3 {
            self.restock(item, rng);
            return item;
        }
        let entry = &mut self.items[item as usize];
        if roll < 0.65 {
            let discount = uniform(rng, 0.05, 0.35);
            entry.price_cents =
                retail_cents(entry.list_price_cents as f64 / 100.0 * (1.0 - discount));
        } else if roll < 0.85 {
            entry.price_cents =
                retail_cents(entry.list_price_cents as f64 / 100.0 * uniform(rng, 1.0, 1.1));
        } else {
            let correction = (normal(rng) * 4.0).round() as i64;
            entry.stock = (entry.stock + correction).max(0);
        }
        item
    }

    /// Items of `leaf` other than `exclude`, for "similar items" lists.
    pub(crate) fn similar_items(
        &self,
        leaf: usize,
        exclude: u32,
        count: usize,
        rng: &mut SimRng,
    ) -> Vec<u32> {
        let mut picked = Vec::with_capacity(count);
        // Bounded retries: popular items repeat, and a small leaf may not have `count` items.
        for _ in 0..count * 3 {
            if picked.len() == count {
                break;
            }
            let item = self.popular_item_in_leaf(leaf, rng);
            if item != exclude && !picked.contains(&item) {
                picked.push(item);
            }
        }
        picked
    }
}

/// Prices end in .99 (or .49/.99 below ten), as shop prices do.
pub(crate) fn retail_cents(price: f64) -> i64 {
    if price >= 10.0 {
        price.floor() as i64 * 100 + 99
    } else {
        ((price * 2.0).ceil() as i64).max(1) * 50 - 1
    }
}

fn compose_title(brand: &str, leaf: &Leaf, rng: &mut SimRng) -> String {
    let adjective_count = match unit(rng) {
        r if r < 0.1 => 0,
        r if r < 0.65 => 1,
        _ => 2,
    };
    let mut title = brand.to_owned();
    let first = index(rng, leaf.adjectives.len());
    for offset in 0..adjective_count.min(leaf.adjectives.len()) {
        title.push(' ');
        title.push_str(leaf.adjectives[(first + offset) % leaf.adjectives.len()]);
    }
    title.push(' ');
    title.push_str(leaf.noun);
    if chance(rng, 0.4) {
        title.push(' ');
        let suffix = *pick::<&str>(rng, TITLE_SUFFIXES);
        title.push_str(suffix);
    }
    title
}

fn shuffle<T>(values: &mut [T], rng: &mut SimRng) {
    for upper in (1..values.len()).rev() {
        values.swap(upper, index(rng, upper + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::{Stream, rng_for};

    #[test]
    fn retail_prices_end_in_ninety_nine_or_forty_nine() {
        assert_eq!(retail_cents(89.3), 8_999);
        assert_eq!(retail_cents(7.3), 749);
        assert_eq!(retail_cents(7.6), 799);
        assert_eq!(retail_cents(0.01), 49);
    }

    #[test]
    fn every_leaf_is_stocked_when_items_outnumber_leaves() {
        let catalog = Catalog::generate(200, &mut rng_for(1, Stream::Catalog));
        assert_eq!(catalog.leaves.len(), 72);
        assert!(catalog.leaves.iter().all(|leaf| !leaf.items.is_empty()));
        let total_popularity: f64 = catalog.items.iter().map(|item| item.popularity).sum();
        assert!((total_popularity - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_catalog_smaller_than_the_tree_still_serves_every_top_category() {
        let catalog = Catalog::generate(3, &mut rng_for(1, Stream::Catalog));
        let mut rng = rng_for(2, Stream::Traffic);
        for top in 0..TOP_CATEGORIES.len() {
            let leaf = catalog.leaf_in_top(top, &mut rng);
            assert!(!catalog.leaves[leaf].items.is_empty());
        }
    }
}
