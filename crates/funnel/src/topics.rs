//! `funnel topics create`: the contract's topics, idempotently.

use funnel_bus::admin::{TopicSpec, ensure_topics};
use funnel_bus::{KafkaConfig, Topics};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create the raw, canonical, catalog (compacted) and DLQ topics and the services'
    /// output topics (predictions, conversion actions, shadow predictions,
    /// recommendations) if missing.
    Create {
        /// Bootstrap servers.
        #[arg(long, default_value = "localhost:9092")]
        kafka: String,
        /// Partitions of the raw, canonical and predictions topics.
        #[arg(long, default_value_t = 12)]
        partitions: i32,
        /// Replication factor.
        #[arg(long, default_value_t = 1)]
        replication: i32,
    },
}

/// The contract's topics with their partition counts.
pub fn specs(topics: &Topics, partitions: i32, replication: i32) -> Vec<TopicSpec> {
    let behavior = behavior_predictor::config::BehaviorTopics::default();
    let mut specs = vec![
        TopicSpec::new(&topics.raw, partitions),
        TopicSpec::new(&topics.events, partitions),
        TopicSpec::new(&topics.catalog, partitions.min(6)).compacted(),
        TopicSpec::new(&topics.dlq, 1),
        TopicSpec::new(&behavior.predictions, partitions),
        TopicSpec::new(&behavior.actions, partitions),
        TopicSpec::new(&behavior.shadow, partitions),
        TopicSpec::new(
            &recommender::config::RecommenderTopics::default().recommendations,
            partitions,
        ),
    ];
    for s in &mut specs {
        s.replication = replication;
    }
    specs
}

pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Create {
            kafka,
            partitions,
            replication,
        } => {
            let specs = specs(&Topics::default(), partitions, replication);
            ensure_topics(&KafkaConfig::new(&kafka, "funnel-admin"), &specs).await?;
            let names = specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>();
            println!("topics ready: {}", names.join(", "));
            Ok(())
        }
    }
}
