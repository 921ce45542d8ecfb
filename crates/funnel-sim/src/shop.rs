//! The shop side of the simulation: catalog, shoppers, id counters, and the shop's own
//! (deliberately simple) search and recommendation lists that shoppers react to.

use crate::catalog::Catalog;
use crate::event::Event;
use crate::sampling::{SimRng, index, normal, pick};
use crate::text::Query;
use crate::users::UserProfile;

/// Everything sessions read and change.
pub(crate) struct Shop {
    pub catalog: Catalog,
    pub users: Vec<UserProfile>,
    /// The one stream every traffic decision draws from, in agenda order.
    pub rng: SimRng,
    pub mean_aftersales_delay_ms: f64,
    sessions_opened: u64,
    orders_placed: u64,
    lists_shown: u64,
}

/// What a step produced: events at the step's time, and work for later.
#[derive(Default)]
pub(crate) struct Outbox {
    pub events: Vec<Event>,
    pub later: Vec<(i64, Later)>,
}

pub(crate) enum Later {
    /// A review, return or ticket, fully decided when the order was placed.
    Aftersales(Event),
    /// A sold-out item comes back.
    Restock(u32),
}

impl Shop {
    pub(crate) fn new(
        catalog: Catalog,
        users: Vec<UserProfile>,
        rng: SimRng,
        mean_aftersales_delay_ms: f64,
    ) -> Self {
        Self {
            catalog,
            users,
            rng,
            mean_aftersales_delay_ms,
            sessions_opened: 0,
            orders_placed: 0,
            lists_shown: 0,
        }
    }

    pub(crate) fn open_session(&mut self) -> u64 {
        self.sessions_opened += 1;
        self.sessions_opened
    }

    pub(crate) fn place_order(&mut self) -> u64 {
        self.orders_placed += 1;
        self.orders_placed
    }

    pub(crate) fn new_list_id(&mut self) -> u64 {
        self.lists_shown += 1;
        self.lists_shown
    }

    /// The shop's search: items of the query's category, popular first, the named brand and
    /// an exact title boosted, sold-out items pushed down. A page holds 12 to 24 items.
    pub(crate) fn search_results(&mut self, query: &Query, leaf: usize) -> Vec<u32> {
        let page_size = *pick(&mut self.rng, &[12, 16, 20, 24]);
        let item_count = self.catalog.items.len() as f64;
        let mut scored: Vec<(f64, u32)> = self.catalog.leaves[leaf]
            .items
            .iter()
            .map(|&item| {
                let entry = self.catalog.item(item);
                let mut score = (entry.popularity * item_count).ln() + 0.6 * normal(&mut self.rng);
                if query.brand == Some(entry.brand_index) {
                    score += 2.0;
                }
                if query.exact_item == Some(item) {
                    score += 10.0;
                }
                if entry.stock == 0 {
                    score -= 1.5;
                }
                (score, item)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored
            .into_iter()
            .take(page_size)
            .map(|(_, item)| item)
            .collect()
    }

    /// Home page: a couple of recently viewed items for returning shoppers, then popular
    /// items from the categories the shop has learned the shopper likes.
    pub(crate) fn home_recommendations(&mut self, user: u32) -> Vec<u32> {
        let count = 8 + index(&mut self.rng, 5);
        let profile = &self.users[user as usize];
        let mut picked: Vec<u32> = profile.recent_items.iter().rev().take(2).copied().collect();
        for _ in 0..count * 3 {
            if picked.len() >= count {
                break;
            }
            let top = profile.pick_top_category(&mut self.rng);
            let leaf = self.catalog.leaf_in_top(top, &mut self.rng);
            let item = self.catalog.popular_item_in_leaf(leaf, &mut self.rng);
            if !picked.contains(&item) {
                picked.push(item);
            }
        }
        picked
    }

    /// "Similar items" on an item page: popular items of the same leaf.
    pub(crate) fn item_page_recommendations(&mut self, item: u32) -> Vec<u32> {
        let count = 6 + index(&mut self.rng, 5);
        let leaf = self.catalog.item(item).leaf;
        self.catalog.similar_items(leaf, item, count, &mut self.rng)
    }

    /// "Goes well with" on the cart page: popular items near what is in the cart.
    pub(crate) fn cart_recommendations(&mut self, cart: &[u32]) -> Vec<u32> {
        let count = 4 + index(&mut self.rng, 5);
        let mut picked = Vec::with_capacity(count);
        if cart.is_empty() {
            return picked;
        }
        for _ in 0..count * 3 {
            if picked.len() >= count {
                break;
            }
            let anchor = *pick(&mut self.rng, cart);
            let top = self.catalog.item(anchor).top;
            let leaf = self.catalog.leaf_in_top(top, &mut self.rng);
            let item = self.catalog.popular_item_in_leaf(leaf, &mut self.rng);
            if !cart.contains(&item) && !picked.contains(&item) {
                picked.push(item);
            }
        }
        picked
    }
}
