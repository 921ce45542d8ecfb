//! The Redis feature store: typed keys, batched idempotent writes with TTLs,
//! and reads that assemble user and item features. An in-memory backend with
//! the same semantics serves the embedded demo and unit tests.
//!
//! # Layout
//! - [`keys`]: every key the store writes, namespaced by a configurable prefix.
//! - [`batch`]: [`WriteBatch`]: per-event dedup markers plus merged commands.
//! - [`redis_store`]: the Redis backend (one pipelined read, one MULTI/EXEC).
//! - [`resp`]: RESP2 spoken directly, for the batch writer and per-request script calls.
//! - [`memory`]: the bounded in-memory backend.
//! - [`features`]: reads that build `UserFeatures` and `ItemFeatures`.
//!
//! Writes are idempotent per event: a batch carries one dedup marker per event
//! (`<origin>|<session id>`) and is applied atomically (MULTI/EXEC) only if no
//! marker changed since the caller read it (WATCH); otherwise nothing is
//! written and the caller re-plans. Replays therefore never double-count.

pub mod batch;
pub mod features;
pub mod keys;
pub mod memory;
pub mod redis_store;
pub mod resp;

use serde::{Deserialize, Serialize};

pub use batch::{Cmd, MarkerState, WriteBatch};
pub use features::FeatureReader;
pub use keys::Keys;
pub use memory::MemoryStore;
pub use redis_store::RedisStore;

/// A feature store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to connect to redis at {url}: {source}")]
    Connect {
        url: String,
        source: redis::RedisError,
    },
    #[error("redis {op} failed: {source}")]
    Redis {
        op: &'static str,
        source: redis::RedisError,
    },
    #[error("unexpected reply to {op}: {detail}")]
    Reply { op: &'static str, detail: String },
}

/// Redis settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db` (or `rediss://` for TLS).
    pub url: String,
    /// Prefix of every key, so several deployments or tenants can share a server.
    pub key_prefix: String,
    /// Timeout of one round trip, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: "funnel".into(),
            timeout_ms: 5_000,
        }
    }
}

impl RedisConfig {
    pub fn validate(&self) -> Result<(), String> {
        redis::Client::open(self.url.as_str())
            .map_err(|e| format!("redis.url is not a valid redis URL: {e}"))?;
        if self.key_prefix.is_empty() || self.key_prefix.contains(char::is_whitespace) {
            return Err("redis.key_prefix must be non-empty without whitespace".into());
        }
        if self.timeout_ms == 0 {
            return Err("redis.timeout_ms must be at least 1".into());
        }
        Ok(())
    }
}

/// One read of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    Get(String),
    /// Values of several string keys, in order (`Reply::Fields`). At least one key.
    MGet(Vec<String>),
    HGetAll(String),
    HMGet(String, Vec<String>),
    LRange(String, isize, isize),
    /// Members with scores, highest first, ranks `start..=stop`.
    ZRevRange(String, isize, isize),
}

/// The answer to one [`Read`].
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Reply {
    #[default]
    Nil,
    Str(String),
    Hash(Vec<(String, String)>),
    List(Vec<String>),
    Fields(Vec<Option<String>>),
    Scored(Vec<(String, f64)>),
}

impl Reply {
    pub fn into_str(self) -> Option<String> {
        match self {
            Reply::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn into_hash(self) -> Vec<(String, String)> {
        match self {
            Reply::Hash(h) => h,
            _ => Vec::new(),
        }
    }

    pub fn into_list(self) -> Vec<String> {
        match self {
            Reply::List(l) => l,
            _ => Vec::new(),
        }
    }

    pub fn into_fields(self) -> Vec<Option<String>> {
        match self {
            Reply::Fields(f) => f,
            _ => Vec::new(),
        }
    }

    pub fn into_scored(self) -> Vec<(String, f64)> {
        match self {
            Reply::Scored(s) => s,
            _ => Vec::new(),
        }
    }
}

/// What applying a batch did.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplyOutcome {
    /// Every marker was as planned; all commands ran atomically.
    Applied,
    /// Some marker changed since it was read: nothing was written.
    Conflict,
}

/// Plans and applies batches: read (watching the batch's dedup markers),
/// then apply atomically unless a watched marker changed meanwhile.
pub enum Writer {
    Redis(Box<redis_store::RedisWriter>),
    Memory(MemoryStore),
}

impl Writer {
    /// Runs `reads` in one round trip after starting to watch `markers`.
    pub async fn read_watching(
        &mut self,
        markers: &[String],
        reads: &[Read],
    ) -> Result<Vec<Reply>, StoreError> {
        match self {
            Writer::Redis(w) => w.read_watching(markers, reads).await,
            Writer::Memory(m) => Ok(m.read(reads)),
        }
    }

    /// Applies `batch` atomically, unless a marker changed since it was read.
    pub async fn apply(&mut self, batch: &WriteBatch) -> Result<ApplyOutcome, StoreError> {
        match self {
            Writer::Redis(w) => w.apply(batch).await,
            Writer::Memory(m) => Ok(m.apply(batch)),
        }
    }
}

/// The feature store: Redis in production, memory in the demo.
#[derive(Clone)]
pub enum Store {
    Redis(RedisStore),
    Memory(MemoryStore),
}

impl Store {
    /// Runs all reads in one round trip.
    pub async fn read(&self, reads: &[Read]) -> Result<Vec<Reply>, StoreError> {
        match self {
            Store::Redis(r) => r.read(reads).await,
            Store::Memory(m) => Ok(m.read(reads)),
        }
    }

    /// A writer of batches. On Redis it has a connection of its own, since
    /// it watches the dedup markers between reading and writing.
    pub fn writer(&self) -> Writer {
        match self {
            Store::Redis(r) => Writer::Redis(Box::new(r.writer())),
            Store::Memory(m) => Writer::Memory(m.clone()),
        }
    }

    /// Answers when the backend is reachable.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Redis(r) => r.ping().await,
            Store::Memory(_) => Ok(()),
        }
    }
}
