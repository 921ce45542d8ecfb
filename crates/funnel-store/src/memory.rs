//! The in-memory backend for the embedded demo and unit tests: the subset of
//! Redis the store uses, with the same atomic-batch semantics and TTLs, and a
//! hard cap on the number of keys.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::batch::{MarkerState, marker_origin};
use crate::{ApplyOutcome, Read, Reply, WriteBatch};

#[derive(Debug, Clone)]
enum Value {
    Str(String),
    Hash(HashMap<String, String>),
    List(VecDeque<String>),
    ZSet(HashMap<String, f64>),
}

#[derive(Debug)]
struct Entry {
    value: Value,
    /// Milliseconds since the store started; `None`: no TTL.
    expires_at: Option<u64>,
}

#[derive(Debug)]
struct Inner {
    started: Instant,
    max_keys: usize,
    entries: HashMap<String, Entry>,
    evicted: u64,
}

/// A bounded, thread-safe in-memory feature store.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStore {
    /// A store holding at most `max_keys` keys; past that, expired keys go
    /// first, then those closest to expiry.
    pub fn new(max_keys: usize) -> Self {
        MemoryStore {
            inner: Arc::new(Mutex::new(Inner {
                started: Instant::now(),
                max_keys: max_keys.max(16),
                entries: HashMap::new(),
                evicted: 0,
            })),
        }
    }

    /// Number of live keys.
    pub fn len(&self) -> usize {
        let mut inner = self.inner.lock().expect("memory store lock");
        let now = inner.now();
        inner.entries.retain(|_, e| !e.expired(now));
        inner.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys evicted because the store was full.
    pub fn evicted(&self) -> u64 {
        self.inner.lock().expect("memory store lock").evicted
    }

    /// TTL of `key` in seconds, as `TTL` answers: -2 missing, -1 no TTL.
    pub fn ttl(&self, key: &str) -> i64 {
        let inner = self.inner.lock().expect("memory store lock");
        let now = inner.now();
        match inner.entries.get(key) {
            None => -2,
            Some(e) if e.expired(now) => -2,
            Some(Entry {
                expires_at: None, ..
            }) => -1,
            Some(Entry {
                expires_at: Some(at),
                ..
            }) => ((at - now + 500) / 1000) as i64,
        }
    }

    pub fn read(&self, reads: &[Read]) -> Vec<Reply> {
        let mut inner = self.inner.lock().expect("memory store lock");
        reads.iter().map(|r| inner.read(r)).collect()
    }

    pub fn apply(&self, batch: &WriteBatch) -> ApplyOutcome {
        let mut inner = self.inner.lock().expect("memory store lock");
        let current = batch
            .markers
            .iter()
            .map(|m| match inner.live(&m.key) {
                Some(Value::Str(s)) => Some(s.clone()),
                _ => None,
            })
            .collect::<Vec<_>>();
        let agrees =
            batch.markers.iter().zip(&current).all(|(m, cur)| {
                MarkerState::of(cur.as_deref(), marker_origin(&m.value)) == m.expect
            });
        if !agrees {
            return ApplyOutcome::Conflict;
        }
        debug_assert!(
            current
                .iter()
                .all(|c| c.as_deref().is_none_or(|v| !marker_origin(v).is_empty()))
        );
        for m in &batch.markers {
            if m.expect == MarkerState::Fresh {
                inner.set(&m.key, Value::Str(m.value.clone()));
                inner.expire(&m.key, batch.dedup_ttl_secs);
            }
        }
        batch.for_each_command(|name, args| inner.run(name, args));
        inner.enforce_cap();
        ApplyOutcome::Applied
    }
}

impl Entry {
    fn expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

impl Inner {
    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn live(&mut self, key: &str) -> Option<&mut Value> {
        let now = self.now();
        if self.entries.get(key).is_some_and(|e| e.expired(now)) {
            self.entries.remove(key);
        }
        self.entries.get_mut(key).map(|e| &mut e.value)
    }

    fn set(&mut self, key: &str, value: Value) {
        self.entries.insert(
            key.to_string(),
            Entry {
                value,
                expires_at: None,
            },
        );
    }

    /// The value at `key`, created with `make` if absent or of another type
    /// (Redis would answer WRONGTYPE; our writers never mix types per key).
    fn slot(&mut self, key: &str, make: fn() -> Value) -> &mut Value {
        let now = self.now();
        let fresh = match self.entries.get(key) {
            None => true,
            Some(e) => {
                e.expired(now)
                    || std::mem::discriminant(&e.value) != std::mem::discriminant(&make())
            }
        };
        if fresh {
            self.set(key, make());
        }
        &mut self.entries.get_mut(key).expect("just inserted").value
    }

    fn expire(&mut self, key: &str, secs: u64) {
        let at = self.now() + secs * 1000;
        if let Some(e) = self.entries.get_mut(key) {
            e.expires_at = Some(at);
        }
    }

    fn enforce_cap(&mut self) {
        if self.entries.len() <= self.max_keys {
            return;
        }
        let now = self.now();
        self.entries.retain(|_, e| !e.expired(now));
        let excess = self.entries.len().saturating_sub(self.max_keys);
        if excess == 0 {
            return;
        }
        // Evict those closest to expiry (no TTL counts as furthest).
        let mut by_expiry = self
            .entries
            .iter()
            .map(|(k, e)| (e.expires_at.unwrap_or(u64::MAX), k.clone()))
            .collect::<Vec<_>>();
        by_expiry.select_nth_unstable(excess - 1);
        for (_, k) in by_expiry.into_iter().take(excess) {
            self.entries.remove(&k);
        }
        self.evicted += excess as u64;
    }

    fn run(&mut self, name: &str, args: &[&str]) {
        let arg = |i: usize| args.get(i - 1).copied().unwrap_or("");
        match name {
            "HINCRBY" => {
                let by: i64 = arg(3).parse().unwrap_or(0);
                if let Value::Hash(h) = self.slot(arg(1), || Value::Hash(HashMap::new())) {
                    let v = h.entry(arg(2).to_string()).or_insert_with(|| "0".into());
                    *v = (v.parse::<i64>().unwrap_or(0) + by).to_string();
                }
            }
            "HINCRBYFLOAT" => {
                let by: f64 = arg(3).parse().unwrap_or(0.0);
                if let Value::Hash(h) = self.slot(arg(1), || Value::Hash(HashMap::new())) {
                    let v = h.entry(arg(2).to_string()).or_insert_with(|| "0".into());
                    *v = (v.parse::<f64>().unwrap_or(0.0) + by).to_string();
                }
            }
            "HSET" => {
                if let Value::Hash(h) = self.slot(arg(1), || Value::Hash(HashMap::new())) {
                    for pair in args[1..].chunks_exact(2) {
                        h.insert(pair[0].to_string(), pair[1].to_string());
                    }
                }
            }
            "HDEL" => {
                if let Some(Value::Hash(h)) = self.live(arg(1)) {
                    h.remove(arg(2));
                }
            }
            "ZINCRBY" => {
                let by: f64 = arg(2).parse().unwrap_or(0.0);
                if let Value::ZSet(z) = self.slot(arg(1), || Value::ZSet(HashMap::new())) {
                    *z.entry(arg(3).to_string()).or_insert(0.0) += by;
                }
            }
            "ZREMRANGEBYRANK" => {
                // Only the form the batch emits: `0 -(keep+1)`, keep the top `keep`.
                let keep = (-arg(3).parse::<i64>().unwrap_or(-1) - 1).max(0) as usize;
                if let Some(Value::ZSet(z)) = self.live(arg(1))
                    && z.len() > keep
                {
                    let ranked = zrange_desc(z);
                    *z = ranked.into_iter().take(keep).collect();
                }
            }
            "LPUSH" => {
                if let Value::List(l) = self.slot(arg(1), || Value::List(VecDeque::new())) {
                    for v in &args[1..] {
                        l.push_front(v.to_string());
                    }
                }
            }
            "LTRIM" => {
                let keep = arg(3).parse::<i64>().unwrap_or(-1) + 1;
                if let Some(Value::List(l)) = self.live(arg(1)) {
                    l.truncate(keep.max(0) as usize);
                }
            }
            "EXPIRE" => {
                let secs = arg(2).parse().unwrap_or(0);
                self.expire(arg(1), secs);
            }
            other => tracing::error!(command = other, "memory store does not implement command"),
        }
    }

    fn read(&mut self, read: &Read) -> Reply {
        match read {
            Read::Get(k) => match self.live(k) {
                Some(Value::Str(s)) => Reply::Str(s.clone()),
                _ => Reply::Nil,
            },
            Read::MGet(keys) => {
                let mut values = Vec::with_capacity(keys.len());
                for k in keys {
                    values.push(match self.live(k) {
                        Some(Value::Str(s)) => Some(s.clone()),
                        _ => None,
                    });
                }
                Reply::Fields(values)
            }
            Read::HGetAll(k) => match self.live(k) {
                Some(Value::Hash(h)) => {
                    let mut pairs = h
                        .iter()
                        .map(|(a, b)| (a.clone(), b.clone()))
                        .collect::<Vec<_>>();
                    pairs.sort();
                    Reply::Hash(pairs)
                }
                _ => Reply::Nil,
            },
            Read::HMGet(k, fields) => match self.live(k) {
                Some(Value::Hash(h)) => {
                    Reply::Fields(fields.iter().map(|f| h.get(f).cloned()).collect())
                }
                _ => Reply::Fields(vec![None; fields.len()]),
            },
            Read::LRange(k, start, stop) => match self.live(k) {
                Some(Value::List(l)) => {
                    Reply::List(range(l.iter().cloned().collect(), *start, *stop))
                }
                _ => Reply::Nil,
            },
            Read::ZRevRange(k, start, stop) => match self.live(k) {
                Some(Value::ZSet(z)) => Reply::Scored(range(zrange_desc(z), *start, *stop)),
                _ => Reply::Nil,
            },
        }
    }
}

/// Members by score descending, ties by member descending (as `ZRANGE REV`).
fn zrange_desc(z: &HashMap<String, f64>) -> Vec<(String, f64)> {
    let mut v = z.iter().map(|(m, s)| (m.clone(), *s)).collect::<Vec<_>>();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    v
}

/// Redis range semantics: inclusive, negative indexes from the end.
fn range<T>(items: Vec<T>, start: isize, stop: isize) -> Vec<T> {
    let len = items.len() as isize;
    let norm = |i: isize| if i < 0 { (len + i).max(0) } else { i };
    let (a, b) = (norm(start), norm(stop).min(len - 1));
    if len == 0 || a > b {
        return Vec::new();
    }
    items
        .into_iter()
        .skip(a as usize)
        .take((b - a + 1) as usize)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_applies_once_and_its_replay_conflicts_without_writing() {
        let store = MemoryStore::new(1000);
        let mut b = WriteBatch::new(3600);
        b.marker("d:e1".into(), "t/0/1|s1".into(), MarkerState::Fresh);
        b.hincr("u:n", "click", 1);
        b.expire("u:n", 60);
        assert_eq!(store.apply(&b), ApplyOutcome::Applied);
        assert_eq!(store.apply(&b), ApplyOutcome::Conflict);
        assert_eq!(
            store.read(&[Read::HGetAll("u:n".into())]),
            vec![Reply::Hash(vec![("click".into(), "1".into())])]
        );
        assert_eq!(store.ttl("u:n"), 60);
        assert_eq!(store.ttl("d:e1"), 3600);
    }

    #[test]
    fn lists_and_sorted_sets_are_capped() {
        let store = MemoryStore::new(1000);
        let mut b = WriteBatch::new(60);
        for i in 0..5 {
            b.lpush_capped("l", &format!("i{i}"), 3);
            b.zincr("z", &format!("m{i}"), i as f64);
        }
        b.zcap("z", 2);
        store.apply(&b);
        assert_eq!(
            store.read(&[
                Read::LRange("l".into(), 0, -1),
                Read::ZRevRange("z".into(), 0, -1)
            ]),
            vec![
                Reply::List(vec!["i4".into(), "i3".into(), "i2".into()]),
                Reply::Scored(vec![("m4".into(), 4.0), ("m3".into(), 3.0)]),
            ]
        );
    }

    #[test]
    fn the_key_cap_evicts_the_soonest_to_expire() {
        let store = MemoryStore::new(16);
        let mut b = WriteBatch::new(60);
        for i in 0..20 {
            let k = format!("k{i}");
            b.hset(&k, "f", "v");
            b.expire(&k, 100 + i);
        }
        store.apply(&b);
        assert_eq!(store.len(), 16);
        assert_eq!(store.evicted(), 4);
        assert_eq!(store.ttl("k0"), -2);
        assert!(store.ttl("k19") > 0);
    }
}
