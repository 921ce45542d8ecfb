//! Reads that assemble the `funnel.ingest.v1` feature messages from the
//! store, for ingest's gRPC service and for the other services.

use std::collections::HashMap;

use funnel_proto::pb::events::v1 as events;
use funnel_proto::pb::ingest::v1 as pb;

use crate::keys::{HOUR_MS, Keys, LIST_SEP, SLOT_5M_MS, state_field};
use crate::{Read, Reply, Store, StoreError};

/// How many recent items a user's features list.
pub const RECENT_ITEMS: usize = 50;
/// How many recent items the list keeps before de-duplication on read.
pub const RECENT_ITEMS_KEPT: usize = 100;
pub const RECENT_CATEGORIES: usize = 20;

/// Builds feature messages from the store.
#[derive(Clone)]
pub struct FeatureReader {
    store: Store,
    keys: Keys,
}

impl FeatureReader {
    pub fn new(store: Store, keys: Keys) -> Self {
        FeatureReader { store, keys }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A user's features; `found` is false for a user the store has never seen.
    pub async fn user(&self, user_id: &str) -> Result<pb::UserFeatures, StoreError> {
        let k = &self.keys;
        let replies = self
            .store
            .read(&[
                Read::HGetAll(k.user_state(user_id)),
                Read::HGetAll(k.user_counts(user_id)),
                Read::LRange(k.user_recent(user_id), 0, RECENT_ITEMS_KEPT as isize - 1),
                Read::LRange(k.user_categories(user_id), 0, 99),
                Read::HGetAll(k.user_cart(user_id)),
            ])
            .await?;
        let [state, counts, recent, cats, cart]: [Reply; 5] =
            replies.try_into().map_err(|_| StoreError::Reply {
                op: "user features",
                detail: "wrong number of replies".into(),
            })?;
        let state: HashMap<String, String> = state.into_hash().into_iter().collect();
        let mut counts: HashMap<String, String> = counts.into_hash().into_iter().collect();
        let found = !state.is_empty() || !counts.is_empty();
        let orders = take_i64(&mut counts, "orders");
        let revenue = counts
            .remove("revenue")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        let cart_lines = cart
            .into_hash()
            .into_iter()
            .filter_map(|(item, q)| Some((item, q.parse::<i64>().ok().filter(|q| *q > 0)?)))
            .collect::<Vec<_>>();

        let sid = state
            .get(state_field::SESSION_ID)
            .cloned()
            .unwrap_or_default();
        let mut second = Vec::new();
        if !sid.is_empty() {
            second.push(Read::HGetAll(k.session(&sid)));
            second.push(Read::LRange(
                k.session_items(&sid),
                0,
                RECENT_ITEMS as isize - 1,
            ));
        }
        for (item, _) in &cart_lines {
            second.push(Read::HMGet(k.item(item), vec!["price".into()]));
        }
        let mut more = self.store.read(&second).await?.into_iter();
        let session = if sid.is_empty() {
            None
        } else {
            let mut h: HashMap<String, String> = more
                .next()
                .unwrap_or_default()
                .into_hash()
                .into_iter()
                .collect();
            let items = dedupe(more.next().unwrap_or_default().into_list(), RECENT_ITEMS);
            let start_ts_ms = take_i64(&mut h, "start");
            let last_ts_ms = take_i64(&mut h, "last");
            let last_query = h.remove("lastq").unwrap_or_default();
            // The counts by type add up to the session's events; a total written by an
            // older ingest is the same number.
            h.remove("events");
            let counts = int_map(h);
            Some(pb::SessionFeatures {
                session_id: sid,
                start_ts_ms,
                last_ts_ms,
                event_count: counts.values().sum(),
                counts,
                last_query,
                item_ids: items,
            })
        };
        let mut cart = Vec::with_capacity(cart_lines.len());
        for (item_id, quantity) in cart_lines {
            let unit_price = more
                .next()
                .unwrap_or_default()
                .into_fields()
                .into_iter()
                .next()
                .flatten()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0.0);
            cart.push(pb::CartLine {
                item_id,
                quantity,
                unit_price,
            });
        }
        cart.sort_by(|a, b| a.item_id.cmp(&b.item_id));
        let cart_value = cart.iter().map(|l| l.unit_price * l.quantity as f64).sum();
        let cart_quantity = cart.iter().map(|l| l.quantity).sum();
        let last_activity_ts_ms = state
            .get(state_field::NEWEST)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(pb::UserFeatures {
            user_id: user_id.to_string(),
            found,
            counts: int_map(counts),
            recent_item_ids: dedupe(recent.into_list(), RECENT_ITEMS),
            cart,
            cart_value,
            cart_quantity,
            last_activity_ts_ms,
            session,
            recent_categories: dedupe(cats.into_list(), RECENT_CATEGORIES),
            orders,
            revenue,
        })
    }

    /// An item's catalog record, windowed counts ending at `now_ms`, and neighbours.
    pub async fn item(
        &self,
        item_id: &str,
        neighbours: usize,
        now_ms: i64,
    ) -> Result<pb::ItemFeatures, StoreError> {
        let k = &self.keys;
        let mut reads = vec![
            Read::HGetAll(k.item(item_id)),
            Read::ZRevRange(k.item_covisits(item_id), 0, neighbours as isize - 1),
            Read::ZRevRange(k.item_bought_together(item_id), 0, neighbours as isize - 1),
        ];
        for i in 0..24 {
            reads.push(Read::HGetAll(k.item_window(item_id, now_ms - i * HOUR_MS)));
        }
        let mut replies = self.store.read(&reads).await?.into_iter();
        let record: HashMap<String, String> = replies
            .next()
            .unwrap_or_default()
            .into_hash()
            .into_iter()
            .collect();
        let co_visited = scored(replies.next().unwrap_or_default());
        let bought_together = scored(replies.next().unwrap_or_default());
        let mut hour = pb::WindowCounts {
            window: "1h".into(),
            ..Default::default()
        };
        let mut day = pb::WindowCounts {
            window: "24h".into(),
            ..Default::default()
        };
        // The 1 h window: the 12 five-minute slots ending with the current one.
        let now_slot = now_ms.div_euclid(SLOT_5M_MS);
        let now_hour = now_ms.div_euclid(HOUR_MS);
        for (age, reply) in replies.enumerate() {
            let hour_start_slot = (now_hour - age as i64) * (HOUR_MS / SLOT_5M_MS);
            for (field, n) in reply.into_hash() {
                let Some((kind, slot)) = field.split_once(':') else {
                    continue;
                };
                let (Ok(n), Ok(slot)) = (n.parse::<i64>(), slot.parse::<i64>()) else {
                    continue;
                };
                add(&mut day, kind, n);
                if now_slot - (hour_start_slot + slot) < 12 {
                    add(&mut hour, kind, n);
                }
            }
        }
        let windows = vec![hour, day];
        let found = !record.is_empty();
        let item = found.then(|| catalog_record(item_id, &record));
        Ok(pb::ItemFeatures {
            item_id: item_id.to_string(),
            found,
            item,
            windows,
            co_visited,
            bought_together,
        })
    }
}

fn add(w: &mut pb::WindowCounts, kind: &str, n: i64) {
    match kind {
        "impression" => w.impressions += n,
        "click" => w.clicks += n,
        "cart" => w.carts += n,
        "order" => w.orders += n,
        _ => {}
    }
}

/// The catalog hash as written by ingest, back to an `Item`.
pub fn catalog_record(item_id: &str, h: &HashMap<String, String>) -> events::Item {
    let get = |f: &str| h.get(f).cloned().unwrap_or_default();
    events::Item {
        item_id: item_id.to_string(),
        title: get("title"),
        category: get("category"),
        brand: get("brand"),
        price: get("price").parse().unwrap_or(0.0),
        stock: get("stock").parse().unwrap_or(0),
        attributes: serde_json::from_str(&get("attrs")).unwrap_or_default(),
        updated_ts_ms: get("updated").parse().unwrap_or(0),
    }
}

/// The fields of the catalog hash for an item record.
pub fn catalog_fields(item: &events::Item) -> Vec<(&'static str, String)> {
    vec![
        ("title", item.title.clone()),
        ("category", item.category.clone()),
        ("brand", item.brand.clone()),
        ("price", item.price.to_string()),
        ("stock", item.stock.to_string()),
        (
            "attrs",
            serde_json::to_string(
                &item
                    .attributes
                    .iter()
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
            .unwrap_or_default(),
        ),
        ("updated", item.updated_ts_ms.to_string()),
    ]
}

/// Splits a list packed into one hash field.
pub fn unpack_list(packed: &str) -> Vec<String> {
    if packed.is_empty() {
        return Vec::new();
    }
    packed.split(LIST_SEP).map(str::to_string).collect()
}

/// Packs a list into one hash field.
pub fn pack_list<S: AsRef<str>>(items: &[S]) -> String {
    let mut out = String::new();
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(LIST_SEP);
        }
        out.push_str(s.as_ref());
    }
    out
}

fn scored(reply: Reply) -> Vec<pb::ScoredItem> {
    reply
        .into_scored()
        .into_iter()
        .map(|(item_id, score)| pb::ScoredItem { item_id, score })
        .collect()
}

fn take_i64(h: &mut HashMap<String, String>, field: &str) -> i64 {
    h.remove(field).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn int_map(h: HashMap<String, String>) -> HashMap<String, i64> {
    h.into_iter()
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect()
}

/// First occurrences, in order, at most `max`.
fn dedupe(items: Vec<String>, max: usize) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|i| seen.insert(i.clone()))
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryStore, WriteBatch};

    #[tokio::test]
    async fn a_sessions_event_count_is_the_sum_of_its_counts_by_type() {
        let memory = MemoryStore::new(100);
        let keys = Keys::new("p");
        let mut b = WriteBatch::new(60);
        b.hset(&keys.user_state("u"), state_field::SESSION_ID, "s1");
        b.hincr(&keys.session("s1"), "click", 3);
        b.hincr(&keys.session("s1"), "search", 2);
        b.hset_int(&keys.session("s1"), "start", 1_000);
        // The total an older ingest also wrote is not counted again.
        b.hincr(&keys.session("s1"), "events", 5);
        memory.apply(&b);
        let reader = FeatureReader::new(Store::Memory(memory), keys);
        let session = reader.user("u").await.unwrap().session.unwrap();
        assert_eq!(session.event_count, 5);
        assert_eq!(session.counts.len(), 2, "{:?}", session.counts);
        assert_eq!(session.start_ts_ms, 1_000);
    }
}
