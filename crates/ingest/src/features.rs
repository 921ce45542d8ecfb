//! Which online features an event changes. Each fresh event adds its writes
//! to the batch; the store merges and applies them atomically with the
//! event's dedup marker, so a replay never counts twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use funnel_core::pb::{self, event::Payload};
use funnel_core::{UserClock, type_name};
use funnel_store::features::{
    RECENT_CATEGORIES, RECENT_ITEMS_KEPT, catalog_fields, pack_list, unpack_list,
};
use funnel_store::keys::{DAY_TTL_SECS, HOUR_TTL_SECS, state_field, with_window_field};
use funnel_store::{Keys, WriteBatch};

use crate::config::IngestSettings;

/// Items of the current session kept in the user state for co-visitation.
const SESSION_ITEMS_IN_STATE: usize = 10;
/// Items per session kept in the session's item list.
const SESSION_ITEMS_KEPT: usize = 50;
/// Longest wait before a sliding TTL is set again.
const TTL_REFRESH_MAX: Duration = Duration::from_secs(15 * 60);
/// Order lines beyond this do not add bought-together pairs (quadratic).
const BOUGHT_TOGETHER_LINES: usize = 20;

/// What ingest keeps per user between events (the user state hash).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserState {
    pub clock: UserClock,
    pub last_query: String,
    pub session_items: Vec<String>,
}

impl UserState {
    pub fn from_hash(fields: Vec<(String, String)>) -> Self {
        let mut s = UserState::default();
        for (k, v) in fields {
            match k.as_str() {
                state_field::NEWEST => s.clock.newest_ts_ms = v.parse().unwrap_or(0),
                state_field::SESSION_ID => s.clock.session_id = v,
                state_field::SESSION_START => s.clock.session_start_ms = v.parse().unwrap_or(0),
                state_field::SESSION_LAST => s.clock.session_last_ms = v.parse().unwrap_or(0),
                state_field::LAST_QUERY => s.last_query = v,
                state_field::SESSION_ITEMS => s.session_items = unpack_list(&v),
                _ => {}
            }
        }
        s
    }

    fn write(&self, wb: &mut WriteBatch, key: &str) {
        wb.hset_int(key, state_field::NEWEST, self.clock.newest_ts_ms);
        wb.hset(key, state_field::SESSION_ID, &self.clock.session_id);
        wb.hset_int(key, state_field::SESSION_START, self.clock.session_start_ms);
        wb.hset_int(key, state_field::SESSION_LAST, self.clock.session_last_ms);
        wb.hset(key, state_field::LAST_QUERY, &self.last_query);
        wb.hset(
            key,
            state_field::SESSION_ITEMS,
            &pack_list(&self.session_items),
        );
    }
}

/// What ingest knows of an item from the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemInfo {
    pub category: String,
    pub price: f64,
}

/// Adds the writes of one event to a batch.
pub struct FeatureWriter<'a> {
    pub keys: &'a Keys,
    pub settings: &'a IngestSettings,
    /// Keys whose TTL an applied batch set, and when.
    pub ttl_set: &'a lru::LruCache<String, Instant>,
    pub now: Instant,
}

impl FeatureWriter<'_> {
    /// Writes for one fresh user event. `state` is the user's state after
    /// session assignment; it is updated and saved with the batch.
    pub fn user_event(
        &self,
        wb: &mut WriteBatch,
        event: &pb::Event,
        state: &mut UserState,
        new_session: bool,
        items: &HashMap<String, ItemInfo>,
    ) {
        let k = self.keys;
        let s = self.settings;
        let user = event.user_id.as_str();
        let sid = event.session_id.as_str();
        let kind = type_name(pb::EventType::try_from(event.r#type).unwrap_or_default());
        let ts = event.ts_ms;
        if new_session {
            state.last_query.clear();
            state.session_items.clear();
        }

        let counts = k.user_counts(user);
        wb.hincr(&counts, kind, 1);
        self.expire(wb, &counts, s.user_ttl_secs);

        let session = k.session(sid);
        wb.hincr(&session, kind, 1);
        wb.hset_int(&session, "start", state.clock.session_start_ms);
        wb.hset_int(&session, "last", state.clock.session_last_ms);
        self.expire(wb, &session, s.session_ttl_secs);

        match &event.payload {
            Some(Payload::Search(search)) => {
                let q = k.query(&search.query);
                wb.hincr(&q, "searches", 1);
                self.expire(wb, &q, s.query_ttl_secs);
                state.last_query = search.query.clone();
                wb.hset(&session, "lastq", &search.query);
            }
            Some(Payload::Impression(imp)) => {
                for item in &imp.item_ids {
                    self.count_item(wb, item, "impression", 1, ts);
                }
            }
            Some(Payload::Click(click)) => {
                self.count_item(wb, &click.item_id, "click", 1, ts);
                self.engaged(wb, user, sid, &click.item_id, state, items, 1.0, ts);
                if !state.last_query.is_empty() {
                    let q = k.query(&state.last_query);
                    wb.hincr(&q, "clicks", 1);
                    self.expire(wb, &q, s.query_ttl_secs);
                    let qc = k.query_clicks(&state.last_query);
                    wb.zincr(&qc, &click.item_id, 1.0);
                    wb.zcap(&qc, s.neighbours_max);
                    self.expire(wb, &qc, s.query_ttl_secs);
                }
            }
            Some(Payload::Cart(cart)) if event.r#type == pb::EventType::AddToCart as i32 => {
                self.count_item(wb, &cart.item_id, "cart", 1, ts);
                let key = k.user_cart(user);
                wb.hincr_ordered(&key, &cart.item_id, cart.quantity as i64);
                self.expire(wb, &key, s.user_ttl_secs);
                self.engaged(wb, user, sid, &cart.item_id, state, items, 3.0, ts);
            }
            Some(Payload::Cart(cart)) => {
                let key = k.user_cart(user);
                wb.hincr_ordered(&key, &cart.item_id, -(cart.quantity as i64));
                self.expire(wb, &key, s.user_ttl_secs);
            }
            Some(Payload::Order(order)) => {
                wb.hincr(&counts, "orders", 1);
                wb.hincr_float(&counts, "revenue", order.total);
                let cart = k.user_cart(user);
                for line in &order.lines {
                    self.count_item(wb, &line.item_id, "order", line.quantity as i64, ts);
                    wb.hdel_ordered(&cart, &line.item_id);
                    if let Some(info) = items.get(&line.item_id) {
                        self.popularity(
                            wb,
                            &line.item_id,
                            &info.category,
                            5.0 * line.quantity as f64,
                            ts,
                        );
                    }
                }
                let lines = &order.lines[..order.lines.len().min(BOUGHT_TOGETHER_LINES)];
                for a in lines {
                    for b in lines {
                        if a.item_id != b.item_id {
                            let key = k.item_bought_together(&a.item_id);
                            wb.zincr(&key, &b.item_id, 1.0);
                            wb.zcap(&key, s.neighbours_max);
                            self.expire(wb, &key, s.item_ttl_secs);
                        }
                    }
                }
            }
            _ => {}
        }
        let state_key = k.user_state(user);
        state.write(wb, &state_key);
        self.expire(wb, &state_key, s.user_ttl_secs);
    }

    /// Writes for a catalog upsert.
    pub fn item_event(&self, wb: &mut WriteBatch, item: &pb::Item) {
        let key = self.keys.item(&item.item_id);
        for (field, value) in catalog_fields(item) {
            wb.hset(&key, field, &value);
        }
        wb.expire(&key, self.settings.item_ttl_secs);
    }

    fn count_item(&self, wb: &mut WriteBatch, item: &str, kind: &str, by: i64, ts: i64) {
        self.keys.with_item_window(item, ts, |w| {
            with_window_field(kind, ts, |field| wb.hincr(w, field, by));
            self.expire_fixed(wb, w, HOUR_TTL_SECS);
        });
    }

    /// A click or add-to-cart: recent items, session items, co-visitation and
    /// category popularity.
    #[allow(clippy::too_many_arguments)]
    fn engaged(
        &self,
        wb: &mut WriteBatch,
        user: &str,
        sid: &str,
        item: &str,
        state: &mut UserState,
        items: &HashMap<String, ItemInfo>,
        weight: f64,
        ts: i64,
    ) {
        let k = self.keys;
        let s = self.settings;
        let recent = k.user_recent(user);
        wb.lpush_capped(&recent, item, RECENT_ITEMS_KEPT);
        self.expire(wb, &recent, s.user_ttl_secs);
        let session_items = k.session_items(sid);
        wb.lpush_capped(&session_items, item, SESSION_ITEMS_KEPT);
        self.expire(wb, &session_items, s.session_ttl_secs);

        for prior in state.session_items.iter().filter(|p| p.as_str() != item) {
            for (a, b) in [(prior.as_str(), item), (item, prior.as_str())] {
                let key = k.item_covisits(a);
                wb.zincr(&key, b, 1.0);
                wb.zcap(&key, s.neighbours_max);
                self.expire(wb, &key, s.item_ttl_secs);
            }
        }
        state.session_items.retain(|p| p != item);
        state.session_items.insert(0, item.to_string());
        state.session_items.truncate(SESSION_ITEMS_IN_STATE);

        if let Some(info) = items.get(item) {
            self.popularity(wb, item, &info.category, weight, ts);
            let cats = k.user_categories(user);
            wb.lpush_capped(&cats, &info.category, RECENT_CATEGORIES * 2);
            self.expire(wb, &cats, s.user_ttl_secs);
        }
    }

    /// A TTL that slides with activity. It is set again only when an applied
    /// batch set it more than an eighth of it (at most 15 minutes) ago, so a
    /// key in use keeps at least 7/8 of its lifetime and busy keys cost one
    /// EXPIRE per interval instead of one per batch.
    fn expire(&self, wb: &mut WriteBatch, key: &str, secs: u64) {
        let refresh = Duration::from_secs(secs / 8).min(TTL_REFRESH_MAX);
        wb.expire_unless(key, secs, |key| {
            self.ttl_set
                .peek(key)
                .is_some_and(|set| self.now.saturating_duration_since(*set) < refresh)
        });
    }

    /// A TTL fixed at the key's creation (a time bucket): set once.
    fn expire_fixed(&self, wb: &mut WriteBatch, key: &str, secs: u64) {
        wb.expire_unless(key, secs, |key| self.ttl_set.contains(key));
    }

    /// Adds `weight` to the item in its category and every ancestor category.
    fn popularity(&self, wb: &mut WriteBatch, item: &str, category: &str, weight: f64, ts: i64) {
        if category.is_empty() {
            return;
        }
        let mut end = 0;
        loop {
            end = category[end..]
                .find('/')
                .map_or(category.len(), |i| end + i);
            let key = self.keys.category_popularity(&category[..end], ts);
            wb.zincr(&key, item, weight);
            wb.zcap(&key, self.settings.category_top_max);
            self.expire_fixed(wb, &key, DAY_TTL_SECS);
            if end == category.len() {
                break;
            }
            end += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click(user: &str, item: &str) -> pb::Event {
        pb::Event {
            event_id: format!("{user}-{item}"),
            r#type: pb::EventType::Click as i32,
            ts_ms: 1_764_000_000_000,
            user_id: user.into(),
            session_id: "s1".into(),
            payload: Some(Payload::Click(pb::Click {
                item_id: item.into(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    /// The EXPIRE commands one click plans, given what the writer remembers.
    fn expiries(ttl_set: &lru::LruCache<String, Instant>, now: Instant) -> Vec<String> {
        let keys = Keys::new("p");
        let settings = IngestSettings::default();
        let writer = FeatureWriter {
            keys: &keys,
            settings: &settings,
            ttl_set,
            now,
        };
        let mut wb = WriteBatch::new(60);
        let mut state = UserState::default();
        writer.user_event(
            &mut wb,
            &click("u", "i1"),
            &mut state,
            false,
            &HashMap::new(),
        );
        wb.commands()
            .into_iter()
            .filter(|c| c[0] == "EXPIRE")
            .map(|c| c[1].clone())
            .collect()
    }

    #[test]
    fn sliding_ttls_are_set_again_only_after_an_eighth_of_their_length() {
        let now = Instant::now() + Duration::from_secs(24 * 3600);
        let mut remembered = lru::LruCache::new(std::num::NonZeroUsize::new(100).unwrap());
        let all = expiries(&remembered, now);
        assert!(all.contains(&"p:u:u:n".to_string()), "{all:?}");
        assert!(all.contains(&"p:s:s1".to_string()), "{all:?}");

        // Set a minute ago: nothing is set again.
        for key in &all {
            remembered.put(key.clone(), now - Duration::from_secs(60));
        }
        assert_eq!(expiries(&remembered, now), Vec::<String>::new());

        // Set longer ago than the refresh interval (at most 15 minutes):
        // sliding TTLs are set again; the fixed hour bucket never is.
        for key in &all {
            remembered.put(key.clone(), now - Duration::from_secs(16 * 60));
        }
        let again = expiries(&remembered, now);
        assert!(again.contains(&"p:u:u:n".to_string()), "{again:?}");
        assert!(!again.iter().any(|k| k.contains(":w:")), "{again:?}");
    }
}
