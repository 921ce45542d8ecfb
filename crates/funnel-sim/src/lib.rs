//! A deterministic, realistic e-commerce shop simulation that emits raw platform events: our
//! demo data, test data and training data.
//!
//! A catalog of items in a category tree is announced first (`item` events at `start_ms`);
//! then shoppers with latent preferences arrive over simulated time, search, read lists,
//! click, fill and empty carts, order, and days later review, return and complain. The
//! output is an iterator of [`SimRecord`]s sorted by time, generated lazily: millions of
//! events stream in bounded memory (the catalog, the shoppers and the sessions in progress).
//! Same [`SimConfig`] (seed included) ⇒ byte-identical output.
//!
//! Conventions downstream code can rely on: `position` is 1-based; every impression carries
//! a `recomm_id` that clicks from that list repeat (clicks arriving from outside the shop
//! carry neither); a search's `results` are exactly the next impression's `item_ids`;
//! reviews, returns and tickets about an order arrive days later without a `session_id`,
//! because they happen outside any browsing session.
//!
//! The hidden truth a model should learn is kept out of the events: each session's
//! [`SessionTruth`] (its latent purchase probability and outcome), each item's latent
//! quality and popularity ([`CatalogItem`]), each shopper's preferences ([`UserProfile`]).
//!
//! ```
//! use funnel_sim::{SimConfig, Simulator};
//!
//! let config = SimConfig { users: 200, items: 300, sessions: Some(100), ..SimConfig::default() };
//! let mut simulator = Simulator::new(config)?;
//! let mut lines = Vec::new();
//! for record in simulator.by_ref() {
//!     record.write_ndjson(&mut lines)?;
//! }
//! let truths = simulator.take_finished_truths();
//! assert_eq!(truths.len(), 100);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Typical funnel on the default shop: about 3% of sessions order, two carts in three are
//! abandoned, 2–4% of impressed items are clicked (less further down a list), about 7% of
//! order lines come back and about 7% of orders get a review.
//!
//! # Layout
//! - `config`: [`SimConfig`], its defaults and validation.
//! - `simulator`: [`Simulator`], the time-ordered agenda that drives everything.
//! - `session`: one browsing session as a state machine; where the funnel's shape comes from.
//! - `aftersales`: returns, reviews and tickets planned when an order is placed.
//! - `shop`: shared state plus the shop's search and recommendation lists.
//! - `catalog`, `taxonomy`: items, the category tree, brands, prices, stock.
//! - `users`: shoppers' latent preferences and history.
//! - `text`: queries (typos, synonyms, casing), review, return and ticket texts.
//! - `event`: the JSON wire form of the raw event contract.
//! - `faults`: injected malformed and duplicate records.
//! - `record`, `stats`: what is emitted, and funnel rates measured on it.

mod aftersales;
mod catalog;
mod config;
mod event;
mod faults;
mod ids;
mod record;
mod sampling;
mod session;
mod shop;
mod simulator;
mod stats;
mod taxonomy;
mod text;
mod users;

pub use catalog::CatalogItem;
pub use config::{ConfigError, DEFAULT_START_MS, SimConfig};
pub use record::{InvalidReason, RecordKind, SessionTruth, SimRecord};
pub use session::SessionKind;
pub use simulator::Simulator;
pub use stats::FunnelStats;
pub use users::{UserProfile, top_level_categories};
