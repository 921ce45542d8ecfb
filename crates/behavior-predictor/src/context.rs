//! What the stream knows beyond one session: the catalog and how popular each item is.
//!
//! Item popularity is defined so that training and serving see the same number: the clicks
//! an item received anywhere in the stream strictly before the event being scored.

use std::collections::HashMap;

use funnel_core::pb;
use funnel_core::pb::event::Payload;
use serde::{Deserialize, Serialize};

/// The catalog facts the features use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogItem {
    pub price: f64,
    /// Normalised path such as `electronics/audio/headphones`.
    pub category: String,
}

/// The context inputs of one event: its item's catalog entry (when it names an item that
/// is in the catalog) and that item's popularity before the event.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EventContext<'a> {
    pub item: Option<&'a CatalogItem>,
    pub item_popularity: u64,
}

/// Catalog and click counts, fed every canonical event in stream order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamContext {
    catalog: HashMap<String, CatalogItem>,
    clicks: HashMap<String, u64>,
}

impl StreamContext {
    /// The context of `event` as the stream stands before it.
    pub fn context_for(&self, event: &pb::Event) -> EventContext<'_> {
        let Some(item_id) = item_of(event) else {
            return EventContext::default();
        };
        EventContext {
            item: self.catalog.get(item_id),
            item_popularity: self.clicks.get(item_id).copied().unwrap_or(0),
        }
    }

    /// Takes in `event` after it was scored: catalog updates and clicks.
    pub fn observe(&mut self, event: &pb::Event) {
        match &event.payload {
            Some(Payload::Item(item)) => {
                self.catalog.insert(
                    item.item_id.clone(),
                    CatalogItem {
                        price: item.price,
                        category: item.category.clone(),
                    },
                );
            }
            Some(Payload::Click(click)) => {
                *self.clicks.entry(click.item_id.clone()).or_default() += 1;
            }
            _ => {}
        }
    }

    pub fn item(&self, item_id: &str) -> Option<&CatalogItem> {
        self.catalog.get(item_id)
    }
}

/// The item a click or cart change is about.
pub(crate) fn item_of(event: &pb::Event) -> Option<&str> {
    match &event.payload {
        Some(Payload::Click(click)) => Some(&click.item_id),
        Some(Payload::Cart(cart)) => Some(&cart.item_id),
        _ => None,
    }
}
