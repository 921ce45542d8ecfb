//! The Redis backend: all reads of a batch in one pipelined round trip that
//! first WATCHes every event's dedup marker, all writes in one MULTI/EXEC that
//! Redis refuses if any watched marker changed in between.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::{ApplyOutcome, Read, RedisConfig, Reply, StoreError, WriteBatch};

/// A multiplexed, self-reconnecting Redis client.
#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    conn: ConnectionManager,
    timeout: Duration,
}

impl RedisStore {
    /// Connects; fails at once if the server is unreachable.
    pub async fn connect(config: &RedisConfig) -> Result<RedisStore, StoreError> {
        let connect_err = |source| StoreError::Connect {
            url: redact(&config.url),
            source,
        };
        // Batches are large pipelines written in several chunks: with Nagle's
        // algorithm on, each can stall for a delayed ACK (tens of ms).
        let info = redis::IntoConnectionInfo::into_connection_info(config.url.as_str())
            .map_err(connect_err)?;
        let tcp = redis::io::tcp::TcpSettings::default().set_nodelay(true);
        let client = redis::Client::open(info.set_tcp_settings(tcp)).map_err(connect_err)?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let cfg = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_with_config(client.clone(), cfg)
            .await
            .map_err(connect_err)?;
        Ok(RedisStore {
            client,
            conn,
            timeout,
        })
    }

    /// A batch writer with a connection of its own (WATCH is per connection).
    pub fn writer(&self) -> RedisWriter {
        RedisWriter {
            client: self.client.clone(),
            conn: None,
            timeout: self.timeout,
            watching: false,
        }
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
        add_reads(&mut pipe, reads);
        let mut conn = self.conn.clone();
        let values: Vec<redis::Value> =
            pipe.query_async(&mut conn)
                .await
                .map_err(|source| StoreError::Redis {
                    op: "read pipeline",
                    source,
                })?;
        convert_all(reads, values)
    }
}

/// Writes batches on a dedicated connection. Only one task may use it:
/// between WATCH and EXEC, no other command may run on the connection.
pub struct RedisWriter {
    client: redis::Client,
    conn: Option<redis::aio::MultiplexedConnection>,
    timeout: Duration,
    /// Whether a WATCH is pending on the connection.
    watching: bool,
}

impl RedisWriter {
    async fn conn(&mut self) -> Result<redis::aio::MultiplexedConnection, StoreError> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        let cfg = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(self.timeout))
            .set_connection_timeout(Some(self.timeout));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .map_err(|source| StoreError::Redis {
                op: "connect writer",
                source,
            })?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// WATCHes `markers`, then runs `reads`, in one round trip.
    pub async fn read_watching(
        &mut self,
        markers: &[String],
        reads: &[Read],
    ) -> Result<Vec<Reply>, StoreError> {
        if markers.is_empty() && reads.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        if !markers.is_empty() {
            pipe.cmd("WATCH").arg(markers).ignore();
        }
        add_reads(&mut pipe, reads);
        let mut conn = self.conn().await?;
        let result: Result<Vec<redis::Value>, _> = pipe.query_async(&mut conn).await;
        self.watching = !markers.is_empty();
        match result {
            Ok(values) => convert_all(reads, values),
            Err(source) => {
                // A broken connection loses its WATCH: start over on a new one.
                self.conn = None;
                Err(StoreError::Redis {
                    op: "watch and read",
                    source,
                })
            }
        }
    }

    /// Sets the fresh markers and runs the batch's commands in one MULTI/EXEC;
    /// `Conflict` when a watched marker changed since `read_watching`.
    pub async fn apply(&mut self, batch: &WriteBatch) -> Result<ApplyOutcome, StoreError> {
        if batch.is_empty() && !self.watching {
            return Ok(ApplyOutcome::Applied);
        }
        // EXEC (even of nothing) ends the WATCH.
        self.watching = false;
        let mut pipe =
            redis::Pipeline::with_capacity(batch.command_count() + batch.marker_count() + 2);
        pipe.cmd("MULTI").ignore();
        let mut ttl = itoa::Buffer::new();
        let ttl = ttl.format(batch.dedup_ttl_secs);
        for (key, value) in batch.fresh_markers() {
            pipe.add_command(command("SET", &[key, value, "EX", ttl]))
                .ignore();
        }
        batch.for_each_command(|name, args| {
            pipe.add_command(command(name, args)).ignore();
        });
        pipe.cmd("EXEC");
        let mut conn = self.conn().await?;
        let result: Result<Vec<redis::Value>, _> = pipe.query_async(&mut conn).await;
        let values = match result {
            Ok(v) => v,
            Err(source) => {
                self.conn = None;
                return Err(StoreError::Redis {
                    op: "apply",
                    source,
                });
            }
        };
        match values.last() {
            Some(redis::Value::Nil) => Ok(ApplyOutcome::Conflict),
            Some(redis::Value::Array(results)) => {
                if let Some(e) = results.iter().find_map(|v| match v {
                    redis::Value::ServerError(e) => Some(format!("{e:?}")),
                    _ => None,
                }) {
                    return Err(StoreError::Reply {
                        op: "apply",
                        detail: e,
                    });
                }
                Ok(ApplyOutcome::Applied)
            }
            other => Err(StoreError::Reply {
                op: "apply",
                detail: format!("unexpected EXEC reply {other:?}"),
            }),
        }
    }
}

fn add_reads(pipe: &mut redis::Pipeline, reads: &[Read]) {
    for r in reads {
        match r {
            Read::Get(k) => pipe.cmd("GET").arg(k),
            Read::MGet(keys) => pipe.cmd("MGET").arg(keys),
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
}

fn convert_all(reads: &[Read], values: Vec<redis::Value>) -> Result<Vec<Reply>, StoreError> {
    if values.len() != reads.len() {
        return Err(StoreError::Reply {
            op: "read pipeline",
            detail: format!("{} replies to {} reads", values.len(), reads.len()),
        });
    }
    reads
        .iter()
        .zip(values)
        .map(|(r, v)| convert(r, v))
        .collect()
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
        Read::HMGet(..) | Read::MGet(..) => Reply::Fields(flat_strings(v)),
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

/// One command with its buffers allocated at their final size at once (`redis::cmd`
/// grows them argument by argument; a batch holds thousands of commands).
fn command(name: &str, args: &[&str]) -> redis::Cmd {
    let data = name.len() + args.iter().map(|a| a.len()).sum::<usize>();
    let mut cmd = redis::Cmd::with_capacity(args.len() + 1, data);
    cmd.arg(name).arg(args);
    cmd
}
