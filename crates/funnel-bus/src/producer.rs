//! An idempotent producer whose sends are acknowledged before a batch counts
//! as durable.

use std::time::Duration;

use futures::future::join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;

use crate::{BusError, KafkaConfig};

/// One message to send.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: OwnedHeaders,
}

impl OutRecord {
    pub fn new(topic: &str, key: Option<&[u8]>, payload: Vec<u8>) -> Self {
        OutRecord {
            topic: topic.to_string(),
            key: key.map(<[u8]>::to_vec),
            payload,
            headers: OwnedHeaders::new(),
        }
    }

    pub fn header(mut self, key: &str, value: &str) -> Self {
        self.headers = self.headers.insert(Header {
            key,
            value: Some(value),
        });
        self
    }

    pub fn with_headers(mut self, headers: OwnedHeaders) -> Self {
        self.headers = headers;
        self
    }
}

/// A cloneable producer (librdkafka producers are thread-safe).
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
    timeout: Duration,
}

impl Producer {
    pub fn new(config: &KafkaConfig) -> Result<Producer, BusError> {
        let inner: FutureProducer = config
            .client_config(&[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("linger.ms", "5"),
                ("batch.num.messages", "10000"),
                ("queue.buffering.max.messages", "200000"),
                ("message.timeout.ms", &config.produce_timeout_ms.to_string()),
            ])
            .create()
            .map_err(|source| BusError::Create {
                what: "producer",
                brokers: config.brokers.clone(),
                source,
            })?;
        Ok(Producer {
            inner,
            timeout: Duration::from_millis(config.produce_timeout_ms),
        })
    }

    /// Sends every record and waits until all are acknowledged. On the first
    /// failure the batch fails: the caller must not store its offsets.
    pub async fn send_all(&self, records: &[OutRecord]) -> Result<(), BusError> {
        let futures = records.iter().map(|r| {
            let mut rec = FutureRecord::<[u8], [u8]>::to(&r.topic)
                .payload(&r.payload)
                .headers(r.headers.clone());
            if let Some(k) = &r.key {
                rec = rec.key(k);
            }
            let topic = r.topic.clone();
            let fut = self.inner.send(rec, Timeout::After(self.timeout));
            async move {
                fut.await
                    .map(|_| ())
                    .map_err(|(source, _)| BusError::Produce { topic, source })
            }
        });
        for result in join_all(futures).await {
            result?;
        }
        Ok(())
    }

    /// Flushes buffered messages. Blocking: call from a blocking thread.
    pub fn flush_blocking(&self, timeout: Duration) -> Result<(), BusError> {
        self.inner
            .flush(Timeout::After(timeout))
            .map_err(|source| BusError::Produce {
                topic: "*".into(),
                source,
            })
    }

    /// Flushes without blocking the async workers.
    pub async fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.flush_blocking(timeout))
            .await
            .unwrap_or(Ok(()))
    }
}
