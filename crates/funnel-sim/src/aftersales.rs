//! What follows an order days later: returns, reviews and support tickets. All of it is
//! decided when the order is placed and scheduled for later, so the outcome depends only on
//! the order and the item's latent quality, never on what else happens meanwhile.

use crate::event::{Body, Event, OrderLine};
use crate::sampling::{chance, log_normal, normal, pick};
use crate::shop::{Later, Outbox, Shop};
use crate::taxonomy::TOP_CATEGORIES;
use crate::text;

/// Return chance per order line is `BASE + PER_FLAW * (1 - quality)` plus the category's
/// bias: about 7% overall, more in fashion.
const RETURN_BASE: f64 = 0.036;
const RETURN_PER_FLAW: f64 = 0.09;
/// Review chance per order: people with strong opinions write more. About 7% overall.
const REVIEW_BASE: f64 = 0.035;
const REVIEW_PER_EXTREMITY: f64 = 0.12;
/// Ticket chance per order, higher once something went back.
const TICKET_BASE: f64 = 0.035;
const TICKET_AFTER_RETURN: f64 = 0.15;
const HOUR_MS: f64 = 3_600_000.0;

pub(crate) fn plan(
    order: u64,
    user: u32,
    lines: &[OrderLine],
    ordered_at: i64,
    shop: &mut Shop,
    out: &mut Outbox,
) {
    let mean_delay = shop.mean_aftersales_delay_ms;
    let rng = &mut shop.rng;
    let catalog = &shop.catalog;
    let later = |delay_ms: f64, body: Body| {
        let ts_ms = ordered_at + delay_ms.max(HOUR_MS) as i64;
        (
            ts_ms,
            Later::Aftersales(Event {
                ts_ms,
                user: Some(user),
                session: None,
                body,
            }),
        )
    };

    let mut last_return_delay = None;
    let mut returned = Vec::new();
    for line in lines {
        let entry = catalog.item(line.item);
        let top = &TOP_CATEGORIES[entry.top];
        let return_chance =
            (RETURN_BASE + RETURN_PER_FLAW * (1.0 - entry.quality) + top.return_bias)
                .clamp(0.005, 0.5);
        if chance(rng, return_chance) {
            let delay = mean_delay * log_normal(rng, 1.0, 0.4);
            let reason = text::return_reason(entry.quality, top.slug, rng);
            out.later.push(later(
                delay,
                Body::Return {
                    order,
                    item: line.item,
                    reason,
                },
            ));
            returned.push(line.item);
            last_return_delay =
                Some(last_return_delay.map_or(delay, |previous: f64| previous.max(delay)));
        }
    }

    let reviewed = pick(rng, lines);
    let entry = catalog.item(reviewed.item);
    let extremity = (entry.quality - 0.5).abs() * 2.0;
    if chance(rng, REVIEW_BASE + REVIEW_PER_EXTREMITY * extremity) {
        // Shop ratings skew high, as real ones do; a returned item rarely gets more than two.
        let mut rating = (1.5 + 4.0 * entry.quality + 0.8 * normal(rng))
            .round()
            .clamp(1.0, 5.0) as u8;
        if returned.contains(&reviewed.item) {
            rating = rating.min(2);
        }
        let top = &TOP_CATEGORIES[entry.top];
        let noun = catalog.leaves[entry.leaf].def.noun;
        let text = text::review_text(rating, noun, top.slug, rng);
        let delay = 1.2 * mean_delay * log_normal(rng, 1.0, 0.5);
        out.later.push(later(
            delay,
            Body::Review {
                item: reviewed.item,
                order,
                rating,
                text,
            },
        ));
    }

    let ticket_chance = TICKET_BASE
        + if returned.is_empty() {
            0.0
        } else {
            TICKET_AFTER_RETURN
        };
    if chance(rng, ticket_chance) {
        let channel = text::ticket_channel(rng);
        let about_return = !returned.is_empty();
        let text = text::order_ticket(channel, about_return, rng);
        // Refund questions come after the return; delivery questions within days.
        let delay = match last_return_delay {
            Some(returned_after) if about_return => {
                returned_after + 0.5 * mean_delay * log_normal(rng, 1.0, 0.4)
            }
            _ => 0.6 * mean_delay * log_normal(rng, 1.0, 0.5),
        };
        out.later.push(later(
            delay,
            Body::Ticket {
                order: Some(order),
                text,
                channel,
            },
        ));
    }
}
