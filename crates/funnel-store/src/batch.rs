//! A batch of writes: one dedup marker per event, and the commands of all
//! fresh events merged so that a batch of a thousand events costs hundreds of
//! Redis commands, not thousands.
//!
//! Commands whose order matters (cart changes, list pushes) keep their order;
//! increments are summed per key and field; hash sets keep the last value;
//! trims and expiries run once per key at the end.
//!
//! Keys, fields and values are copied once into one text buffer and found
//! again through hash tables of indices: planning a batch touches every key
//! of every event, and one allocation per key and per field (then one free
//! each) was a large share of ingest's CPU.

use std::hash::BuildHasher;

use hashbrown::HashTable;

type Hasher = foldhash::fast::RandomState;

/// A cleared batch whose text or entries grew beyond these starts afresh
/// instead of keeping the buffers of one outsized batch.
const KEPT_TEXT_BYTES: usize = 4 << 20;
const KEPT_ENTRIES: usize = 1 << 17;

/// One Redis command as its arguments, e.g. `["HINCRBY", key, field, "1"]`.
pub type Cmd = Vec<String>;

/// What the writer expects an event's dedup marker to be when the batch is
/// applied; the batch is refused if any marker differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerState {
    /// Absent: the event is new and its marker is set by this batch.
    Fresh,
    /// Present with the same origin: a replay, nothing to write.
    Replay,
    /// Present with another origin: a duplicate, nothing to write.
    Duplicate,
}

impl MarkerState {
    /// Classifies a marker's current value against this message's origin.
    pub fn of(current: Option<&str>, origin: &str) -> MarkerState {
        match current {
            None => MarkerState::Fresh,
            Some(v) if marker_origin(v) == origin => MarkerState::Replay,
            Some(_) => MarkerState::Duplicate,
        }
    }
}

/// `origin|session` to `origin`.
pub fn marker_origin(marker: &str) -> &str {
    marker.split_once('|').map_or(marker, |(o, _)| o)
}

/// `origin|session` to `session`.
pub fn marker_session(marker: &str) -> &str {
    marker.split_once('|').map_or("", |(_, s)| s)
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Marker {
    pub key: String,
    /// `origin|…`
    pub value: String,
    pub expect: MarkerState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Trim {
    #[default]
    None,
    /// Keep list elements `0..keep`.
    List(usize),
    /// Keep the `keep` highest-scored members.
    ZSet(usize),
}

/// A stretch of a batch's text.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

/// Every key, field and value of a batch, one after the other.
#[derive(Debug, Clone, Default)]
struct Text(String);

impl Text {
    fn push(&mut self, s: &str) -> Span {
        let offset = |n: usize| u32::try_from(n).expect("a batch's text stays under 4 GiB");
        let start = offset(self.0.len());
        self.0.push_str(s);
        Span {
            start,
            len: offset(self.0.len()) - start,
        }
    }

    fn get(&self, span: Span) -> &str {
        &self.0[span.start as usize..(span.start + span.len) as usize]
    }
}

/// A key the batch writes, and what happens to it once its fields are written.
#[derive(Debug, Clone)]
struct KeyEntry {
    key: Span,
    /// Some field of it is set (one HSET for all of them).
    hset: bool,
    trim: Trim,
    expire: Option<u64>,
    /// Listed by [`WriteBatch::ttl_keys`].
    remembered: bool,
}

/// What is done to a field (or sorted-set member) of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Incr,
    FloatIncr,
    ZIncr,
    Set,
}

#[derive(Debug, Clone, Copy)]
enum Value {
    Int(i64),
    Float(f64),
    Text(Span),
}

/// One field of one key under one operation, with its merged value.
#[derive(Debug, Clone)]
struct FieldEntry {
    key: u32,
    op: Op,
    field: Span,
    value: Value,
}

#[derive(Debug, Clone, Copy)]
enum OrderedOp {
    HIncrBy(i64),
    HDel,
    LPush,
}

/// A command whose order matters: `op key arg`.
#[derive(Debug, Clone)]
struct Ordered {
    op: OrderedOp,
    key: u32,
    arg: Span,
}

/// Writes planned for one batch: keys in the order first written, each field
/// once per operation, so that merging into an existing entry allocates
/// nothing.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub(crate) markers: Vec<Marker>,
    pub(crate) dedup_ttl_secs: u64,
    text: Text,
    hasher: Hasher,
    /// Indices into `key_entries`, hashed by key.
    keys: HashTable<u32>,
    key_entries: Vec<KeyEntry>,
    /// Indices into `field_entries`, hashed by (key index, op, field).
    fields: HashTable<u32>,
    field_entries: Vec<FieldEntry>,
    ordered: Vec<Ordered>,
}

impl WriteBatch {
    pub fn new(dedup_ttl_secs: u64) -> Self {
        WriteBatch {
            dedup_ttl_secs,
            ..WriteBatch::default()
        }
    }

    /// Empties the batch for the next one. Its buffers are kept (up to a
    /// bound), so that a steady stream of batches stops allocating them.
    pub fn clear(&mut self) {
        let entries = [
            self.key_entries.capacity(),
            self.field_entries.capacity(),
            self.ordered.capacity(),
            self.markers.capacity(),
        ];
        if self.text.0.capacity() > KEPT_TEXT_BYTES || entries.iter().any(|n| *n > KEPT_ENTRIES) {
            *self = WriteBatch::new(self.dedup_ttl_secs);
            return;
        }
        self.markers.clear();
        self.text.0.clear();
        self.keys.clear();
        self.key_entries.clear();
        self.fields.clear();
        self.field_entries.clear();
        self.ordered.clear();
    }

    /// Records the marker of one event. `value` starts with `origin|` (the
    /// message's topic/partition/offset), which tells a replay from a duplicate.
    pub fn marker(&mut self, key: String, value: String, expect: MarkerState) {
        self.markers.push(Marker { key, value, expect });
    }

    pub fn marker_count(&self) -> usize {
        self.markers.len()
    }

    /// The index of `key`'s entry, created when missing.
    fn key(&mut self, key: &str) -> u32 {
        let hash = self.hasher.hash_one(key);
        let Self {
            text,
            hasher,
            keys,
            key_entries,
            ..
        } = self;
        let known = |&i: &u32| text.get(key_entries[i as usize].key) == key;
        if let Some(i) = keys.find(hash, known) {
            return *i;
        }
        let i = key_entries.len() as u32;
        key_entries.push(KeyEntry {
            key: text.push(key),
            hset: false,
            trim: Trim::None,
            expire: None,
            remembered: false,
        });
        keys.insert_unique(hash, i, |&j| {
            hasher.hash_one(text.get(key_entries[j as usize].key))
        });
        i
    }

    fn key_entry(&mut self, key: &str) -> &mut KeyEntry {
        let i = self.key(key);
        &mut self.key_entries[i as usize]
    }

    /// The value of `field` of `key` under `op`, `new` when it was not there.
    fn value(&mut self, key: &str, op: Op, field: &str, new: Value) -> &mut Value {
        let k = self.key(key);
        let hash = self.hasher.hash_one((k, op, field));
        let Self {
            text,
            hasher,
            fields,
            field_entries,
            key_entries,
            ..
        } = self;
        let known = |&i: &u32| {
            let e = &field_entries[i as usize];
            e.key == k && e.op == op && text.get(e.field) == field
        };
        let i = match fields.find(hash, known) {
            Some(i) => *i,
            None => {
                let i = field_entries.len() as u32;
                field_entries.push(FieldEntry {
                    key: k,
                    op,
                    field: text.push(field),
                    value: new,
                });
                fields.insert_unique(hash, i, |&j| {
                    let e = &field_entries[j as usize];
                    hasher.hash_one((e.key, e.op, text.get(e.field)))
                });
                key_entries[k as usize].hset |= op == Op::Set;
                i
            }
        };
        &mut field_entries[i as usize].value
    }

    pub fn hincr(&mut self, key: &str, field: &str, by: i64) {
        if let Value::Int(v) = self.value(key, Op::Incr, field, Value::Int(0)) {
            *v += by;
        }
    }

    pub fn hincr_float(&mut self, key: &str, field: &str, by: f64) {
        if let Value::Float(v) = self.value(key, Op::FloatIncr, field, Value::Float(0.0)) {
            *v += by;
        }
    }

    pub fn zincr(&mut self, key: &str, member: &str, by: f64) {
        if let Value::Float(v) = self.value(key, Op::ZIncr, member, Value::Float(0.0)) {
            *v += by;
        }
    }

    /// Sets a hash field; the last value set in the batch wins.
    pub fn hset(&mut self, key: &str, field: &str, value: &str) {
        let value = Value::Text(self.text.push(value));
        *self.value(key, Op::Set, field, value) = value;
    }

    /// [`WriteBatch::hset`] of an integer's decimal form.
    pub fn hset_int(&mut self, key: &str, field: &str, value: i64) {
        self.hset(key, field, itoa::Buffer::new().format(value));
    }

    fn push_ordered(&mut self, op: OrderedOp, key: &str, arg: &str) {
        let key = self.key(key);
        let arg = self.text.push(arg);
        self.ordered.push(Ordered { op, key, arg });
    }

    /// A cart-like change whose order relative to deletions matters.
    pub fn hincr_ordered(&mut self, key: &str, field: &str, by: i64) {
        self.push_ordered(OrderedOp::HIncrBy(by), key, field);
    }

    pub fn hdel_ordered(&mut self, key: &str, field: &str) {
        self.push_ordered(OrderedOp::HDel, key, field);
    }

    /// Pushes to the head of a list kept to its `keep` newest elements.
    pub fn lpush_capped(&mut self, key: &str, value: &str, keep: usize) {
        self.push_ordered(OrderedOp::LPush, key, value);
        self.key_entry(key).trim = Trim::List(keep);
    }

    /// Keeps a sorted set to its `keep` highest-scored members.
    pub fn zcap(&mut self, key: &str, keep: usize) {
        self.key_entry(key).trim = Trim::ZSet(keep);
    }

    /// Gives `key` its TTL and lists it among [`WriteBatch::ttl_keys`], so
    /// that a writer can remember it and skip setting it again for a while;
    /// unless the batch gives it a TTL already (the first one stands), or
    /// `known(key)` says that the TTL is set. `known` is asked only about keys
    /// the batch has no TTL for: most keys recur within a batch.
    pub fn expire_unless(&mut self, key: &str, secs: u64, known: impl FnOnce(&str) -> bool) {
        let i = self.key(key);
        let e = &mut self.key_entries[i as usize];
        if e.expire.is_some() || known(key) {
            return;
        }
        e.expire = Some(secs);
        e.remembered = true;
    }

    /// Keys given a TTL by [`WriteBatch::expire_unless`].
    pub fn ttl_keys(&self) -> impl Iterator<Item = &str> {
        self.key_entries
            .iter()
            .filter(|e| e.remembered)
            .map(|e| self.text.get(e.key))
    }

    /// Gives `key` a TTL of at least `secs` (the longest asked for wins).
    pub fn expire(&mut self, key: &str, secs: u64) {
        let e = self.key_entry(key);
        e.expire = Some(e.expire.map_or(secs, |s| s.max(secs)));
    }

    pub fn is_empty(&self) -> bool {
        self.markers.is_empty() && self.command_count() == 0
    }

    pub fn command_count(&self) -> usize {
        let unset = self.field_entries.iter().filter(|e| e.op != Op::Set);
        let ends = |e: &KeyEntry| {
            usize::from(e.hset)
                + usize::from(e.trim != Trim::None)
                + usize::from(e.expire.is_some())
        };
        self.ordered.len() + unset.count() + self.key_entries.iter().map(ends).sum::<usize>()
    }

    /// Every command in execution order (markers excluded), as `(name, args)`:
    /// ordered commands, increments, one HSET per key, trims, expiries.
    pub fn for_each_command(&self, mut f: impl FnMut(&str, &[&str])) {
        let text = &self.text;
        let key = |i: u32| text.get(self.key_entries[i as usize].key);
        let mut int = itoa::Buffer::new();
        let mut float = String::new();
        for o in &self.ordered {
            let (k, arg) = (key(o.key), text.get(o.arg));
            match o.op {
                OrderedOp::HIncrBy(by) => f("HINCRBY", &[k, arg, int.format(by)]),
                OrderedOp::HDel => f("HDEL", &[k, arg]),
                OrderedOp::LPush => f("LPUSH", &[k, arg]),
            }
        }
        let mut sets = Vec::new();
        for (n, e) in self.field_entries.iter().enumerate() {
            let (k, field) = (key(e.key), text.get(e.field));
            match (e.op, e.value) {
                (Op::Incr, Value::Int(by)) if by != 0 => f("HINCRBY", &[k, field, int.format(by)]),
                (Op::FloatIncr, Value::Float(by)) => {
                    f("HINCRBYFLOAT", &[k, field, fmt_float(by, &mut float)])
                }
                (Op::ZIncr, Value::Float(by)) => {
                    f("ZINCRBY", &[k, fmt_float(by, &mut float), field])
                }
                (Op::Set, _) => sets.push((e.key, n)),
                _ => {}
            }
        }
        // Fields set on one key, in the order first set, as one command.
        sets.sort_unstable();
        let mut args = Vec::new();
        for group in sets.chunk_by(|a, b| a.0 == b.0) {
            args.clear();
            args.push(key(group[0].0));
            for &(_, n) in group {
                let e = &self.field_entries[n];
                if let Value::Text(v) = e.value {
                    args.extend([text.get(e.field), text.get(v)]);
                }
            }
            f("HSET", &args);
        }
        for e in &self.key_entries {
            let k = text.get(e.key);
            match e.trim {
                Trim::List(keep) => f("LTRIM", &[k, "0", int.format(keep as i64 - 1)]),
                Trim::ZSet(keep) => f("ZREMRANGEBYRANK", &[k, "0", int.format(-(keep as i64) - 1)]),
                Trim::None => {}
            }
        }
        for e in &self.key_entries {
            if let Some(secs) = e.expire {
                f("EXPIRE", &[text.get(e.key), int.format(secs)]);
            }
        }
    }

    /// Every command in execution order (markers excluded).
    pub fn commands(&self) -> Vec<Cmd> {
        let mut out = Vec::with_capacity(self.command_count());
        self.for_each_command(|name, args| {
            let mut cmd = Vec::with_capacity(args.len() + 1);
            cmd.push(name.to_string());
            cmd.extend(args.iter().map(|a| a.to_string()));
            out.push(cmd);
        });
        out
    }

    /// Marker keys with the values to set for fresh events.
    pub(crate) fn fresh_markers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.markers
            .iter()
            .filter(|m| m.expect == MarkerState::Fresh)
            .map(|m| (m.key.as_str(), m.value.as_str()))
    }
}

/// Shortest exact decimal form, as Redis accepts it, written into `buf`.
fn fmt_float(v: f64, buf: &mut String) -> &str {
    use std::fmt::Write;
    buf.clear();
    if v.fract() == 0.0 && v.abs() < 1e15 {
        buf.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        write!(buf, "{v}").expect("writing to a String");
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_merge_and_trims_and_expiries_come_last_once_per_key() {
        let mut b = WriteBatch::new(60);
        b.hincr("k", "click", 1);
        b.lpush_capped("l", "a", 3);
        b.hincr("k", "click", 2);
        b.zincr("z", "m", 1.5);
        b.zincr("z", "m", 1.0);
        b.lpush_capped("l", "b", 3);
        b.expire("k", 10);
        b.expire("k", 20);
        b.hset("h", "f", "1");
        b.hset("h", "f", "2");
        assert_eq!(
            b.commands(),
            vec![
                vec!["LPUSH", "l", "a"],
                vec!["LPUSH", "l", "b"],
                vec!["HINCRBY", "k", "click", "3"],
                vec!["ZINCRBY", "z", "2.5", "m"],
                vec!["HSET", "h", "f", "2"],
                vec!["LTRIM", "l", "0", "2"],
                vec!["EXPIRE", "k", "20"],
            ]
        );
    }

    /// Writes one by one on `to`, each in a batch of its own, and merged into `all`.
    fn random_writes(all: &mut WriteBatch, to: &crate::MemoryStore) {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        for _ in 0..5_000 {
            // Long shared prefixes, as real keys have.
            let (op, k, f, by) = (next(7), next(40), next(12), next(5) as i64 + 1);
            let hash = format!("prefix:with:a:long:stem:h{k}");
            let mut one = WriteBatch::new(60);
            for b in [&mut *all, &mut one] {
                match op {
                    0 | 1 => b.hincr(&hash, &format!("c{f}"), by),
                    2 => b.hincr_float(&hash, &format!("f{f}"), by as f64 / 2.0),
                    3 => b.hset(&hash, &format!("s{f}"), &format!("v{by}")),
                    4 => b.zincr(&format!("z{k}"), &format!("m{f}"), by as f64),
                    5 => b.lpush_capped(&format!("l{k}"), &format!("e{f}"), 5),
                    _ => b.hincr_ordered(&format!("cart{k}"), &format!("i{f}"), by),
                }
                if f == 0 {
                    b.expire(&hash, 100);
                }
            }
            assert_eq!(to.apply(&one), crate::ApplyOutcome::Applied);
        }
    }

    #[test]
    fn a_merged_batch_has_the_effect_of_its_writes_one_by_one() {
        use crate::{MemoryStore, Read, Reply};
        let (merged, single) = (MemoryStore::new(10_000), MemoryStore::new(10_000));
        let mut all = WriteBatch::new(60);
        random_writes(&mut all, &single);
        // Ordered writes (about 1,400) stay; the rest become one command per key and
        // field (at most 40 · 37 and one HSET, trim or expiry per key).
        assert!(all.command_count() < 3_000, "{}", all.command_count());
        assert_eq!(all.command_count(), all.commands().len());
        assert_eq!(merged.apply(&all), crate::ApplyOutcome::Applied);

        let sorted = |r: Reply| match r {
            Reply::Hash(mut h) => {
                h.sort();
                Reply::Hash(h)
            }
            r => r,
        };
        for k in 0..40 {
            let hash = format!("prefix:with:a:long:stem:h{k}");
            let reads = [
                Read::HGetAll(hash.clone()),
                Read::ZRevRange(format!("z{k}"), 0, -1),
                Read::LRange(format!("l{k}"), 0, -1),
                Read::HGetAll(format!("cart{k}")),
            ];
            let (a, b) = (merged.read(&reads), single.read(&reads));
            assert_ne!(a[0], Reply::Hash(Vec::new()), "{hash} was written");
            assert_eq!(
                a.into_iter().map(sorted).collect::<Vec<_>>(),
                b.into_iter().map(sorted).collect::<Vec<_>>(),
                "key {k}"
            );
            assert_eq!(merged.ttl(&hash), single.ttl(&hash), "{hash}");
        }
    }

    #[test]
    fn a_cleared_batch_plans_like_a_new_one() {
        let write = |b: &mut WriteBatch, n: i64| {
            b.hincr("k", "click", n);
            b.hset("h", "f", &format!("v{n}"));
            b.lpush_capped("l", "a", 3);
            b.expire_unless("k", 60, |_| false);
        };
        let mut reused = WriteBatch::new(60);
        write(&mut reused, 1);
        reused.marker("d:e1".into(), "t/0/1|s".into(), MarkerState::Fresh);
        reused.clear();
        assert!(reused.is_empty());
        write(&mut reused, 2);
        let mut fresh = WriteBatch::new(60);
        write(&mut fresh, 2);
        assert_eq!(reused.commands(), fresh.commands());
        assert_eq!(reused.ttl_keys().collect::<Vec<_>>(), ["k"]);
        assert_eq!(reused.dedup_ttl_secs, 60);
    }

    #[test]
    fn a_cleared_outsized_batch_gives_its_buffers_back() {
        let mut b = WriteBatch::new(60);
        for i in 0..KEPT_ENTRIES + 1 {
            b.hincr("k", itoa::Buffer::new().format(i), 1);
        }
        b.clear();
        assert_eq!(b.field_entries.capacity(), 0);
        assert_eq!(b.dedup_ttl_secs, 60);
        b.hincr("k", "f", 1);
        b.clear();
        b.hincr("k", "f", 2);
        assert!(
            b.field_entries.capacity() > 0,
            "a small batch keeps its buffers"
        );
        assert_eq!(b.commands(), vec![vec!["HINCRBY", "k", "f", "2"]]);
    }

    #[test]
    fn a_ttl_is_given_once_per_batch_and_only_to_keys_not_known_to_have_one() {
        let mut b = WriteBatch::new(60);
        let mut asked = Vec::new();
        for (key, secs) in [("a", 10), ("b", 10), ("a", 20), ("b", 20)] {
            b.expire_unless(key, secs, |k| {
                asked.push(k.to_owned());
                k == "b"
            });
        }
        // "a" is asked about once (then the batch has its TTL); "b" each time.
        assert_eq!(asked, ["a", "b", "b"]);
        assert_eq!(b.commands(), vec![vec!["EXPIRE", "a", "10"]]);
        assert_eq!(b.ttl_keys().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn markers_are_classified_by_origin() {
        assert_eq!(MarkerState::of(None, "t/0/5"), MarkerState::Fresh);
        assert_eq!(
            MarkerState::of(Some("t/0/5|s1"), "t/0/5"),
            MarkerState::Replay
        );
        assert_eq!(
            MarkerState::of(Some("t/1/9|s1"), "t/0/5"),
            MarkerState::Duplicate
        );
        assert_eq!(marker_session("t/0/5|s1"), "s1");
    }
}
