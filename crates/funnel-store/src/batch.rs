//! A batch of writes: one dedup marker per event, and the commands of all
//! fresh events merged so that a batch of a thousand events costs hundreds of
//! Redis commands, not thousands.
//!
//! Commands whose order matters (cart changes, list pushes) keep their order;
//! increments are summed per key and field; hash sets keep the last value;
//! trims and expiries run once per key at the end.

use std::collections::BTreeMap;

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
    pub origin: String,
    pub value: String,
    pub expect: MarkerState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trim {
    /// Keep list elements `0..keep`.
    List(usize),
    /// Keep the `keep` highest-scored members.
    ZSet(usize),
}

/// Writes planned for one batch.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub(crate) markers: Vec<Marker>,
    pub(crate) dedup_ttl_secs: u64,
    ordered: Vec<Cmd>,
    incr: BTreeMap<(String, String), i64>,
    float_incr: BTreeMap<(String, String), f64>,
    zincr: BTreeMap<(String, String), f64>,
    hset: BTreeMap<String, BTreeMap<String, String>>,
    trims: BTreeMap<String, Trim>,
    expire: BTreeMap<String, u64>,
}

impl WriteBatch {
    pub fn new(dedup_ttl_secs: u64) -> Self {
        WriteBatch {
            dedup_ttl_secs,
            ..WriteBatch::default()
        }
    }

    /// Records the marker of one event. `value` starts with `origin|`.
    pub fn marker(&mut self, key: String, origin: &str, value: String, expect: MarkerState) {
        self.markers.push(Marker {
            key,
            origin: origin.to_string(),
            value,
            expect,
        });
    }

    pub fn marker_count(&self) -> usize {
        self.markers.len()
    }

    pub fn hincr(&mut self, key: &str, field: &str, by: i64) {
        *self.incr.entry((key.into(), field.into())).or_insert(0) += by;
    }

    pub fn hincr_float(&mut self, key: &str, field: &str, by: f64) {
        *self
            .float_incr
            .entry((key.into(), field.into()))
            .or_insert(0.0) += by;
    }

    pub fn zincr(&mut self, key: &str, member: &str, by: f64) {
        *self.zincr.entry((key.into(), member.into())).or_insert(0.0) += by;
    }

    pub fn hset(&mut self, key: &str, field: &str, value: impl Into<String>) {
        self.hset
            .entry(key.into())
            .or_default()
            .insert(field.into(), value.into());
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
        self.trims.insert(key.into(), Trim::List(keep));
    }

    /// Keeps a sorted set to its `keep` highest-scored members.
    pub fn zcap(&mut self, key: &str, keep: usize) {
        self.trims.insert(key.into(), Trim::ZSet(keep));
    }

    /// Gives `key` a TTL of at least `secs` (the longest asked for wins).
    pub fn expire(&mut self, key: &str, secs: u64) {
        let e = self.expire.entry(key.into()).or_insert(0);
        *e = (*e).max(secs);
    }

    pub fn is_empty(&self) -> bool {
        self.markers.is_empty() && self.command_count() == 0
    }

    pub fn command_count(&self) -> usize {
        self.ordered.len()
            + self.incr.len()
            + self.float_incr.len()
            + self.zincr.len()
            + self.hset.len()
            + self.trims.len()
            + self.expire.len()
    }

    /// Every command in execution order (markers excluded).
    pub fn commands(&self) -> Vec<Cmd> {
        let mut out = Vec::with_capacity(self.command_count());
        out.extend(self.ordered.iter().cloned());
        for ((k, f), by) in &self.incr {
            if *by != 0 {
                out.push(vec!["HINCRBY".into(), k.clone(), f.clone(), by.to_string()]);
            }
        }
        for ((k, f), by) in &self.float_incr {
            out.push(vec![
                "HINCRBYFLOAT".into(),
                k.clone(),
                f.clone(),
                fmt_float(*by),
            ]);
        }
        for ((k, m), by) in &self.zincr {
            out.push(vec!["ZINCRBY".into(), k.clone(), fmt_float(*by), m.clone()]);
        }
        for (k, fields) in &self.hset {
            let mut cmd = Vec::with_capacity(2 + fields.len() * 2);
            cmd.push("HSET".into());
            cmd.push(k.clone());
            for (f, v) in fields {
                cmd.push(f.clone());
                cmd.push(v.clone());
            }
            out.push(cmd);
        }
        for (k, trim) in &self.trims {
            match trim {
                Trim::List(keep) => out.push(vec![
                    "LTRIM".into(),
                    k.clone(),
                    "0".into(),
                    (*keep as i64 - 1).to_string(),
                ]),
                Trim::ZSet(keep) => out.push(vec![
                    "ZREMRANGEBYRANK".into(),
                    k.clone(),
                    "0".into(),
                    (-(*keep as i64) - 1).to_string(),
                ]),
            }
        }
        for (k, secs) in &self.expire {
            out.push(vec!["EXPIRE".into(), k.clone(), secs.to_string()]);
        }
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
