//! The recommender in `funnel demo`: started when the demo has Redis (its scripts run
//! there), asked for a few live recommendations at every summary.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use funnel_bus::KafkaConfig;
use funnel_proto::pb::recommender::v1::recommender_client::RecommenderClient;
use funnel_proto::pb::recommender::v1::{GetExperimentStatsRequest, RecommendRequest, Scenario};
use funnel_runtime::Shutdown;
use funnel_store::Store;

/// Items shown per live recommendation.
const SHOWN_ITEMS: u32 = 5;

/// A running recommender and where to ask it.
pub struct DemoRecommender {
    pub grpc: SocketAddr,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Where the demo's recommender listens and what it loads.
pub struct Setup<'a> {
    pub brokers: &'a str,
    pub key_prefix: &'a str,
    pub grpc_listen: &'a str,
    pub admin_listen: &'a str,
    pub models_root: &'a Path,
    pub onnxruntime: &'a Path,
}

impl DemoRecommender {
    /// Loads the ranker and the embeddings and starts the service on `store`.
    pub async fn start(
        setup: Setup<'_>,
        store: Store,
        shutdown: Shutdown,
    ) -> anyhow::Result<DemoRecommender> {
        let mut config = recommender::Config {
            kafka: KafkaConfig::new(setup.brokers, "funnel-demo-recommender"),
            ..recommender::Config::default()
        };
        config.grpc.listen = setup.grpc_listen.into();
        config.admin.listen = setup.admin_listen.into();
        config.redis.key_prefix = setup.key_prefix.into();
        config.models.root = setup.models_root.display().to_string();
        config.models.runtime_library = setup.onnxruntime.display().to_string();
        config.rules.file = setup.models_root.join("rules.toml").display().to_string();
        // The demo's catalog is produced while the service starts: serve at once.
        config.catalog.load_timeout_secs = 1;
        // Popularity moves fast in a short demo.
        config.catalog.popularity_refresh_ms = 1_000;
        let models = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || recommender::load_models(&config))
                .await?
                .context("the recommender cannot load its models")?
        };
        let listeners = recommender::Listeners::bind(&config.grpc, &config.admin).await?;
        let grpc = listeners.grpc.local_addr()?;
        let task = tokio::spawn(recommender::run(config, listeners, store, models, shutdown));
        Ok(DemoRecommender { grpc, task })
    }

    /// A home-page list for `user` and the experiment's counters so far.
    pub async fn print(&self, user: &str) {
        if user.is_empty() {
            return;
        }
        let Ok(mut client) = RecommenderClient::connect(format!("http://{}", self.grpc)).await
        else {
            println!("        recommender: not answering yet");
            return;
        };
        match client
            .recommend(RecommendRequest {
                user_id: user.into(),
                scenario: Scenario::Home.into(),
                count: SHOWN_ITEMS,
                ..RecommendRequest::default()
            })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                let items = r
                    .items
                    .iter()
                    .map(|i| format!("{} {:.3} [{}]", i.item_id, i.score, i.sources.join("+")))
                    .collect::<Vec<_>>()
                    .join(", ");
                println!(
                    "        recommendation for {user} ({}@{}, arm {}{}): {items}",
                    r.model,
                    r.model_version,
                    r.arm,
                    if r.cold_start { ", cold start" } else { "" },
                );
            }
            Err(e) => println!("        recommender: {}", e.message()),
        }
        if let Ok(stats) = client
            .get_experiment_stats(GetExperimentStatsRequest {})
            .await
        {
            let arms = stats
                .into_inner()
                .arms
                .iter()
                .map(|a| {
                    format!(
                        "{} ({}@{}): {} lists, {} clicks",
                        a.arm, a.model, a.model_version, a.recommendations, a.clicks
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            println!("        recommender arms: {arms}");
        }
    }
}
