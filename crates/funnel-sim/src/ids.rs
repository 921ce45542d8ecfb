//! Identifier formats.
//!
//! Item and user ids depend only on their index, so catalog upserts from two runs land on the
//! same keys. Ids of things that happen (events, sessions, orders, lists) carry a run tag
//! derived from the seed and start time, so a demo restarted with a new start time never
//! produces event ids that downstream deduplication would mistake for the earlier run's.

use crate::sampling::mix64;

pub(crate) fn run_tag(seed: u64, start_ms: i64) -> String {
    let mixed = mix64(seed ^ mix64(start_ms as u64));
    format!("{:08x}", mixed >> 32)
}

pub(crate) fn item(index: usize) -> String {
    format!("sku-{index:06}")
}

pub(crate) fn user(index: u32) -> String {
    format!("u-{index:06}")
}

pub(crate) fn event(run: &str, number: u64) -> String {
    format!("e-{run}-{number}")
}

pub(crate) fn session(run: &str, number: u64) -> String {
    format!("s-{run}-{number}")
}

pub(crate) fn order(run: &str, number: u64) -> String {
    format!("o-{run}-{number}")
}

pub(crate) fn recommendation(run: &str, number: u64) -> String {
    format!("r-{run}-{number}")
}

/// Ids of injected malformed records live in their own namespace, so fault injection never
/// shifts the ids of valid events.
pub(crate) fn injected(run: &str, number: u64) -> String {
    format!("x-{run}-{number}")
}
