//! What the recommender keeps in Redis under the prefix `P` (shared with ingest), and the
//! Lua scripts that read and write it in one round trip each.
//!
//! | key | type | content | TTL |
//! |---|---|---|---|
//! | `P:rec:u:{user}:bought` | sorted set | item → time of its last purchase (ms), the latest `stream.purchased_max` | `stream.purchased_ttl_secs`, refreshed on orders |
//! | `P:rec:r:{recomm_id}` | hash | `user`, `arm`, `model`, `version`, `ts` of one answer | `stream.attribution_ttl_secs` |
//! | `P:rec:ck:{user}:{item}` | string | the recomm_id a click on the item carried (joins a later order to it) | `stream.attribution_ttl_secs` |
//! | `P:rec:e:{event_id}` | string | marker of an event applied (replays change nothing) | `stream.marker_ttl_secs` |
//! | `P:rec:x:{arm}\|{model}\|{version}` | hash | `recommendations`, `items`, `impressions`, `clicks`, `orders` | `stream.stats_ttl_secs`, refreshed on every update |
//! | `P:rec:arms` | set | every `{arm}\|{model}\|{version}` with counters | `stream.stats_ttl_secs`, refreshed on every update |
//!
//! Read only, ingest's: `P:u:{user}:recent`, `:cats`, `:cart`, `P:i:{item}:covis`,
//! `:bought` and `P:c:{category}:pop:{day}`.
//!
//! The scripts name the keys they derive from what they read (the anchors' neighbour
//! sets, attribution records), so they need a single Redis server, not a cluster.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use funnel_store::{Keys, RedisConfig, resp};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::features::{FastMap, Neighbours, UserSignals};

/// The recommender's keys under one prefix.
#[derive(Debug, Clone)]
pub struct RecKeys {
    prefix: String,
    pub ingest: Keys,
}

impl RecKeys {
    pub fn new(prefix: &str) -> Self {
        RecKeys {
            prefix: prefix.to_owned(),
            ingest: Keys::new(prefix),
        }
    }

    pub fn purchased(&self, user: &str) -> String {
        format!("{}:rec:u:{user}:bought", self.prefix)
    }

    pub fn recommendation(&self, recomm_id: &str) -> String {
        format!("{}:rec:r:{recomm_id}", self.prefix)
    }

    pub fn stats(&self, group: &str) -> String {
        format!("{}:rec:x:{group}", self.prefix)
    }

    pub fn stats_index(&self) -> String {
        format!("{}:rec:arms", self.prefix)
    }
}

/// Reads a user's signals and the anchors' neighbour sets, and records the answer about
/// to be given. KEYS: recent, cats, cart, purchased, recommendation record. ARGV: ingest
/// prefix, context item ('' for none), neighbours per anchor, record TTL, then the record's
/// user, arm, model, version, ts. Anchors as `crate::features` derives them: the context
/// item, then distinct recent items (5 at most); bought-together anchors: the context item,
/// then cart, purchased and recent items. Returns {recent, cats, cart, purchased (member,
/// score flat), covis anchors, their sets, bought anchors, their sets}.
const REQUEST_SCRIPT: &str = r"
local p, ctx, k = ARGV[1], ARGV[2], tonumber(ARGV[3]) - 1
local recent = redis.call('LRANGE', KEYS[1], 0, 99)
local cats = redis.call('LRANGE', KEYS[2], 0, 19)
local cart = redis.call('HKEYS', KEYS[3])
local purchased = redis.call('ZRANGE', KEYS[4], 0, -1, 'REV', 'WITHSCORES')
local purchased_items = {}
for i = 1, #purchased, 2 do purchased_items[#purchased_items + 1] = purchased[i] end
local function anchors(lists)
  local out, seen = {}, {}
  local function add(id)
    if #out < 5 and id ~= '' and not seen[id] then seen[id] = true; out[#out + 1] = id end
  end
  add(ctx)
  for _, list in ipairs(lists) do
    for _, id in ipairs(list) do add(id) end
  end
  return out
end
local covis_anchors = anchors({recent})
local bought_anchors = anchors({cart, purchased_items, recent})
local function sets(ids, suffix)
  local out = {}
  for i, id in ipairs(ids) do
    out[i] = redis.call('ZRANGE', p .. ':i:' .. id .. ':' .. suffix, 0, k, 'REV', 'WITHSCORES')
  end
  return out
end
redis.call('HSET', KEYS[5], 'user', ARGV[5], 'arm', ARGV[6], 'model', ARGV[7], 'version', ARGV[8], 'ts', ARGV[9])
redis.call('EXPIRE', KEYS[5], ARGV[4])
return {recent, cats, cart, purchased, covis_anchors, sets(covis_anchors, 'covis'), bought_anchors, sets(bought_anchors, 'bought')}
";

/// Applies a batch of events, each at most once (its marker set with NX). ARGV: prefix,
/// marker TTL, attribution TTL, purchased TTL, purchased max, stats TTL, then one JSON
/// event each: {id, t (order|click|impression), u, ts, r (recomm_id), items}.
/// Returns the number of events applied.
const STREAM_SCRIPT: &str = r"
local p = ARGV[1]
local marker_ttl, attr_ttl, bought_ttl = ARGV[2], ARGV[3], ARGV[4]
local bought_max, stats_ttl = tonumber(ARGV[5]), ARGV[6]
local function count(recomm, field, n)
  local r = redis.call('HMGET', p .. ':rec:r:' .. recomm, 'arm', 'model', 'version')
  if not r[1] then return false end
  local group = r[1] .. '|' .. r[2] .. '|' .. r[3]
  local key = p .. ':rec:x:' .. group
  redis.call('HINCRBY', key, field, n)
  redis.call('EXPIRE', key, stats_ttl)
  redis.call('SADD', p .. ':rec:arms', group)
  redis.call('EXPIRE', p .. ':rec:arms', stats_ttl)
  return true
end
local applied = 0
for i = 7, #ARGV do
  local e = cjson.decode(ARGV[i])
  if redis.call('SET', p .. ':rec:e:' .. e.id, '1', 'NX', 'EX', marker_ttl) then
    applied = applied + 1
    if e.t == 'order' then
      local key = p .. ':rec:u:' .. e.u .. ':bought'
      local credited = {}
      for _, item in ipairs(e.items) do
        redis.call('ZADD', key, 'GT', e.ts, item)
        local recomm = redis.call('GET', p .. ':rec:ck:' .. e.u .. ':' .. item)
        if recomm and not credited[recomm] then
          credited[recomm] = true
          count(recomm, 'orders', 1)
        end
      end
      redis.call('ZREMRANGEBYRANK', key, 0, -(bought_max + 1))
      redis.call('EXPIRE', key, bought_ttl)
    elseif e.t == 'click' then
      if count(e.r, 'clicks', 1) then
        redis.call('SET', p .. ':rec:ck:' .. e.u .. ':' .. e.items[1], e.r, 'EX', attr_ttl)
      end
    elseif e.t == 'impression' then
      count(e.r, 'impressions', #e.items)
    end
  end
end
return applied
";

/// Script calls in flight at most; more wait for a connection. Each is one request's
/// round trip, so this bounds the connections a busy recommender opens.
const SCRIPT_CONNECTIONS: usize = 64;

/// A script loaded once (SCRIPT LOAD) and run by EVALSHA, loaded again when the server
/// answers NOSCRIPT (after a restart or SCRIPT FLUSH).
struct LoadedScript {
    source: &'static str,
    sha: RwLock<String>,
}

impl LoadedScript {
    fn new(source: &'static str) -> Self {
        LoadedScript {
            source,
            sha: RwLock::new(String::new()),
        }
    }

    async fn load(&self, pool: &resp::Pool) -> redis::RedisResult<()> {
        let mut request = resp::Request::default();
        request.simple(&["SCRIPT", "LOAD", self.source]);
        let sha = call(pool, &request).await.map_err(redis_error)?;
        *self.sha.write().unwrap_or_else(|e| e.into_inner()) = redis::from_redis_value(sha)?;
        Ok(())
    }

    async fn run(
        &self,
        pool: &resp::Pool,
        keys: &[String],
        args: &[String],
    ) -> redis::RedisResult<redis::Value> {
        for attempt in 0..2 {
            let sha = self.sha.read().unwrap_or_else(|e| e.into_inner()).clone();
            let mut request = resp::Request::default();
            request.command(
                &["EVALSHA", &sha, &keys.len().to_string()],
                &keys.iter().chain(args).collect::<Vec<_>>(),
            );
            match call(pool, &request).await {
                Err(resp::Error::Server(e)) if attempt == 0 && e.starts_with("NOSCRIPT") => {
                    self.load(pool).await?
                }
                other => return other.map_err(redis_error),
            }
        }
        unreachable!("the second attempt returns")
    }
}

/// One command on a pooled connection, its reply as a value.
async fn call(pool: &resp::Pool, request: &resp::Request) -> Result<redis::Value, resp::Error> {
    let mut value = None;
    pool.round_trip(request, |_, buf, pos| {
        Ok(resp::value(buf, pos)?.map(|v| value = Some(v)).is_some())
    })
    .await?;
    Ok(value.expect("a round trip reads every reply"))
}

fn redis_error(e: resp::Error) -> redis::RedisError {
    match e {
        resp::Error::Io(e) => e.into(),
        resp::Error::Server(e) => redis::RedisError::from((
            redis::ErrorKind::Extension,
            "redis answered with an error",
            e,
        )),
    }
}

/// What the request script read.
#[derive(Debug, Default)]
pub struct UserRead {
    pub user: UserSignals,
    /// Purchased item → time of its last purchase (ms).
    pub purchased_at: FastMap<String, i64>,
    pub covis: Neighbours,
    pub bought: Neighbours,
}

/// The answer a request records for attribution.
pub struct AnswerRecord<'a> {
    pub recomm_id: &'a str,
    pub user: &'a str,
    pub arm: &'a str,
    pub model: &'a str,
    pub version: &'a str,
    pub ts_ms: i64,
}

/// One event for the stream script.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamEvent {
    pub id: String,
    pub t: &'static str,
    pub u: String,
    pub ts: i64,
    pub r: String,
    pub items: Vec<String>,
}

/// TTLs and bounds of the stream's writes.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    pub marker_ttl_secs: u64,
    pub attribution_ttl_secs: u64,
    pub purchased_ttl_secs: u64,
    pub purchased_max: usize,
    pub stats_ttl_secs: u64,
}

/// Counters of one arm and model version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArmCounters {
    pub recommendations: u64,
    pub items: u64,
    pub impressions: u64,
    pub clicks: u64,
    pub orders: u64,
}

/// The recommender's Redis connection and scripts.
#[derive(Clone)]
pub struct RecStore {
    conn: ConnectionManager,
    /// The scripts' connections: a request's call reads its own reply.
    scripts: Arc<resp::Pool>,
    keys: RecKeys,
    request: Arc<LoadedScript>,
    stream: Arc<LoadedScript>,
}

/// A reply element as a string, its bytes moved, not copied; `None` if it is not text.
fn text(v: redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        redis::Value::SimpleString(s) => Some(s),
        other => redis::from_redis_value(other).ok(),
    }
}

/// The elements of an array reply that are text (see [`text`]).
fn strings(v: redis::Value) -> Vec<String> {
    match v {
        redis::Value::Array(items) => items.into_iter().filter_map(text).collect(),
        _ => Vec::new(),
    }
}

/// A score as Redis replies it: text, or a double in RESP3.
fn score(v: &redis::Value) -> Option<f64> {
    match v {
        redis::Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        redis::Value::Double(d) => Some(*d),
        other => redis::from_redis_value_ref(other).ok(),
    }
}

/// Member and score pairs of a `WITHSCORES` reply; a pair either part of which is not
/// readable is skipped.
fn scored(v: redis::Value) -> Vec<(String, f64)> {
    let redis::Value::Array(items) = v else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(member), Some(s)) = (items.next(), items.next()) {
        if let (Some(member), Some(s)) = (text(member), score(&s)) {
            out.push((member, s));
        }
    }
    out
}

fn neighbours(anchors: redis::Value, sets: redis::Value) -> Neighbours {
    let sets = match sets {
        redis::Value::Array(s) => s,
        _ => Vec::new(),
    };
    strings(anchors)
        .into_iter()
        .zip(sets)
        .map(|(anchor, set)| (anchor, scored(set)))
        .collect()
}

/// The request script's reply was not what the script returns.
fn unexpected(detail: String) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "request script reply",
        detail,
    ))
}

impl RecStore {
    /// Connects and loads both scripts; fails at once if Redis is unreachable.
    pub async fn connect(config: &RedisConfig) -> anyhow::Result<RecStore> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let manager = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(3);
        // Without TCP_NODELAY a script call can wait for a delayed ACK (about 40 ms).
        let info = redis::IntoConnectionInfo::into_connection_info(config.url.as_str())
            .context("redis.url is not valid")?;
        let tcp = redis::io::tcp::TcpSettings::default().set_nodelay(true);
        let client =
            redis::Client::open(info.set_tcp_settings(tcp)).context("redis.url is not valid")?;
        let scripts = resp::Pool::new(
            client.get_connection_info().clone(),
            SCRIPT_CONNECTIONS,
            timeout,
        );
        let conn = ConnectionManager::new_with_config(client, manager)
            .await
            .context("failed to connect to redis")?;
        let (request, stream) = (
            LoadedScript::new(REQUEST_SCRIPT),
            LoadedScript::new(STREAM_SCRIPT),
        );
        request
            .load(&scripts)
            .await
            .context("failed to load the request script")?;
        stream
            .load(&scripts)
            .await
            .context("failed to load the stream script")?;
        Ok(RecStore {
            conn,
            scripts: Arc::new(scripts),
            keys: RecKeys::new(&config.key_prefix),
            request: Arc::new(request),
            stream: Arc::new(stream),
        })
    }

    pub fn keys(&self) -> &RecKeys {
        &self.keys
    }

    /// One round trip: the user's signals and neighbour sets, and the answer's record.
    pub async fn read_user(
        &self,
        context_item: Option<&str>,
        neighbours_per_anchor: usize,
        answer: &AnswerRecord<'_>,
        record_ttl_secs: u64,
    ) -> redis::RedisResult<UserRead> {
        let k = &self.keys;
        let user = answer.user;
        let keys = [
            k.ingest.user_recent(user),
            k.ingest.user_categories(user),
            k.ingest.user_cart(user),
            k.purchased(user),
            k.recommendation(answer.recomm_id),
        ];
        let args = [
            k.ingest.prefix().to_owned(),
            context_item.unwrap_or_default().to_owned(),
            neighbours_per_anchor.to_string(),
            record_ttl_secs.to_string(),
            user.to_owned(),
            answer.arm.to_owned(),
            answer.model.to_owned(),
            answer.version.to_owned(),
            answer.ts_ms.to_string(),
        ];
        let value = self.request.run(&self.scripts, &keys, &args).await?;
        let parts: [redis::Value; 8] = match value {
            redis::Value::Array(parts) => parts.try_into().map_err(|parts: Vec<_>| {
                unexpected(format!("{} parts instead of 8", parts.len()))
            })?,
            other => return Err(unexpected(format!("{other:?}"))),
        };
        let [
            recent,
            categories,
            cart,
            purchased,
            covis_anchors,
            covis,
            bought_anchors,
            bought,
        ] = parts;
        let purchased = scored(purchased);
        Ok(UserRead {
            user: UserSignals {
                recent: strings(recent),
                categories: strings(categories),
                cart: strings(cart),
                purchased: purchased.iter().map(|(i, _)| i.clone()).collect(),
            },
            purchased_at: purchased.into_iter().map(|(i, t)| (i, t as i64)).collect(),
            covis: neighbours(covis_anchors, covis),
            bought: neighbours(bought_anchors, bought),
        })
    }

    /// Applies events once each (see the stream script); the number applied.
    pub async fn apply_events(
        &self,
        events: &[StreamEvent],
        limits: &StreamLimits,
    ) -> redis::RedisResult<u64> {
        if events.is_empty() {
            return Ok(0);
        }
        let mut args = vec![
            self.keys.prefix.clone(),
            limits.marker_ttl_secs.to_string(),
            limits.attribution_ttl_secs.to_string(),
            limits.purchased_ttl_secs.to_string(),
            limits.purchased_max.to_string(),
            limits.stats_ttl_secs.to_string(),
        ];
        args.extend(
            events
                .iter()
                .map(|e| serde_json::to_string(e).expect("events serialise")),
        );
        let applied = self.stream.run(&self.scripts, &[], &args).await?;
        Ok(redis::from_redis_value(applied)?)
    }

    /// Adds served counters: group `{arm}|{model}|{version}` → (recommendations, items).
    pub async fn add_served(
        &self,
        served: &HashMap<String, (u64, u64)>,
        stats_ttl_secs: u64,
    ) -> redis::RedisResult<()> {
        if served.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        let index = self.keys.stats_index();
        for (group, (recommendations, items)) in served {
            let key = self.keys.stats(group);
            pipe.hincr(&key, "recommendations", *recommendations)
                .ignore();
            pipe.hincr(&key, "items", *items).ignore();
            pipe.expire(&key, stats_ttl_secs as i64).ignore();
            pipe.sadd(&index, group).ignore();
        }
        pipe.expire(&index, stats_ttl_secs as i64).ignore();
        pipe.query_async::<()>(&mut self.conn.clone()).await
    }

    /// Every arm and model version with counters.
    pub async fn stats(&self) -> redis::RedisResult<Vec<(String, ArmCounters)>> {
        let mut conn = self.conn.clone();
        let mut groups: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.stats_index())
            .query_async(&mut conn)
            .await?;
        groups.sort();
        let mut pipe = redis::pipe();
        for group in &groups {
            pipe.hgetall(self.keys.stats(group));
        }
        let hashes: Vec<HashMap<String, u64>> = pipe.query_async(&mut conn).await?;
        Ok(groups
            .into_iter()
            .zip(hashes)
            .map(|(group, h)| {
                let get = |f: &str| h.get(f).copied().unwrap_or(0);
                let counters = ArmCounters {
                    recommendations: get("recommendations"),
                    items: get("items"),
                    impressions: get("impressions"),
                    clicks: get("clicks"),
                    orders: get("orders"),
                };
                (group, counters)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn scored_replies_pair_members_with_scores_and_skip_unreadable_pairs() {
        let reply = Value::Array(vec![
            bulk("a"),
            bulk("1.5"),
            bulk("b"),
            Value::Double(2.0),
            bulk("c"),
            bulk("not a number"),
            Value::BulkString(vec![0xff]),
            bulk("4"),
            bulk("d"),
        ]);
        assert_eq!(
            scored(reply),
            [("a".to_owned(), 1.5), ("b".to_owned(), 2.0)]
        );
        let anchors = Value::Array(vec![bulk("x"), bulk("y")]);
        let sets = Value::Array(vec![Value::Array(vec![bulk("a"), bulk("3")]), Value::Nil]);
        let lists = neighbours(anchors, sets);
        assert_eq!(lists["x"], [("a".to_owned(), 3.0)]);
        assert!(lists["y"].is_empty());
    }
}
