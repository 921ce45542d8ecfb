//! An idempotent producer whose sends are acknowledged before a batch counts
//! as durable.

use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;

use crate::backoff::Backoff;
use crate::{BusError, KafkaConfig};

/// Whether the broker acknowledged a record handed to librdkafka.
async fn acknowledgement(delivery: Result<DeliveryFuture, KafkaError>) -> Result<(), KafkaError> {
    match delivery?.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(KafkaError::Canceled),
    }
}

/// How long a record waits before it is offered again to a full producer queue.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(10);

/// One message to send.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// librdkafka's header list, made with the first header.
    pub headers: Option<OwnedHeaders>,
}

impl OutRecord {
    pub fn new(topic: &str, key: Option<&[u8]>, payload: Vec<u8>) -> Self {
        OutRecord {
            topic: topic.to_string(),
            key: key.map(<[u8]>::to_vec),
            payload,
            headers: None,
        }
    }

    pub fn header(mut self, key: &str, value: &str) -> Self {
        let headers = self.headers.take().unwrap_or_default();
        self.headers = Some(headers.insert(Header {
            key,
            value: Some(value),
        }));
        self
    }

    pub fn with_headers(mut self, headers: OwnedHeaders) -> Self {
        self.headers = Some(headers);
        self
    }

    /// The record as librdkafka takes it (headers copied: this record may be sent again).
    fn to_future(&self) -> FutureRecord<'_, [u8], [u8]> {
        self.future_with(self.headers.clone())
    }

    /// The record as librdkafka takes it, with `headers` (librdkafka owns them once sent).
    fn future_with(&self, headers: Option<OwnedHeaders>) -> FutureRecord<'_, [u8], [u8]> {
        let mut record = FutureRecord::to(&self.topic).payload(&self.payload[..]);
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        match &self.key {
            Some(key) => record.key(&key[..]),
            None => record,
        }
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
        self.send_each(records.iter().map(|r| (r, r.headers.clone())))
            .await
    }

    /// [`Producer::send_all`] for records sent once: their headers are handed to
    /// librdkafka instead of copied.
    pub async fn send_all_once(&self, mut records: Vec<OutRecord>) -> Result<(), BusError> {
        let headers: Vec<_> = records.iter_mut().map(|r| r.headers.take()).collect();
        self.send_each(records.iter().zip(headers)).await
    }

    /// Hands every record to librdkafka, then awaits their acknowledgements in turn:
    /// one delivery future per record, no combinator polling a future per record.
    async fn send_each<'a>(
        &self,
        records: impl Iterator<Item = (&'a OutRecord, Option<OwnedHeaders>)>,
    ) -> Result<(), BusError> {
        let mut deliveries = Vec::with_capacity(records.size_hint().0);
        for (r, headers) in records {
            deliveries.push((r, self.hand_over(r.future_with(headers)).await));
        }
        let mut first_error = None;
        for (r, delivery) in deliveries {
            if let (Err(source), None) = (acknowledgement(delivery).await, &first_error) {
                first_error = Some(BusError::Produce {
                    topic: r.topic.clone(),
                    source,
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Hands one record to librdkafka, waiting while its queue is full (at most the
    /// produce timeout).
    async fn hand_over(
        &self,
        mut record: FutureRecord<'_, [u8], [u8]>,
    ) -> Result<DeliveryFuture, KafkaError> {
        let started = Instant::now();
        loop {
            match self.inner.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if started.elapsed() < self.timeout =>
                {
                    record = back;
                    tokio::time::sleep(QUEUE_FULL_WAIT).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Hands every record to the producer and returns without waiting for the broker;
    /// [`Sending::acknowledged`] waits. A record the producer refuses at once (its queue
    /// full) fails there, like one the broker did not acknowledge.
    pub fn enqueue(&self, records: Vec<OutRecord>) -> Sending {
        let pending = records
            .into_iter()
            .map(|r| {
                let delivery = self.inner.send_result(r.to_future()).map_err(|(e, _)| e);
                (r, delivery)
            })
            .collect();
        Sending {
            pending,
            enqueued: Instant::now(),
        }
    }

    /// Waits until every record of `sending` is acknowledged, handing the ones the
    /// broker did not acknowledge to the producer again after a backoff (doubling up to
    /// `max_backoff`); false if shutdown came first.
    pub async fn deliver(
        &self,
        mut sending: Sending,
        max_backoff: Duration,
        shutdown: &funnel_runtime::Shutdown,
    ) -> bool {
        let mut backoff = Backoff::new(max_backoff);
        loop {
            let unsent = match sending.acknowledged().await {
                Ok(()) => return true,
                Err(unsent) => unsent,
            };
            tracing::warn!(
                error = %unsent.error,
                records = unsent.records.len(),
                backoff_ms = backoff.next().as_millis() as u64,
                "records not acknowledged; sending them again"
            );
            if !backoff.wait(shutdown).await {
                return false;
            }
            sending = self.enqueue(unsent.records);
        }
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

/// Records handed to the producer by [`Producer::enqueue`], on their way to the broker.
pub struct Sending {
    pending: Vec<(OutRecord, Result<DeliveryFuture, KafkaError>)>,
    enqueued: Instant,
}

/// Records the broker did not acknowledge, to send again, and the first error.
pub struct Unsent {
    pub records: Vec<OutRecord>,
    pub error: BusError,
}

impl Sending {
    /// Records on their way.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// When the records were handed to the producer.
    pub fn enqueued_at(&self) -> Instant {
        self.enqueued
    }

    /// Waits until every record is acknowledged; the ones that were not, otherwise.
    pub async fn acknowledged(self) -> Result<(), Unsent> {
        let outcomes = join_all(
            self.pending
                .into_iter()
                .map(|(record, delivery)| async { (record, acknowledgement(delivery).await) }),
        )
        .await;
        let mut unsent: Option<Unsent> = None;
        for (record, result) in outcomes {
            let Err(source) = result else { continue };
            match &mut unsent {
                Some(u) => u.records.push(record),
                None => {
                    unsent = Some(Unsent {
                        error: BusError::Produce {
                            topic: record.topic.clone(),
                            source,
                        },
                        records: vec![record],
                    })
                }
            }
        }
        unsent.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::Message as _;
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::message::Headers as _;

    use super::*;

    #[tokio::test]
    async fn records_wait_for_room_in_a_full_producer_queue_and_all_arrive_in_order() {
        // librdkafka's in-process mock cluster, and a producer queue of 4 messages.
        let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
        mock.create_topic("t", 1, 1).unwrap();
        let mut config = KafkaConfig::new(&mock.bootstrap_servers(), "producer-test");
        config
            .options
            .insert("queue.buffering.max.messages".into(), "4".into());
        let producer = Producer::new(&config).unwrap();
        let records = (0..50)
            .map(|i: i32| {
                OutRecord::new("t", Some(b"k"), i.to_string().into_bytes())
                    .header("n", &i.to_string())
            })
            .collect();
        producer.send_all_once(records).await.unwrap();

        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("group.id", "producer-test")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&["t"]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = Vec::new();
        while got.len() < 50 && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let header = m.headers().map(|h| h.get(0));
                let n = header.and_then(|h| h.value).unwrap_or_default();
                got.push((m.payload().unwrap().to_vec(), n.to_vec()));
            }
        }
        let expected: Vec<_> = (0..50)
            .map(|i| (i.to_string().into_bytes(), i.to_string().into_bytes()))
            .collect();
        assert_eq!(got, expected);
    }
}
