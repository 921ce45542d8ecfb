//! The Redis backend: all reads of a batch in one pipelined round trip that
//! first WATCHes every event's dedup marker, all writes in one MULTI/EXEC that
//! Redis refuses if any watched marker changed in between. Feature reads go
//! through the `redis` crate's multiplexed client; the batch writer has a
//! connection of its own ([`crate::resp`]).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::{ApplyOutcome, Read, RedisConfig, Reply, StoreError, WriteBatch, resp};

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
            info: self.client.get_connection_info().clone(),
            conn: None,
            request: resp::Request::default(),
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

/// Writes batches on a dedicated connection of its own, which speaks RESP
/// directly ([`crate::resp`]): a batch's thousands of commands are encoded
/// into one buffer and their replies checked in place. Only one task may use
/// it: between WATCH and EXEC, no other command may run on the connection.
pub struct RedisWriter {
    info: redis::ConnectionInfo,
    conn: Option<resp::Connection>,
    request: resp::Request,
    timeout: Duration,
    /// Whether a WATCH is pending on the connection.
    watching: bool,
}

impl RedisWriter {
    /// Sends the request built in `self.request` and hands each reply to
    /// `reply`, within the timeout, connecting first if needed. Any failure
    /// closes the connection (and so ends a WATCH).
    async fn round_trip(
        &mut self,
        op: &'static str,
        reply: impl FnMut(usize, &[u8], &mut usize) -> Result<bool, resp::Error>,
    ) -> Result<(), StoreError> {
        let result = tokio::time::timeout(self.timeout, async {
            let conn = match &mut self.conn {
                Some(conn) => conn,
                None => self
                    .conn
                    .insert(resp::Connection::connect(&self.info).await?),
            };
            conn.round_trip(&self.request, reply).await
        })
        .await
        .unwrap_or_else(|_| Err(resp::timed_out(self.timeout)));
        result.map_err(|e| {
            self.conn = None;
            self.watching = false;
            match e {
                resp::Error::Io(e) => StoreError::Redis {
                    op,
                    source: e.into(),
                },
                resp::Error::Server(detail) => StoreError::Reply { op, detail },
            }
        })
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
        self.request.clear();
        let watch = usize::from(!markers.is_empty());
        if watch == 1 {
            self.request.command(&["WATCH"], markers);
        }
        for r in reads {
            read_command(r, |head, tail| self.request.command(head, tail));
        }
        let mut values = Vec::with_capacity(reads.len());
        self.round_trip("watch and read", |i, buf, pos| {
            if i < watch {
                return match resp::check(buf, pos)? {
                    None => Ok(false),
                    Some(resp::Checked { error: Some(e), .. }) => Err(resp::Error::Server(e)),
                    Some(_) => Ok(true),
                };
            }
            Ok(resp::value(buf, pos)?.map(|v| values.push(v)).is_some())
        })
        .await?;
        self.watching = watch == 1;
        convert_all(reads, values)
    }

    /// Sets the fresh markers and runs the batch's commands in one MULTI/EXEC;
    /// `Conflict` when a watched marker changed since `read_watching`.
    pub async fn apply(&mut self, batch: &WriteBatch) -> Result<ApplyOutcome, StoreError> {
        if batch.is_empty() && !self.watching {
            return Ok(ApplyOutcome::Applied);
        }
        let request = &mut self.request;
        request.clear();
        request.simple(&["MULTI"]);
        let mut ttl = itoa::Buffer::new();
        let ttl = ttl.format(batch.dedup_ttl_secs);
        for (key, value) in batch.fresh_markers() {
            request.simple(&["SET", key, value, "EX", ttl]);
        }
        batch.for_each_command(|name, args| request.command(&[name], args));
        request.simple(&["EXEC"]);
        let last = request.commands() - 1;
        // Replies to MULTI and to each queued command, then EXEC's.
        let mut queued_error = None;
        let mut exec = resp::Checked::default();
        self.round_trip("apply", |i, buf, pos| {
            let Some(checked) = resp::check(buf, pos)? else {
                return Ok(false);
            };
            if i == last {
                exec = checked;
            } else if queued_error.is_none() {
                queued_error = checked.error;
            }
            Ok(true)
        })
        .await?;
        // EXEC (even of nothing) ended the WATCH.
        self.watching = false;
        match exec {
            resp::Checked { nil: true, .. } => Ok(ApplyOutcome::Conflict),
            resp::Checked { error: Some(e), .. } => Err(StoreError::Reply {
                op: "apply",
                detail: match queued_error {
                    Some(q) => format!("{e} (first refused command: {q})"),
                    None => e,
                },
            }),
            resp::Checked { kind: b'*', .. } => Ok(ApplyOutcome::Applied),
            other => Err(StoreError::Reply {
                op: "apply",
                detail: format!("unexpected EXEC reply of type `{}`", char::from(other.kind)),
            }),
        }
    }
}

/// The command of one read, as fixed arguments and a list (keys or fields).
fn read_command(r: &Read, command: impl FnOnce(&[&str], &[String])) {
    let none: &[String] = &[];
    match r {
        Read::Get(k) => command(&["GET", k], none),
        Read::MGet(keys) => command(&["MGET"], keys),
        Read::HGetAll(k) => command(&["HGETALL", k], none),
        Read::HMGet(k, fields) => command(&["HMGET", k], fields),
        Read::LRange(k, a, b) => command(&["LRANGE", k, &a.to_string(), &b.to_string()], none),
        Read::ZRevRange(k, a, b) => command(
            &[
                "ZRANGE",
                k,
                &a.to_string(),
                &b.to_string(),
                "REV",
                "WITHSCORES",
            ],
            none,
        ),
    }
}

fn add_reads(pipe: &mut redis::Pipeline, reads: &[Read]) {
    for r in reads {
        read_command(r, |head, tail| {
            let mut cmd = redis::cmd(head[0]);
            cmd.arg(&head[1..]).arg(tail);
            pipe.add_command(cmd);
        });
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

/// A scalar reply as a string, taking its buffer rather than copying it.
fn value_string(v: redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => Some(
            String::from_utf8(b)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
        redis::Value::SimpleString(s) => Some(s),
        redis::Value::Int(i) => Some(i.to_string()),
        redis::Value::Double(d) => Some(d.to_string()),
        _ => None,
    }
}

fn flat_strings(v: redis::Value) -> Vec<Option<String>> {
    match v {
        redis::Value::Array(items) | redis::Value::Set(items) => {
            items.into_iter().map(value_string).collect()
        }
        redis::Value::Map(pairs) => pairs
            .into_iter()
            .flat_map(|(k, v)| [value_string(k), value_string(v)])
            .collect(),
        _ => Vec::new(),
    }
}

/// `[a, b, c, d]` to `(a, b), (c, d)`; an odd last element is dropped.
fn pairs<T>(flat: Vec<T>) -> impl Iterator<Item = (T, T)> {
    let mut items = flat.into_iter();
    std::iter::from_fn(move || Some((items.next()?, items.next()?)))
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
        Read::Get(_) => value_string(v).map_or(Reply::Nil, Reply::Str),
        Read::HGetAll(_) => Reply::Hash(
            pairs(flat_strings(v))
                .filter_map(|(field, value)| Some((field?, value?)))
                .collect(),
        ),
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
                pairs(scored)
                    .filter_map(|(member, score)| Some((member?, score?.parse().ok()?)))
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
