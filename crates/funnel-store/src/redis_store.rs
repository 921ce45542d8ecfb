//! The Redis backend: all reads of a batch in one pipelined round trip, all
//! writes of a batch in one atomic script that first checks every event's
//! dedup marker.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::{ApplyOutcome, Read, RedisConfig, Reply, StoreError, WriteBatch};

/// Checks every marker against the writer's plan; if all agree, sets the
/// markers of fresh events and runs the merged commands, else writes nothing
/// and returns the markers' current values. Keys are built by the caller, so
/// this script is for standalone Redis (not Cluster).
const APPLY_SCRIPT: &str = r#"
local ttl = ARGV[1]
local n = tonumber(ARGV[2])
local res = {0}
local conflict = false
local i = 3
for m = 1, n do
  local v = redis.call('GET', ARGV[i])
  local state = '0'
  if v then
    local origin = v
    local bar = string.find(v, '|', 1, true)
    if bar then origin = string.sub(v, 1, bar - 1) end
    if origin == ARGV[i + 1] then state = '1' else state = '2' end
  end
  if state ~= ARGV[i + 3] then conflict = true end
  res[m + 1] = v or false
  i = i + 4
end
if conflict then return res end
i = 3
for m = 1, n do
  if ARGV[i + 3] == '0' then redis.call('SET', ARGV[i], ARGV[i + 2], 'EX', ttl) end
  i = i + 4
end
while i <= #ARGV do
  local nargs = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + nargs))
  i = i + 1 + nargs
end
return {1}
"#;

/// A multiplexed, self-reconnecting Redis client.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    script: std::sync::Arc<redis::Script>,
}

impl RedisStore {
    /// Connects; fails at once if the server is unreachable.
    pub async fn connect(config: &RedisConfig) -> Result<RedisStore, StoreError> {
        let connect_err = |source| StoreError::Connect {
            url: redact(&config.url),
            source,
        };
        let client = redis::Client::open(config.url.as_str()).map_err(connect_err)?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let cfg = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_with_config(client, cfg)
            .await
            .map_err(connect_err)?;
        Ok(RedisStore {
            conn,
            script: std::sync::Arc::new(redis::Script::new(APPLY_SCRIPT)),
        })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|source| StoreError::Redis { op: "PING", source })
    }

    pub async fn read(&self, reads: &[Read]) -> Result<Vec<Reply>, StoreError> {
        if reads.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for r in reads {
            match r {
                Read::Get(k) => pipe.cmd("GET").arg(k),
                Read::HGetAll(k) => pipe.cmd("HGETALL").arg(k),
                Read::HMGet(k, fields) => pipe.cmd("HMGET").arg(k).arg(fields),
                Read::LRange(k, a, b) => pipe.cmd("LRANGE").arg(k).arg(*a).arg(*b),
                Read::ZRevRange(k, a, b) => pipe
                    .cmd("ZRANGE")
                    .arg(k)
                    .arg(*a)
                    .arg(*b)
                    .arg("REV")
                    .arg("WITHSCORES"),
            };
        }
        let mut conn = self.conn.clone();
        let values: Vec<redis::Value> =
            pipe.query_async(&mut conn)
                .await
                .map_err(|source| StoreError::Redis {
                    op: "read pipeline",
                    source,
                })?;
        reads
            .iter()
            .zip(values)
            .map(|(r, v)| convert(r, v))
            .collect()
    }

    pub async fn apply(&self, batch: &WriteBatch) -> Result<ApplyOutcome, StoreError> {
        if batch.is_empty() {
            return Ok(ApplyOutcome::Applied);
        }
        let mut invocation = self.script.prepare_invoke();
        for arg in batch.script_args() {
            invocation.arg(arg);
        }
        let mut conn = self.conn.clone();
        let reply: Vec<redis::Value> =
            invocation
                .invoke_async(&mut conn)
                .await
                .map_err(|source| StoreError::Redis {
                    op: "apply script",
                    source,
                })?;
        match reply.first() {
            Some(redis::Value::Int(1)) => Ok(ApplyOutcome::Applied),
            Some(redis::Value::Int(0)) => Ok(ApplyOutcome::Conflict(
                reply[1..].iter().map(value_string).collect(),
            )),
            other => Err(StoreError::Reply {
                op: "apply script",
                detail: format!("{other:?}"),
            }),
        }
    }
}

fn value_string(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::Int(i) => Some(i.to_string()),
        redis::Value::Double(d) => Some(d.to_string()),
        _ => None,
    }
}

fn flat_strings(v: redis::Value) -> Vec<Option<String>> {
    match v {
        redis::Value::Array(items) | redis::Value::Set(items) => {
            items.iter().map(value_string).collect()
        }
        redis::Value::Map(pairs) => pairs
            .iter()
            .flat_map(|(k, v)| [value_string(k), value_string(v)])
            .collect(),
        _ => Vec::new(),
    }
}

fn convert(read: &Read, v: redis::Value) -> Result<Reply, StoreError> {
    if matches!(v, redis::Value::Nil) {
        return Ok(Reply::Nil);
    }
    if let redis::Value::ServerError(e) = &v {
        return Err(StoreError::Reply {
            op: "read",
            detail: format!("{e:?}"),
        });
    }
    Ok(match read {
        Read::Get(_) => value_string(&v).map_or(Reply::Nil, Reply::Str),
        Read::HGetAll(_) => {
            let flat = flat_strings(v);
            Reply::Hash(
                flat.chunks_exact(2)
                    .filter_map(|c| Some((c[0].clone()?, c[1].clone()?)))
                    .collect(),
            )
        }
        Read::HMGet(..) => Reply::Fields(flat_strings(v)),
        Read::LRange(..) => Reply::List(flat_strings(v).into_iter().flatten().collect()),
        Read::ZRevRange(..) => {
            let scored = match v {
                // RESP3 answers [[member, score], ...]
                redis::Value::Array(items)
                    if items.iter().all(|i| matches!(i, redis::Value::Array(_))) =>
                {
                    items.into_iter().flat_map(flat_strings).collect::<Vec<_>>()
                }
                other => flat_strings(other),
            };
            Reply::Scored(
                scored
                    .chunks_exact(2)
                    .filter_map(|c| Some((c[0].clone()?, c[1].as_deref()?.parse().ok()?)))
                    .collect(),
            )
        }
    })
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}
