//! One browsing session as a small state machine: each step is one thing the shopper does
//! (search, look at a list, open an item, change the cart, check out), emitted at the step's
//! time, followed by a realistic pause.
//!
//! Whether the session ends in an order is drawn once, at the start, from a latent purchase
//! probability. Early behaviour (how many lists are read, what is clicked) follows the latent
//! intent behind that probability; later behaviour (what ends up in the cart) also follows
//! the drawn outcome, since an order needs a cart. `purchase_probability` is therefore the
//! best possible prediction at the session's start, not after it.

use serde::{Deserialize, Serialize};

use crate::aftersales;
use crate::event::{Body, Event, ListKind, OrderLine};
use crate::sampling::{chance, geometric, index, log_normal, sigmoid, unit};
use crate::shop::{Later, Outbox, Shop};
use crate::taxonomy::TOP_CATEGORIES;
use crate::text::{self, Query};

/// Longest pause inside a session. Kept well under the 30 minutes of inactivity after which
/// ingest starts a new session, so assigned sessions match simulated ones exactly.
pub(crate) const MAX_PAUSE_MS: i64 = 10 * 60_000;

/// Log-odds of ordering before intent, history and price move it. Calibrated so that about
/// 3% of sessions convert.
const BASE_PURCHASE_LOGIT: f64 = -5.8;
/// Add-to-cart chance per item page for shoppers who will not order; calibrated with
/// `NON_BUYER_ADD_PER_INTENT` so that about two carts in three are abandoned.
const NON_BUYER_ADD_BASE: f64 = 0.012;
const NON_BUYER_ADD_PER_INTENT: f64 = 0.12;
/// Click attraction before preferences move it; calibrated for a click-through rate of a
/// few percent of impressed items.
const BASE_ATTRACTION_LOGIT: f64 = -2.6;
/// Position bias: the chance of even looking at position `p` (0-based) is `1 / (p + 1)^x`.
const POSITION_DECAY: f64 = 0.9;
/// Chance per session of a general question to support (no order involved).
const GENERAL_TICKET_RATE: f64 = 0.001;

/// How a session started, which sets its latent intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// Came with something in mind and searched for it.
    Search,
    /// Opened the home page to look around.
    Browse,
    /// Landed on an item page from an ad, e-mail or link (a click without a list).
    ExternalLink,
    /// Came back for the items left in the cart last time.
    ReturnToCart,
}

pub(crate) enum Step {
    /// Run the next step after this many milliseconds.
    After(i64),
    Done,
}

enum Next {
    Enter,
    Scan,
    ItemPage(u32),
    Navigate,
    /// Retype a query that found nothing, this time without the typo.
    Reformulate {
        about: u32,
        query: Query,
    },
    Finish,
    Checkout,
}

struct ShownList {
    items: Vec<u32>,
    list_id: u64,
    clicked_positions: Vec<usize>,
    scans: i32,
}

pub(crate) struct CartLine {
    pub item: u32,
    pub quantity: u32,
}

pub(crate) struct Session {
    pub number: u64,
    pub user: u32,
    pub kind: SessionKind,
    /// Time of the first event.
    pub start_ms: i64,
    pub last_event_ms: i64,
    pub purchase_probability: f64,
    pub events: u32,
    pub order: Option<u64>,
    pub cart: Vec<CartLine>,
    will_order: bool,
    intent: f64,
    /// The leaf the shopper came for.
    leaf: usize,
    target: u32,
    budget_cents: f64,
    actions_left: u32,
    next: Next,
    shown: Option<ShownList>,
    viewed: Vec<u32>,
}

impl Session {
    pub(crate) fn begin(user: u32, now: i64, shop: &mut Shop) -> Self {
        let number = shop.open_session();
        let rng = &mut shop.rng;
        let profile = &shop.users[user as usize];
        let catalog = &shop.catalog;

        let kind = if !profile.abandoned_cart.is_empty() && chance(rng, 0.35) {
            SessionKind::ReturnToCart
        } else {
            match unit(rng) {
                r if r < 0.42 => SessionKind::Search,
                r if r < 0.85 => SessionKind::Browse,
                _ => SessionKind::ExternalLink,
            }
        };
        let (leaf, target) = match kind {
            SessionKind::ReturnToCart => {
                let item = profile.abandoned_cart[0];
                (catalog.item(item).leaf, item)
            }
            _ => {
                let top = profile.pick_top_category(rng);
                let leaf = catalog.leaf_in_top(top, rng);
                (leaf, catalog.popular_item_in_leaf(leaf, rng))
            }
        };
        let typical_price_cents = catalog.leaves[leaf].def.median_price * 100.0;
        // Price-sensitive shoppers set lower budgets; everyone's budget varies by occasion.
        let budget_cents = typical_price_cents
            * log_normal(rng, 1.0, 0.45)
            * (1.25 - 0.5 * profile.price_sensitivity);
        let intent = match kind {
            SessionKind::Browse => 0.15 * unit(rng),
            SessionKind::Search => 0.2 + 0.5 * unit(rng),
            SessionKind::ExternalLink => 0.1 + 0.4 * unit(rng),
            SessionKind::ReturnToCart => 0.5 + 0.4 * unit(rng),
        };
        let kind_shift = match kind {
            SessionKind::Browse => 0.0,
            SessionKind::Search => 0.3,
            SessionKind::ExternalLink => -0.2,
            SessionKind::ReturnToCart => 0.8,
        };
        let price_gap = (typical_price_cents / budget_cents).ln().clamp(-1.0, 2.0);
        let purchase_logit = BASE_PURCHASE_LOGIT
            + 4.0 * intent
            + profile.buying_propensity
            + 0.5 * f64::from(profile.orders + 1).ln()
            + kind_shift
            - 1.5 * profile.price_sensitivity * price_gap;
        let purchase_probability = sigmoid(purchase_logit);
        let will_order = chance(rng, purchase_probability);
        // Buyers take a few more steps: they compare before they commit.
        let actions_left = 1 + geometric(rng, 0.8 + 5.0 * intent) + if will_order { 2 } else { 0 };

        Self {
            number,
            user,
            kind,
            start_ms: now,
            last_event_ms: now,
            purchase_probability,
            events: 0,
            order: None,
            cart: Vec::new(),
            will_order,
            intent,
            leaf,
            target,
            budget_cents,
            actions_left,
            next: Next::Enter,
            shown: None,
            viewed: Vec::new(),
        }
    }

    pub(crate) fn step(&mut self, now: i64, shop: &mut Shop, out: &mut Outbox) -> Step {
        // Every step sets what comes next.
        let step = match std::mem::replace(&mut self.next, Next::Finish) {
            Next::Enter => self.enter(now, shop, out),
            Next::Scan => self.scan(now, shop, out),
            Next::ItemPage(item) => self.on_item_page(item, now, shop, out),
            Next::Navigate => self.navigate(now, shop, out),
            Next::Reformulate { about, query } => self.search(about, Some(query), now, shop, out),
            Next::Finish => self.finish(now, shop, out),
            Next::Checkout => self.checkout(now, shop, out),
        };
        match step {
            Step::After(pause) => Step::After(pause.clamp(500, MAX_PAUSE_MS)),
            Step::Done => {
                self.wrap_up(shop);
                Step::Done
            }
        }
    }

    pub(crate) fn ordered(&self) -> bool {
        self.order.is_some()
    }

    pub(crate) fn cart_abandoned(&self) -> bool {
        self.order.is_none() && !self.cart.is_empty()
    }

    fn enter(&mut self, now: i64, shop: &mut Shop, out: &mut Outbox) -> Step {
        match self.kind {
            SessionKind::Search => self.search(self.target, None, now, shop, out),
            SessionKind::Browse => {
                let items = shop.home_recommendations(self.user);
                self.show(items, ListKind::Home, now, shop, out)
            }
            SessionKind::ExternalLink => {
                self.click(self.target, None, None, now, out);
                self.next = Next::ItemPage(self.target);
                Step::After(page_reading_ms(shop))
            }
            SessionKind::ReturnToCart => {
                let remembered = std::mem::take(&mut shop.users[self.user as usize].abandoned_cart);
                for item in remembered {
                    if shop.catalog.in_stock(item) {
                        self.add_to_cart(item, now, shop, out);
                    }
                }
                if self.cart.is_empty() {
                    // Everything they left behind sold out meanwhile: look around instead.
                    let items = shop.home_recommendations(self.user);
                    return self.show(items, ListKind::Home, now, shop, out);
                }
                let cart_items: Vec<u32> = self.cart.iter().map(|line| line.item).collect();
                let items = shop.cart_recommendations(&cart_items);
                self.show(items, ListKind::Cart, now, shop, out)
            }
        }
    }

    fn search(
        &mut self,
        about: u32,
        failed_query: Option<Query>,
        now: i64,
        shop: &mut Shop,
        out: &mut Outbox,
    ) -> Step {
        let query = match failed_query {
            Some(failed) => text::retype(failed, &mut shop.rng),
            None => text::query_for(about, &shop.catalog, &mut shop.rng),
        };
        // The shop's search is not typo-tolerant half of the time: a zero-result page that
        // the shopper then retypes, which is what a query rewriter learns corrections from.
        let finds_nothing = query.has_typo && chance(&mut shop.rng, 0.55);
        let results = if finds_nothing {
            Vec::new()
        } else {
            shop.search_results(&query, shop.catalog.item(about).leaf)
        };
        self.emit(
            now,
            Body::Search {
                query: query.text.clone(),
                results: results.clone(),
            },
            out,
        );
        if results.is_empty() {
            self.next = if query.has_typo && chance(&mut shop.rng, 0.7) {
                Next::Reformulate { about, query }
            } else {
                Next::Navigate
            };
            return Step::After(typing_ms(shop));
        }
        self.show(results, ListKind::Search, now, shop, out)
    }

    fn show(
        &mut self,
        items: Vec<u32>,
        list: ListKind,
        now: i64,
        shop: &mut Shop,
        out: &mut Outbox,
    ) -> Step {
        if items.is_empty() {
            self.next = Next::Navigate;
            return Step::After(glance_ms(shop));
        }
        let list_id = shop.new_list_id();
        self.emit(
            now,
            Body::Impression {
                items: items.clone(),
                list_id: Some(list_id),
                list,
            },
            out,
        );
        self.shown = Some(ShownList {
            items,
            list_id,
            clicked_positions: Vec::new(),
            scans: 0,
        });
        self.next = Next::Scan;
        Step::After(list_reading_ms(shop))
    }

    /// Reads the current list top-down; examining a position gets less likely further down
    /// (position bias), clicking an examined item depends on how well it fits the shopper.
    fn scan(&mut self, now: i64, shop: &mut Shop, out: &mut Outbox) -> Step {
        let Some(mut shown) = self.shown.take() else {
            self.next = Next::Navigate;
            return Step::After(glance_ms(shop));
        };
        // A list read a second time gets less attention.
        let attention = 0.6_f64.powi(shown.scans);
        shown.scans += 1;
        let engagement = 0.5 + self.intent;
        let mut clicked = None;
        for (position, &item) in shown.items.iter().enumerate() {
            if shown.clicked_positions.contains(&position) {
                continue;
            }
            let examine = attention / ((position + 1) as f64).powf(POSITION_DECAY);
            let click_chance = examine * engagement * self.attraction(item, shop);
            if chance(&mut shop.rng, click_chance) {
                clicked = Some((position, item));
                break;
            }
        }
        let step = match clicked {
            Some((position, item)) => {
                shown.clicked_positions.push(position);
                self.click(
                    item,
                    Some(position as u32 + 1),
                    Some(shown.list_id),
                    now,
                    out,
                );
                self.next = Next::ItemPage(item);
                Step::After(page_reading_ms(shop))
            }
            None => {
                self.next = Next::Navigate;
                Step::After(glance_ms(shop))
            }
        };
        self.shown = Some(shown);
        step
    }

    fn on_item_page(&mut self, item: u32, now: i64, shop: &mut Shop, out: &mut Outbox) -> Step {
        self.actions_left = self.actions_left.saturating_sub(1);
        if shop.catalog.in_stock(item) {
            let fit = self.price_fit(item, shop);
            let add_chance = if self.will_order {
                0.45 * (0.5 + 0.5 * fit)
            } else {
                (NON_BUYER_ADD_BASE + NON_BUYER_ADD_PER_INTENT * self.intent) * fit
            };
            if chance(&mut shop.rng, add_chance) {
                self.add_to_cart(item, now, shop, out);
            }
        }
        if chance(&mut shop.rng, 0.5) {
            let similar = shop.item_page_recommendations(item);
            return self.show(similar, ListKind::ItemPage, now, shop, out);
        }
        self.next = Next::Navigate;
        Step::After(glance_ms(shop))
    }

    fn navigate(&mut self, now: i64, shop: &mut Shop, out: &mut Outbox) -> Step {
        if self.actions_left == 0 {
            self.next = Next::Finish;
            return Step::After(glance_ms(shop));
        }
        self.actions_left -= 1;
        let roll = unit(&mut shop.rng);
        let list_has_more = self
            .shown
            .as_ref()
            .is_some_and(|shown| shown.clicked_positions.len() < shown.items.len());
        if !self.cart.is_empty() && roll < 0.15 {
            self.review_cart(now, shop, out)
        } else if list_has_more && roll < 0.4 {
            self.next = Next::Scan; // back to the list
            Step::After(glance_ms(shop))
        } else if self.kind == SessionKind::Search || roll < 0.75 {
            // Mostly refining within the category they came for, sometimes wandering off.
            let about = if chance(&mut shop.rng, 0.8) {
                shop.catalog.popular_item_in_leaf(self.leaf, &mut shop.rng)
            } else {
                let top = shop.users[self.user as usize].pick_top_category(&mut shop.rng);
                let leaf = shop.catalog.leaf_in_top(top, &mut shop.rng);
                shop.catalog.popular_item_in_leaf(leaf, &mut shop.rng)
            };
            self.search(about, None, now, shop, out)
        } else {
            let items = shop.home_recommendations(self.user);
            self.show(items, ListKind::Home, now, shop, out)
        }
    }

    fn review_cart(&mut self, now: i64, shop: &mut Shop, out: &mut Outbox) -> Step {
        let remove_chance = if self.will_order { 0.15 } else { 0.35 };
        if chance(&mut shop.rng, remove_chance) {
            let line = index(&mut shop.rng, self.cart.len());
            let held = self.cart[line].quantity;
            let quantity = if held > 1 && chance(&mut shop.rng, 0.5) {
                1
            } else {
                held
            };
            self.remove_from_cart(line, quantity, now, out);
        }
        let cart_items: Vec<u32> = self.cart.iter().map(|line| line.item).collect();
        let items = shop.cart_recommendations(&cart_items);
        self.show(items, ListKind::Cart, now, shop, out)
    }

    fn finish(&mut self, now: i64, shop: &mut Shop, out: &mut Outbox) -> Step {
        if self.will_order {
            if self.cart.is_empty() {
                let item = self.choose_purchase(shop);
                self.add_to_cart(item, now, shop, out);
            }
            self.next = Next::Checkout;
            return Step::After(log_normal(&mut shop.rng, 100_000.0, 0.5) as i64);
        }
        // Some shoppers tidy up before leaving, so not every cart left behind is abandoned.
        if !self.cart.is_empty() && chance(&mut shop.rng, 0.12) {
            while !self.cart.is_empty() {
                let quantity = self.cart[0].quantity;
                self.remove_from_cart(0, quantity, now, out);
            }
        }
        if chance(&mut shop.rng, GENERAL_TICKET_RATE) {
            let noun = shop.catalog.leaves[self.leaf].def.noun;
            let text = text::general_ticket(noun, &mut shop.rng);
            let channel = if chance(&mut shop.rng, 0.7) {
                crate::event::Channel::Chat
            } else {
                crate::event::Channel::Email
            };
            self.emit(
                now,
                Body::Ticket {
                    order: None,
                    text,
                    channel,
                },
                out,
            );
        }
        Step::Done
    }

    fn checkout(&mut self, now: i64, shop: &mut Shop, out: &mut Outbox) -> Step {
        let order = shop.place_order();
        let lines: Vec<OrderLine> = self
            .cart
            .iter()
            .map(|line| OrderLine {
                item: line.item,
                quantity: line.quantity,
                price_cents: shop.catalog.item(line.item).price_cents,
            })
            .collect();
        self.emit(
            now,
            Body::Order {
                order,
                lines: lines.clone(),
            },
            out,
        );
        self.order = Some(order);
        for line in &lines {
            if shop.catalog.sell(line.item, line.quantity) {
                out.events
                    .push(Event::catalog_upsert(now, &shop.catalog, line.item));
                let restock_after =
                    6 * 3_600_000 + log_normal(&mut shop.rng, 2.0 * 86_400_000.0, 0.5) as i64;
                out.later
                    .push((now + restock_after, Later::Restock(line.item)));
            }
        }
        let brands: Vec<usize> = lines
            .iter()
            .map(|line| shop.catalog.item(line.item).brand_index)
            .collect();
        shop.users[self.user as usize].record_order(brands, &mut shop.rng);
        aftersales::plan(order, self.user, &lines, now, shop, out);
        Step::Done
    }

    /// History the shopper carries into their next session.
    fn wrap_up(&mut self, shop: &mut Shop) {
        let profile = &mut shop.users[self.user as usize];
        for &item in &self.viewed {
            profile.remember_viewed(item);
        }
        if self.cart_abandoned() {
            profile.remember_abandoned_cart(self.cart.iter().map(|line| line.item));
        }
    }

    /// What a buyer with an empty cart at the end buys: the best in-stock item they looked
    /// at, else an in-stock item of the category they came for.
    fn choose_purchase(&self, shop: &mut Shop) -> u32 {
        let best_viewed = self
            .viewed
            .iter()
            .copied()
            .filter(|&item| shop.catalog.in_stock(item))
            .map(|item| (self.attraction(item, shop), item))
            .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
        if let Some((_, item)) = best_viewed {
            return item;
        }
        if shop.catalog.in_stock(self.target) {
            return self.target;
        }
        for _ in 0..20 {
            let item = shop.catalog.popular_item_in_leaf(self.leaf, &mut shop.rng);
            if shop.catalog.in_stock(item) {
                return item;
            }
        }
        self.target // everything tried is sold out: a backorder
    }

    fn click(
        &mut self,
        item: u32,
        position: Option<u32>,
        list_id: Option<u64>,
        now: i64,
        out: &mut Outbox,
    ) {
        self.emit(
            now,
            Body::Click {
                item,
                position,
                list_id,
            },
            out,
        );
        if !self.viewed.contains(&item) {
            self.viewed.push(item);
        }
    }

    fn add_to_cart(&mut self, item: u32, now: i64, shop: &mut Shop, out: &mut Outbox) {
        let quantity = match unit(&mut shop.rng) {
            r if r < 0.84 => 1,
            r if r < 0.95 => 2,
            r if r < 0.99 => 3,
            _ => 4 + index(&mut shop.rng, 3) as u32,
        };
        self.emit(now, Body::AddToCart { item, quantity }, out);
        match self.cart.iter_mut().find(|line| line.item == item) {
            Some(line) => line.quantity += quantity,
            None => self.cart.push(CartLine { item, quantity }),
        }
    }

    fn remove_from_cart(&mut self, line: usize, quantity: u32, now: i64, out: &mut Outbox) {
        let item = self.cart[line].item;
        self.emit(now, Body::RemoveFromCart { item, quantity }, out);
        self.cart[line].quantity -= quantity;
        if self.cart[line].quantity == 0 {
            self.cart.remove(line);
        }
    }

    fn emit(&mut self, now: i64, body: Body, out: &mut Outbox) {
        if self.events == 0 {
            self.start_ms = now;
        }
        self.events += 1;
        self.last_event_ms = now;
        out.events.push(Event {
            ts_ms: now,
            user: Some(self.user),
            session: Some(self.number),
            body,
        });
    }

    /// How much `item` appeals to this shopper right now, in (0, 1).
    fn attraction(&self, item: u32, shop: &Shop) -> f64 {
        let entry = shop.catalog.item(item);
        let profile = &shop.users[self.user as usize];
        let relative_affinity =
            (profile.category_affinity[entry.top] * TOP_CATEGORIES.len() as f64).ln();
        let relative_popularity = (entry.popularity * shop.catalog.items.len() as f64).ln();
        let mut score = BASE_ATTRACTION_LOGIT + 0.6 * relative_affinity.clamp(-2.0, 1.5);
        if entry.leaf == self.leaf {
            score += 0.8;
        }
        if profile.likes_brand(entry.brand_index) {
            score += 1.5 * profile.brand_loyalty;
        }
        score += 1.5 * (entry.quality - 0.5);
        score += 0.25 * relative_popularity.clamp(-3.0, 3.0);
        score += self.price_fit(item, shop).ln();
        if entry.stock == 0 {
            score -= 0.7;
        }
        sigmoid(score)
    }

    /// 1 within budget, falling off above it, faster for price-sensitive shoppers.
    fn price_fit(&self, item: u32, shop: &Shop) -> f64 {
        let price = shop.catalog.item(item).price_cents as f64;
        let over_budget = (price / self.budget_cents).ln().max(0.0);
        let sensitivity = shop.users[self.user as usize].price_sensitivity;
        (-(0.5 + 2.5 * sensitivity) * over_budget).exp()
    }
}

fn list_reading_ms(shop: &mut Shop) -> i64 {
    log_normal(&mut shop.rng, 7_000.0, 0.6) as i64
}

fn page_reading_ms(shop: &mut Shop) -> i64 {
    log_normal(&mut shop.rng, 35_000.0, 0.8) as i64
}

fn typing_ms(shop: &mut Shop) -> i64 {
    log_normal(&mut shop.rng, 9_000.0, 0.5) as i64
}

fn glance_ms(shop: &mut Shop) -> i64 {
    log_normal(&mut shop.rng, 4_000.0, 0.5) as i64
}
