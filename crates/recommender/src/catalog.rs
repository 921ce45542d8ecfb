//! The catalog in memory: every item of the compacted `funnel.catalog.v1`, read whole from
//! the beginning by every instance (no consumer group), with the indexes content
//! candidates use; and category popularity, read from ingest's daily top lists in Redis
//! in the background.
//!
//! Bounds: at most `catalog.max_items` items (records of further new items are dropped
//! and counted); each leaf category, brand and title word indexes at most
//! `catalog.index_per_key` items (the most recently first seen); popularity keeps the top
//! `catalog.popular_per_category` items of each category.
//!
//! Each item has a slot, a small integer the indexes hold instead of its id, so that
//! content candidates reach entries without hashing strings; and keeps its row in the
//! item embeddings, looked up once when its record arrives instead of once per request
//! it is a candidate of.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use funnel_bus::KafkaConfig;
use funnel_core::pb;
use funnel_runtime::Shutdown;
use funnel_store::{Keys, Read, Store};
use prost::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::config::CatalogSettings;
use crate::embeddings::Embeddings;
use crate::features::{FastMap, ItemRecord, top_level};
use crate::metrics::Metrics;

/// One catalog item as kept.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    pub record: ItemRecord,
    /// When this instance first saw the item (the record's event time, else now).
    pub first_seen_ms: i64,
    /// Its row in [`CatalogData::embeddings`], if it has one.
    embedding: Option<u32>,
}

/// Items and their content indexes.
#[derive(Debug, Default)]
pub struct CatalogData {
    /// Item id → its slot in `entries`.
    slots: FastMap<String, u32>,
    /// Slot → the item's id and entry; `None` for a slot a tombstone freed, which the
    /// next new item takes (so there are never more slots than `catalog.max_items`).
    entries: Vec<Option<(String, CatalogEntry)>>,
    free: Vec<u32>,
    /// The item embeddings the service loaded (fixed for its lifetime).
    pub embeddings: Option<Arc<Embeddings>>,
    /// Leaf category, brand and title word → slots of their items, the most recently
    /// first seen first; only slots of items present.
    pub by_leaf: HashMap<String, VecDeque<u32>>,
    pub by_brand: HashMap<String, VecDeque<u32>>,
    pub by_token: HashMap<String, VecDeque<u32>>,
    /// Every category path and its ancestors, for the popularity refresh.
    pub categories: HashSet<String>,
}

fn index(map: &mut HashMap<String, VecDeque<u32>>, key: &str, slot: u32, max: usize) {
    if key.is_empty() {
        return;
    }
    let list = map.entry(key.to_owned()).or_default();
    if list.contains(&slot) {
        return;
    }
    list.push_front(slot);
    list.truncate(max);
}

fn unindex(map: &mut HashMap<String, VecDeque<u32>>, key: &str, slot: u32) {
    if let Some(list) = map.get_mut(key) {
        list.retain(|s| *s != slot);
    }
}

/// The category and every ancestor: `a/b/c`, `a/b`, `a`.
pub fn with_ancestors(category: &str) -> impl Iterator<Item = &str> {
    category
        .match_indices('/')
        .map(|(at, _)| &category[..at])
        .chain((!category.is_empty()).then_some(category))
}

/// What applying one record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    New,
    Updated,
    Dropped,
}

impl CatalogData {
    pub fn new(embeddings: Option<Arc<Embeddings>>) -> CatalogData {
        CatalogData {
            embeddings,
            ..CatalogData::default()
        }
    }

    /// The embedding of `entry`, one of this catalog's.
    pub fn embedding(&self, entry: &CatalogEntry) -> Option<&[f32]> {
        Some(self.embeddings.as_deref()?.vector_of(entry.embedding?))
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&CatalogEntry> {
        self.at(self.slot(id)?).map(|(_, entry)| entry)
    }

    pub fn slot(&self, id: &str) -> Option<u32> {
        self.slots.get(id).copied()
    }

    /// The id and entry of the item in `slot` (as an index holds it).
    pub fn at(&self, slot: u32) -> Option<(&str, &CatalogEntry)> {
        let (id, entry) = self.entries.get(slot as usize)?.as_ref()?;
        Some((id, entry))
    }

    /// Applies the latest record of an item.
    pub fn upsert(&mut self, item: &pb::Item, settings: &CatalogSettings, now_ms: i64) -> Upsert {
        let mut record = ItemRecord::new(&item.category, &item.brand, &item.title, item.price);
        record.stock = item.stock;
        record.active = item.attributes.get("active").is_none_or(|v| v != "false");
        let id = item.item_id.as_str();
        let (slot, first_seen_ms, upsert) = match self.slot(id) {
            Some(slot) => {
                let old = self.entries[slot as usize].take();
                let first_seen_ms = match old {
                    Some((_, old)) => {
                        self.unindex(slot, &old.record);
                        old.first_seen_ms
                    }
                    None => now_ms,
                };
                (slot, first_seen_ms, Upsert::Updated)
            }
            None if self.slots.len() >= settings.max_items => return Upsert::Dropped,
            None => {
                let slot = self.free.pop().unwrap_or(self.entries.len() as u32);
                if slot as usize == self.entries.len() {
                    self.entries.push(None);
                }
                self.slots.insert(id.to_owned(), slot);
                let first_seen_ms = if item.updated_ts_ms > 0 {
                    item.updated_ts_ms.min(now_ms)
                } else {
                    now_ms
                };
                (slot, first_seen_ms, Upsert::New)
            }
        };
        let max = settings.index_per_key;
        index(&mut self.by_leaf, &record.category, slot, max);
        index(&mut self.by_brand, &record.brand, slot, max);
        for token in &record.tokens {
            index(&mut self.by_token, token, slot, max);
        }
        for c in with_ancestors(&record.category) {
            if !self.categories.contains(c) {
                self.categories.insert(c.to_owned());
            }
        }
        let entry = CatalogEntry {
            record,
            first_seen_ms,
            embedding: self.embeddings.as_deref().and_then(|e| e.row(id)),
        };
        self.entries[slot as usize] = Some((id.to_owned(), entry));
        upsert
    }

    fn unindex(&mut self, slot: u32, record: &ItemRecord) {
        unindex(&mut self.by_leaf, &record.category, slot);
        unindex(&mut self.by_brand, &record.brand, slot);
        for token in &record.tokens {
            unindex(&mut self.by_token, token, slot);
        }
    }

    /// Forgets an item (a tombstone on the compacted topic); its slot is free again.
    pub fn remove(&mut self, id: &str) {
        let Some(slot) = self.slots.remove(id) else {
            return;
        };
        if let Some((_, old)) = self.entries[slot as usize].take() {
            self.unindex(slot, &old.record);
        }
        self.free.push(slot);
    }
}

/// Category popularity: the top lists of every category, and each item's score in its
/// own leaf category.
#[derive(Debug, Default)]
pub struct Popularity {
    /// Category → (item, today + yesterday), highest first.
    pub by_category: HashMap<String, Vec<(String, f64)>>,
    /// Item → its score in its leaf category's top list (0 outside it).
    pub by_item: FastMap<String, f64>,
    /// Items of every top-level category together, highest first.
    pub trending: Vec<(String, f64)>,
}

/// The catalog and popularity, shared by requests (read) and the background tasks.
#[derive(Clone, Default)]
pub struct Catalog {
    data: Arc<RwLock<CatalogData>>,
    popularity: Arc<RwLock<Arc<Popularity>>>,
}

impl Catalog {
    pub fn new(embeddings: Option<Arc<Embeddings>>) -> Catalog {
        Catalog {
            data: Arc::new(RwLock::new(CatalogData::new(embeddings))),
            ..Catalog::default()
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, CatalogData> {
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn popularity(&self) -> Arc<Popularity> {
        Arc::clone(&self.popularity.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Applies records (`None`: a tombstone), counting into `metrics`.
    pub fn apply(
        &self,
        records: impl IntoIterator<Item = (String, Option<pb::Item>)>,
        settings: &CatalogSettings,
        metrics: &Metrics,
    ) {
        let now = funnel_core::now_ms();
        let mut data = self.data.write().unwrap_or_else(|e| e.into_inner());
        for (id, item) in records {
            match item {
                Some(item) => match data.upsert(&item, settings, now) {
                    Upsert::Dropped => metrics.catalog_dropped.inc(),
                    Upsert::New | Upsert::Updated => metrics.catalog_updates.inc(),
                },
                None => {
                    data.remove(&id);
                    0
                }
            };
        }
        metrics.catalog_items.set(data.len() as i64);
    }

    /// Reads the daily top lists of every category (today and yesterday, summed) in one
    /// round trip and swaps the result in.
    pub async fn refresh_popularity(
        &self,
        store: &Store,
        keys: &Keys,
        per_category: usize,
    ) -> Result<(), funnel_store::StoreError> {
        let categories: Vec<String> = self.read().categories.iter().cloned().collect();
        let now = funnel_core::now_ms();
        let stop = per_category as isize - 1;
        let reads: Vec<Read> = categories
            .iter()
            .flat_map(|c| {
                [now, now - funnel_store::keys::DAY_MS]
                    .map(|day| Read::ZRevRange(keys.category_popularity(c, day), 0, stop))
            })
            .collect();
        let replies = store.read(&reads).await?;
        let mut popularity = Popularity::default();
        let mut replies = replies.into_iter();
        for category in categories {
            let mut sum: HashMap<String, f64> = HashMap::new();
            for reply in replies.by_ref().take(2) {
                for (item, score) in reply.into_scored() {
                    *sum.entry(item).or_default() += score;
                }
            }
            let mut top: Vec<(String, f64)> = sum.into_iter().collect();
            top.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            top.truncate(per_category);
            popularity.by_category.insert(category, top);
        }
        {
            let data = self.read();
            for (category, top) in &popularity.by_category {
                for (id, score) in top {
                    if data.get(id).is_some_and(|e| e.record.category == *category) {
                        popularity.by_item.insert(id.clone(), *score);
                    }
                }
            }
        }
        let mut trending: Vec<(String, f64)> = popularity
            .by_category
            .iter()
            .filter(|(c, _)| top_level(c) == c.as_str())
            .flat_map(|(_, top)| top.iter().cloned())
            .collect();
        trending.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        trending.truncate(per_category);
        popularity.trending = trending;
        *self.popularity.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(popularity);
        Ok(())
    }
}

/// Refreshes popularity every `every` until `stop`; failures are logged and counted.
pub async fn refresh_popularity_until(
    catalog: Catalog,
    store: Store,
    keys: Keys,
    settings: CatalogSettings,
    metrics: Metrics,
    stop: Shutdown,
) {
    let every = Duration::from_millis(settings.popularity_refresh_ms);
    loop {
        if let Err(e) = catalog
            .refresh_popularity(&store, &keys, settings.popular_per_category)
            .await
        {
            metrics.popularity_errors.inc();
            tracing::warn!(error = %e, "category popularity refresh failed; the previous lists serve");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Reads the catalog topic: all partitions from the beginning, outside any consumer
/// group, so that every instance holds the whole catalog.
pub struct CatalogReader {
    consumer: StreamConsumer,
    topic: String,
    /// Per partition, the end offset at start: the catalog is loaded once every
    /// partition has been read up to it.
    ends: HashMap<i32, i64>,
}

impl CatalogReader {
    /// Looks up the topic's partitions and their end offsets (blocking calls, run on a
    /// blocking thread) and assigns them all from the beginning.
    pub async fn start(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<CatalogReader> {
        use anyhow::Context as _;
        // librdkafka wants a group id even for assigned partitions; nothing is committed.
        let group = format!("{}-catalog-{}", kafka.group_id, std::process::id());
        let consumer: StreamConsumer = kafka
            .client_config(&[
                ("group.id", group.as_str()),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("enable.partition.eof", "false"),
            ])
            .create()
            .context("failed to create the catalog consumer")?;
        let consumer = Arc::new(consumer);
        let (c, t) = (Arc::clone(&consumer), topic.to_owned());
        let ends = tokio::task::spawn_blocking(move || -> anyhow::Result<HashMap<i32, i64>> {
            let timeout = Duration::from_secs(10);
            let metadata = c.fetch_metadata(Some(&t), timeout)?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .flat_map(|m| m.partitions().iter().map(|p| p.id()))
                .collect();
            anyhow::ensure!(!partitions.is_empty(), "topic {t} has no partitions");
            let mut ends = HashMap::new();
            let mut tpl = TopicPartitionList::new();
            for p in partitions {
                let (_, high) = c.fetch_watermarks(&t, p, timeout)?;
                ends.insert(p, high);
                tpl.add_partition_offset(&t, p, Offset::Beginning)?;
            }
            c.assign(&tpl)?;
            Ok(ends)
        })
        .await?
        .with_context(|| format!("failed to read the partitions of topics.catalog {topic}"))?;
        let consumer = Arc::try_unwrap(consumer)
            .map_err(|_| anyhow::anyhow!("catalog consumer still shared"))?;
        Ok(CatalogReader {
            consumer,
            topic: topic.to_owned(),
            ends,
        })
    }

    /// Applies records to `catalog` until `stop`; `loaded` turns true once the topic
    /// was read to its end offsets of the start.
    pub async fn run(
        self,
        catalog: Catalog,
        settings: CatalogSettings,
        metrics: Metrics,
        loaded: watch::Sender<bool>,
        stop: Shutdown,
    ) {
        let mut pending: HashMap<i32, i64> =
            self.ends.into_iter().filter(|(_, end)| *end > 0).collect();
        if pending.is_empty() {
            loaded.send_replace(true);
        }
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => return,
                m = self.consumer.recv() => m,
            };
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(topic = %self.topic, error = %e, "catalog read failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let id = message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            let record = match message.payload() {
                None => Some((id, None)),
                Some(bytes) => match pb::Item::decode(bytes) {
                    Ok(item) => Some((item.item_id.clone(), Some(item))),
                    Err(e) => {
                        metrics.catalog_undecodable.inc();
                        tracing::warn!(offset = message.offset(), error = %e, "skipping a catalog record that is not an Item");
                        None
                    }
                },
            };
            if let Some(record) = record.filter(|(id, _)| !id.is_empty()) {
                catalog.apply([record], &settings, &metrics);
            }
            if let Some(end) = pending.get(&message.partition())
                && message.offset() + 1 >= *end
            {
                pending.remove(&message.partition());
                if pending.is_empty() {
                    tracing::info!(items = catalog.read().len(), "catalog loaded");
                    loaded.send_replace(true);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, category: &str, brand: &str, title: &str) -> pb::Item {
        pb::Item {
            item_id: id.into(),
            title: title.into(),
            category: category.into(),
            brand: brand.into(),
            price: 5.0,
            stock: 1,
            ..pb::Item::default()
        }
    }

    #[test]
    fn records_are_indexed_reindexed_on_update_and_bounded() {
        let settings = CatalogSettings {
            max_items: 2,
            ..CatalogSettings::default()
        };
        let mut data = CatalogData::default();
        assert_eq!(
            data.upsert(&item("a", "x/y", "B", "Red Cup"), &settings, 1),
            Upsert::New
        );
        assert_eq!(
            data.upsert(&item("b", "x/z", "B", "Blue Cup"), &settings, 2),
            Upsert::New
        );
        assert_eq!(
            data.upsert(&item("c", "x/y", "B", "Cup"), &settings, 3),
            Upsert::Dropped
        );
        let ids = |data: &CatalogData, pool: &VecDeque<u32>| -> Vec<String> {
            pool.iter()
                .map(|s| data.at(*s).unwrap().0.to_owned())
                .collect()
        };
        assert_eq!(ids(&data, &data.by_token["cup"]), ["b", "a"]);
        assert_eq!(
            data.upsert(&item("a", "w", "C", "Red Mug"), &settings, 4),
            Upsert::Updated
        );
        assert_eq!(ids(&data, &data.by_token["cup"]), ["b"]);
        assert!(data.by_leaf["x/y"].is_empty());
        assert_eq!(data.get("a").unwrap().first_seen_ms, 1);
        assert_eq!(data.get("a").unwrap().record.title, "Red Mug");
        let mut categories: Vec<_> = data.categories.iter().cloned().collect();
        categories.sort();
        assert_eq!(categories, ["w", "x", "x/y", "x/z"]);
        data.remove("b");
        assert!(data.by_brand["B"].is_empty());
        assert_eq!((data.len(), data.get("b").map(|_| ())), (1, None));
        // The freed slot goes to the next new item; the indexes name it, not b.
        assert_eq!(
            data.upsert(&item("d", "x/z", "B", "Cup"), &settings, 5),
            Upsert::New
        );
        assert_eq!(data.slot("d"), Some(1));
        assert_eq!(ids(&data, &data.by_brand["B"]), ["d"]);
        assert_eq!(ids(&data, &data.by_token["cup"]), ["d"]);
        assert_eq!(data.len(), 2);
    }

    #[test]
    fn ancestors_come_with_the_category() {
        assert_eq!(
            with_ancestors("a/b/c").collect::<Vec<_>>(),
            ["a", "a/b", "a/b/c"]
        );
        assert_eq!(with_ancestors("").count(), 0);
    }
}
