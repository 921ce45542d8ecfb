//! Test harness: a real Kafka-protocol broker (Tansu) and a real
//! `redis-server`, each started per test on a free loopback port and killed
//! when dropped, plus a running ingest and readers of its output topics.
//!
//! # Layout
//! - [`Broker`], [`Redis`]: child processes on free ports.
//! - [`Env`]: a broker, a Redis and a fresh topic/key prefix for one test.
//! - [`TopicReader`]: collects everything published to a topic.
//! - [`eventually`]: retries an assertion until a deadline instead of sleeping.

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use funnel_bus::admin::{TopicSpec, ensure_topics};
use funnel_bus::{KafkaConfig, Topics};
use funnel_runtime::Shutdown;
use funnel_store::{RedisConfig, RedisStore, Store};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on port {port} within 20 s");
}

/// A Tansu broker with in-memory storage.
pub struct Broker {
    child: Child,
    pub brokers: String,
}

impl Broker {
    pub fn start() -> Broker {
        let bin = std::env::var_os("TANSU_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join(".tools/bin/tansu"));
        assert!(
            bin.exists(),
            "tansu not found at {}: run scripts/setup.sh",
            bin.display()
        );
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("failed to start tansu");
        wait_for_port(port, "tansu", &mut child);
        Broker {
            child,
            brokers: format!("127.0.0.1:{port}"),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `redis-server` that keeps nothing on disk.
pub struct Redis {
    child: Child,
    pub url: String,
}

impl Redis {
    pub fn start() -> Redis {
        let port = free_port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("failed to start redis-server (apt-get install redis-server)");
        wait_for_port(port, "redis-server", &mut child);
        Redis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        }
    }

    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One test's world: broker, Redis, topic names and key prefix.
pub struct Env {
    pub broker: Broker,
    pub redis: Redis,
    pub topics: Topics,
    pub prefix: String,
}

impl Env {
    /// Starts both servers and creates the ingest topics.
    pub async fn start(raw_partitions: i32) -> Env {
        // `RUST_LOG=ingest=debug cargo test …` shows what the services did.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let broker = Broker::start();
        let redis = Redis::start();
        let prefix = format!("t{}", free_port());
        let topics = Topics::with_prefix(&format!("{prefix}."));
        ensure_topics(
            &KafkaConfig::new(&broker.brokers, "admin"),
            &[
                TopicSpec::new(&topics.raw, raw_partitions),
                TopicSpec::new(&topics.events, 4),
                TopicSpec::new(&topics.catalog, 1).compacted(),
                TopicSpec::new(&topics.dlq, 1),
            ],
        )
        .await
        .expect("topic creation failed");
        Env {
            broker,
            redis,
            topics,
            prefix,
        }
    }

    /// An ingest config pointing at this world, tuned for tests.
    pub fn ingest_config(&self) -> ingest::Config {
        let mut c = ingest::Config {
            kafka: KafkaConfig::new(&self.broker.brokers, &format!("{}-ingest", self.prefix)),
            topics: self.topics.clone(),
            redis: RedisConfig {
                url: self.redis.url.clone(),
                key_prefix: self.prefix.clone(),
                ..RedisConfig::default()
            },
            ..ingest::Config::default()
        };
        c.grpc.listen = "127.0.0.1:0".into();
        c.admin.listen = "127.0.0.1:0".into();
        c.ingest.batch_linger_ms = 5;
        c.ingest.shutdown_grace_secs = 10;
        c
    }

    /// Starts ingest in-process on free ports.
    pub async fn start_ingest(&self, config: ingest::Config) -> RunningIngest {
        let listeners = ingest::Listeners::bind(&config.grpc, &config.admin)
            .await
            .unwrap();
        let grpc_addr = listeners.grpc.local_addr().unwrap();
        let admin_addr = listeners.admin.local_addr().unwrap();
        let store = Store::Redis(RedisStore::connect(&config.redis).await.unwrap());
        let shutdown = Shutdown::new();
        let task = tokio::spawn(ingest::run(config, listeners, store, shutdown.clone()));
        RunningIngest {
            task: Some(task),
            shutdown,
            grpc_addr,
            admin_addr,
        }
    }

    pub fn producer(&self) -> RawProducer {
        RawProducer {
            inner: rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &self.broker.brokers)
                .set("enable.idempotence", "true")
                .set("linger.ms", "2")
                .create()
                .unwrap(),
            topic: self.topics.raw.clone(),
        }
    }

    pub fn reader(&self, topic: &str) -> TopicReader {
        TopicReader::start(&self.broker.brokers, topic)
    }
}

/// Ingest running on a tokio task.
pub struct RunningIngest {
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub shutdown: Shutdown,
    pub grpc_addr: std::net::SocketAddr,
    pub admin_addr: std::net::SocketAddr,
}

impl RunningIngest {
    /// Graceful stop: drain, commit, flush.
    pub async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// A crash: the task is dropped wherever it is.
    pub async fn kill(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// The value of a counter on the admin `/metrics` endpoint.
    pub async fn metric(&self, name: &str) -> f64 {
        let body = http_get(self.admin_addr, "/metrics").await;
        body.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub async fn grpc(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

impl Drop for RunningIngest {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A minimal HTTP/1.0 GET, enough for the admin endpoints.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Produces raw events as a platform would.
pub struct RawProducer {
    inner: FutureProducer,
    pub topic: String,
}

impl RawProducer {
    pub async fn send(&self, key: &str, payload: &[u8], content_type: Option<&str>) {
        let headers = content_type.map(|ct| ("content-type", ct));
        self.send_with_headers(key, payload, headers.as_slice())
            .await;
    }

    pub async fn send_with_headers(&self, key: &str, payload: &[u8], pairs: &[(&str, &str)]) {
        let mut headers = OwnedHeaders::new();
        for (k, v) in pairs {
            headers = headers.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        self.inner
            .send(
                FutureRecord::to(&self.topic)
                    .key(key)
                    .payload(payload)
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce failed");
    }

    pub async fn send_json(&self, event: &serde_json::Value) {
        let key = event["user_id"]
            .as_str()
            .or(event["item_id"].as_str())
            .unwrap_or("")
            .to_string();
        self.send(&key, event.to_string().as_bytes(), None).await;
    }
}

/// Collects every message of a topic from the beginning, in the background.
pub struct TopicReader {
    messages: Arc<Mutex<Vec<OwnedMessage>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TopicReader {
    pub fn start(brokers: &str, topic: &str) -> TopicReader {
        let consumer: StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("reader-{}", free_port()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&messages);
        let task = tokio::spawn(async move {
            loop {
                match consumer.recv().await {
                    Ok(m) => sink.lock().unwrap().push(m.detach()),
                    Err(e) => eprintln!("reader: {e}"),
                }
            }
        });
        TopicReader { messages, task }
    }

    pub fn snapshot(&self) -> Vec<OwnedMessage> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until at least `n` messages arrived; returns them.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<OwnedMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.snapshot();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} messages arrived within {timeout:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Canonical events decoded from the collected messages.
    pub fn events(&self) -> Vec<funnel_core::pb::Event> {
        use prost::Message as _;
        self.snapshot()
            .iter()
            .map(|m| funnel_core::pb::Event::decode(m.payload().unwrap()).unwrap())
            .collect()
    }
}

impl Drop for TopicReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Retries `check` until it returns `Ok` or `timeout` passes; then panics
/// with the last error.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => panic!("not true within {timeout:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Header value of a message as a string.
pub fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    funnel_bus::headers::get(m.headers(), name).map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The services a gRPC server lists through reflection, sorted.
pub async fn grpc_services(channel: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a service list: {answer:?}");
    };
    let mut services: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    services.sort();
    services
}

/// Whether the gRPC health service reports `service` as serving (false while it is not
/// registered yet).
pub async fn grpc_serving(channel: tonic::transport::Channel, service: &str) -> bool {
    let status = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await;
    status.is_ok_and(|s| {
        s.into_inner().status
            == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    })
}
