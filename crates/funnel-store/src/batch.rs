//! A batch of writes: one dedup marker per event, and the commands of all
//! fresh events merged so that a batch of a thousand events costs hundreds of
//! Redis commands, not thousands.
//!
//! Commands whose order matters (cart changes, list pushes) keep their order;
//! increments are summed per key and field; hash sets keep the last value;
//! trims and expiries run once per key at the end.

use indexmap::IndexMap;

/// Insertion-ordered maps with a fast hasher: batches are built on the hot
/// path, and keys share long prefixes that make ordered maps compare slowly.
type Map<V> = IndexMap<String, V, foldhash::fast::RandomState>;

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

/// Writes planned for one batch. Maps are keyed by Redis key, then field or
/// member, so that merging into an existing entry allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub(crate) markers: Vec<Marker>,
    pub(crate) dedup_ttl_secs: u64,
    ordered: Vec<Cmd>,
    incr: Map<Map<i64>>,
    float_incr: Map<Map<f64>>,
    zincr: Map<Map<f64>>,
    hset: Map<Map<String>>,
    trims: Map<Trim>,
    expire: Map<u64>,
    ttl_keys: Vec<String>,
}

/// The entry of `key`, created only when missing.
fn entry<'a, V: Default>(map: &'a mut Map<V>, key: &str) -> &'a mut V {
    match map.get_index_of(key) {
        Some(i) => &mut map[i],
        None => map.entry(key.to_string()).or_default(),
    }
}

impl WriteBatch {
    pub fn new(dedup_ttl_secs: u64) -> Self {
        WriteBatch {
            dedup_ttl_secs,
            ..WriteBatch::default()
        }
    }

    /// Records the marker of one event. `value` starts with `origin|` (the
    /// message's topic/partition/offset), which tells a replay from a duplicate.
    pub fn marker(&mut self, key: String, value: String, expect: MarkerState) {
        self.markers.push(Marker { key, value, expect });
    }

    pub fn marker_count(&self) -> usize {
        self.markers.len()
    }

    pub fn hincr(&mut self, key: &str, field: &str, by: i64) {
        *entry(entry(&mut self.incr, key), field) += by;
    }

    pub fn hincr_float(&mut self, key: &str, field: &str, by: f64) {
        *entry(entry(&mut self.float_incr, key), field) += by;
    }

    pub fn zincr(&mut self, key: &str, member: &str, by: f64) {
        *entry(entry(&mut self.zincr, key), member) += by;
    }

    pub fn hset(&mut self, key: &str, field: &str, value: impl Into<String>) {
        let fields = entry(&mut self.hset, key);
        match fields.get_mut(field) {
            Some(v) => *v = value.into(),
            None => {
                fields.insert(field.to_string(), value.into());
            }
        }
    }

    /// A cart-like change whose order relative to deletions matters.
    pub fn hincr_ordered(&mut self, key: &str, field: &str, by: i64) {
        self.ordered.push(vec![
            "HINCRBY".into(),
            key.into(),
            field.into(),
            by.to_string(),
        ]);
    }

    pub fn hdel_ordered(&mut self, key: &str, field: &str) {
        self.ordered
            .push(vec!["HDEL".into(), key.into(), field.into()]);
    }

    /// Pushes to the head of a list kept to its `keep` newest elements.
    pub fn lpush_capped(&mut self, key: &str, value: &str, keep: usize) {
        self.ordered
            .push(vec!["LPUSH".into(), key.into(), value.into()]);
        *entry(&mut self.trims, key) = Trim::List(keep);
    }

    /// Keeps a sorted set to its `keep` highest-scored members.
    pub fn zcap(&mut self, key: &str, keep: usize) {
        *entry(&mut self.trims, key) = Trim::ZSet(keep);
    }

    /// Gives `key` its TTL and lists it among [`WriteBatch::ttl_keys`], so
    /// that a writer can remember it and skip setting it again for a while.
    pub fn expire_remembered(&mut self, key: &str, secs: u64) {
        if !self.expire.contains_key(key) {
            self.ttl_keys.push(key.to_string());
        }
        self.expire(key, secs);
    }

    /// Keys given a TTL by [`WriteBatch::expire_remembered`].
    pub fn ttl_keys(&self) -> &[String] {
        &self.ttl_keys
    }

    /// Gives `key` a TTL of at least `secs` (the longest asked for wins).
    pub fn expire(&mut self, key: &str, secs: u64) {
        let e = entry(&mut self.expire, key);
        *e = (*e).max(secs);
    }

    pub fn is_empty(&self) -> bool {
        self.markers.is_empty() && self.command_count() == 0
    }

    pub fn command_count(&self) -> usize {
        let fields = |m: &Map<Map<i64>>| m.values().map(IndexMap::len).sum::<usize>();
        self.ordered.len()
            + fields(&self.incr)
            + self.float_incr.values().map(IndexMap::len).sum::<usize>()
            + self.zincr.values().map(IndexMap::len).sum::<usize>()
            + self.hset.len()
            + self.trims.len()
            + self.expire.len()
    }

    /// Every command in execution order (markers excluded), as `(name, args)`.
    pub fn for_each_command(&self, mut f: impl FnMut(&str, &[&str])) {
        for cmd in &self.ordered {
            let args = cmd[1..].iter().map(String::as_str).collect::<Vec<_>>();
            f(&cmd[0], &args);
        }
        for (k, fields) in &self.incr {
            for (field, by) in fields {
                if *by != 0 {
                    f("HINCRBY", &[k, field, itoa::Buffer::new().format(*by)]);
                }
            }
        }
        for (k, fields) in &self.float_incr {
            for (field, by) in fields {
                f("HINCRBYFLOAT", &[k, field, &fmt_float(*by)]);
            }
        }
        for (k, members) in &self.zincr {
            for (member, by) in members {
                f("ZINCRBY", &[k, &fmt_float(*by), member]);
            }
        }
        for (k, fields) in &self.hset {
            let mut args = Vec::with_capacity(1 + fields.len() * 2);
            args.push(k.as_str());
            for (field, v) in fields {
                args.push(field);
                args.push(v);
            }
            f("HSET", &args);
        }
        for (k, trim) in &self.trims {
            match *trim {
                Trim::List(keep) => f(
                    "LTRIM",
                    &[k, "0", itoa::Buffer::new().format(keep as i64 - 1)],
                ),
                Trim::ZSet(keep) => f(
                    "ZREMRANGEBYRANK",
                    &[k, "0", itoa::Buffer::new().format(-(keep as i64) - 1)],
                ),
                Trim::None => {}
            }
        }
        for (k, secs) in &self.expire {
            f("EXPIRE", &[k, itoa::Buffer::new().format(*secs)]);
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

/// Shortest exact decimal form, as Redis accepts it.
fn fmt_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
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
