//! Shoppers: latent preferences that never appear in events, and the history that makes a
//! returning shopper behave differently from a new one.

use crate::catalog::Catalog;
use crate::ids;
use crate::sampling::{CumulativeWeights, SimRng, chance, geometric, log_normal, normal, unit};
use crate::taxonomy::TOP_CATEGORIES;

/// How many recently viewed items a shopper's "recently viewed" list keeps.
const RECENT_ITEMS: usize = 8;
/// How many left-behind cart items a shopper comes back for.
const REMEMBERED_CART_ITEMS: usize = 4;

/// The top-level category slugs, in the order of `UserProfile::category_affinity`.
pub fn top_level_categories() -> Vec<&'static str> {
    TOP_CATEGORIES.iter().map(|top| top.slug).collect()
}

/// One shopper. The public fields are the latent truth behind their behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct UserProfile {
    pub user_id: String,
    /// Interest per top-level category (see `top_level_categories`), summing to 1. Most
    /// shoppers care about one or two categories.
    pub category_affinity: Vec<f64>,
    /// 0 = indifferent to price, 1 = avoids anything above their budget.
    pub price_sensitivity: f64,
    /// 0 = no brand preference, 1 = strongly prefers their favourite brands.
    pub brand_loyalty: f64,
    /// Visit frequency relative to the average shopper (mean about 1).
    pub activity: f64,
    /// Shift of purchase log-odds: some people buy, some browse.
    pub buying_propensity: f64,
    pub(crate) affinity_weights: CumulativeWeights,
    pub(crate) favorite_brands: Vec<usize>,
    /// Orders before the simulation started plus those placed during it.
    pub(crate) orders: u32,
    pub(crate) recent_items: Vec<u32>,
    /// Items left in the cart at the end of the last abandoned session.
    pub(crate) abandoned_cart: Vec<u32>,
}

impl UserProfile {
    pub(crate) fn generate(index: u32, catalog: &Catalog, rng: &mut SimRng) -> Self {
        let raw_affinity: Vec<f64> = TOP_CATEGORIES
            .iter()
            .map(|_| (1.5 * normal(rng)).exp())
            .collect();
        let total: f64 = raw_affinity.iter().sum();
        let category_affinity: Vec<f64> =
            raw_affinity.iter().map(|weight| weight / total).collect();
        let affinity_weights = CumulativeWeights::new(category_affinity.iter().copied());

        let price_sensitivity = (unit(rng) + unit(rng)) / 2.0;
        let brand_loyalty = unit(rng).powi(2);
        // Mean of this log-normal is exp(0.8² / 2) ≈ 1.38; dividing keeps the average at 1.
        let activity = log_normal(rng, 1.0, 0.8) / 1.377;
        let buying_propensity = 0.7 * normal(rng);

        let mut favorite_brands = Vec::new();
        let favourite_top = affinity_weights.sample(rng).unwrap_or(0);
        favorite_brands.push(catalog.brand_in_top(favourite_top, rng));
        if chance(rng, 0.4) {
            let second_top = affinity_weights.sample(rng).unwrap_or(0);
            let brand = catalog.brand_in_top(second_top, rng);
            if !favorite_brands.contains(&brand) {
                favorite_brands.push(brand);
            }
        }
        // About half the shoppers are existing customers when the simulation starts.
        let orders = if chance(rng, 0.5) {
            1 + geometric(rng, 1.5)
        } else {
            0
        };

        Self {
            user_id: ids::user(index),
            category_affinity,
            price_sensitivity,
            brand_loyalty,
            activity,
            buying_propensity,
            affinity_weights,
            favorite_brands,
            orders,
            recent_items: Vec::new(),
            abandoned_cart: Vec::new(),
        }
    }

    pub(crate) fn pick_top_category(&self, rng: &mut SimRng) -> usize {
        self.affinity_weights.sample(rng).unwrap_or(0)
    }

    pub(crate) fn likes_brand(&self, brand_index: usize) -> bool {
        self.favorite_brands.contains(&brand_index)
    }

    pub(crate) fn remember_viewed(&mut self, item: u32) {
        self.recent_items.retain(|&seen| seen != item);
        if self.recent_items.len() == RECENT_ITEMS {
            self.recent_items.remove(0);
        }
        self.recent_items.push(item);
    }

    pub(crate) fn remember_abandoned_cart(&mut self, items: impl IntoIterator<Item = u32>) {
        self.abandoned_cart = items.into_iter().take(REMEMBERED_CART_ITEMS).collect();
    }

    /// A purchase can turn a brand into a favourite, more so for loyal shoppers.
    pub(crate) fn record_order(
        &mut self,
        brands: impl IntoIterator<Item = usize>,
        rng: &mut SimRng,
    ) {
        self.orders += 1;
        self.abandoned_cart.clear();
        for brand in brands {
            if !self.likes_brand(brand) && chance(rng, 0.2 + 0.6 * self.brand_loyalty) {
                if self.favorite_brands.len() == 4 {
                    self.favorite_brands.remove(0);
                }
                self.favorite_brands.push(brand);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::{Stream, rng_for};

    #[test]
    fn affinities_are_a_distribution_concentrated_on_few_categories() {
        let catalog = Catalog::generate(500, &mut rng_for(1, Stream::Catalog));
        let mut rng = rng_for(1, Stream::Users);
        let users: Vec<UserProfile> = (0..2_000)
            .map(|index| UserProfile::generate(index, &catalog, &mut rng))
            .collect();
        for user in &users {
            let total: f64 = user.category_affinity.iter().sum();
            assert!((total - 1.0).abs() < 1e-9);
            assert!(!user.favorite_brands.is_empty());
        }
        let mean_top_share = users
            .iter()
            .map(|user| user.category_affinity.iter().copied().fold(0.0, f64::max))
            .sum::<f64>()
            / users.len() as f64;
        // Uniform interest would give 1/8; real shoppers are far more focused.
        assert!(
            mean_top_share > 0.4,
            "mean share of the favourite category was {mean_top_share}"
        );
        let mean_activity =
            users.iter().map(|user| user.activity).sum::<f64>() / users.len() as f64;
        assert!(
            (mean_activity - 1.0).abs() < 0.1,
            "mean activity was {mean_activity}"
        );
    }
}
