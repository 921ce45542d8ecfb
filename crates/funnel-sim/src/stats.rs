//! Funnel rates measured on the output, the way an analyst would measure them on a real shop.

use std::collections::BTreeMap;

use crate::record::{RecordKind, SessionTruth, SimRecord};

/// Counters over records and session truths, and the rates derived from them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FunnelStats {
    pub records: u64,
    pub duplicates: u64,
    pub invalid: u64,
    /// Valid events per `type`.
    pub events_by_type: BTreeMap<String, u64>,
    /// Sum of `item_ids` lengths over impressions.
    pub impressed_items: u64,
    /// Clicks that carry a list `position` (clicks from outside any list are excluded).
    pub list_clicks: u64,
    pub order_lines: u64,
    pub sessions: u64,
    pub ordered_sessions: u64,
    pub abandoned_carts: u64,
}

impl FunnelStats {
    pub fn observe(&mut self, record: &SimRecord) {
        match record.kind {
            RecordKind::Valid => match record.json() {
                Some(event) => self.observe_valid_event(&event),
                None => self.records += 1,
            },
            RecordKind::Duplicate => {
                self.records += 1;
                self.duplicates += 1;
            }
            RecordKind::Invalid(_) => {
                self.records += 1;
                self.invalid += 1;
            }
        }
    }

    /// Counts a valid event the caller has already parsed, saving a second parse.
    pub fn observe_valid_event(&mut self, event: &serde_json::Value) {
        self.records += 1;
        let kind = event["type"].as_str().unwrap_or_default();
        *self.events_by_type.entry(kind.to_owned()).or_default() += 1;
        match kind {
            "impression" => self.impressed_items += array_len(&event["item_ids"]),
            "click" if event.get("position").is_some() => self.list_clicks += 1,
            "order" => self.order_lines += array_len(&event["lines"]),
            _ => {}
        }
    }

    pub fn observe_truth(&mut self, truth: &SessionTruth) {
        self.sessions += 1;
        self.ordered_sessions += u64::from(truth.ordered);
        self.abandoned_carts += u64::from(truth.cart_abandoned);
    }

    pub fn events(&self, kind: &str) -> u64 {
        self.events_by_type.get(kind).copied().unwrap_or(0)
    }

    /// Sessions with an order, per session.
    pub fn conversion_rate(&self) -> f64 {
        ratio(self.ordered_sessions, self.sessions)
    }

    /// Carts left without an order, per session that ended with a cart or an order.
    pub fn cart_abandonment_rate(&self) -> f64 {
        ratio(
            self.abandoned_carts,
            self.abandoned_carts + self.ordered_sessions,
        )
    }

    /// List clicks per impressed item.
    pub fn click_through_rate(&self) -> f64 {
        ratio(self.list_clicks, self.impressed_items)
    }

    /// Returns per order line.
    pub fn return_rate(&self) -> f64 {
        ratio(self.events("return"), self.order_lines)
    }

    /// Reviews per order.
    pub fn review_rate(&self) -> f64 {
        ratio(self.events("review"), self.events("order"))
    }

    /// Tickets per order (tickets without an order included).
    pub fn ticket_rate(&self) -> f64 {
        ratio(self.events("ticket"), self.events("order"))
    }
}

fn array_len(value: &serde_json::Value) -> u64 {
    value.as_array().map_or(0, |values| values.len() as u64)
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}
