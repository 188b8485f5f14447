//! The pipeline's topics: their plan, their creation on a real broker, and the embedded broker
//! that holds them in process.

use std::time::Duration;

use anyhow::{anyhow, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use tweetoscope_messages::topics;

use super::client::{KafkaSettings, SetAll as _};

/// Topics of the pipeline with their dead-letter topics, and how each is configured.
pub fn topic_plan(
    all: &[String],
    compacted: &[String],
) -> Vec<(String, Vec<(&'static str, &'static str)>)> {
    let mut plan = Vec::new();
    for t in all {
        let config = if compacted.contains(t) {
            vec![("cleanup.policy", "compact")]
        } else {
            vec![]
        };
        plan.push((t.clone(), config));
        plan.push((topics::dead_letter(t), vec![]));
    }
    plan
}

/// Creates the topics on a real broker; existing ones are left as they are.
pub async fn create_topics(
    settings: &KafkaSettings,
    all: &[String],
    compacted: &[String],
    partitions: i32,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = settings
        .base()
        .set_all(&settings.client_options)
        .create()
        .context("cannot create a Kafka admin client")?;
    let plan = topic_plan(all, compacted);
    let replication = settings.replication;
    let new_topics: Vec<NewTopic> = plan
        .iter()
        .map(|(name, config)| {
            let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
            for (k, v) in config {
                t = t.set(k, v);
            }
            t
        })
        .collect();
    let results = admin
        .create_topics(
            &new_topics,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .with_context(|| format!("cannot create topics on {}", settings.brokers))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(anyhow!("cannot create topic {topic}: {code}")),
        }
    }
    Ok(())
}

/// The in-process Kafka-protocol broker (`rdkafka::mocking::MockCluster`) on its own thread.
#[derive(Debug)]
pub struct EmbeddedBroker {
    bootstrap: String,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts a one-broker cluster with every topic of `all` (and its dead-letter topic).
    pub fn start(all: &[String], compacted: &[String], partitions: i32) -> anyhow::Result<Self> {
        let plan = topic_plan(all, compacted);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                // The cluster belongs to a client of its own, through which its group join
                // delay can be set.
                use rdkafka::producer::Producer as _;
                let owner: rdkafka::producer::BaseProducer = match rdkafka::ClientConfig::new()
                    .set("test.mock.num.brokers", "1")
                    .create()
                {
                    Ok(c) => c,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(anyhow!("cannot start the embedded broker: {e}")));
                        return;
                    }
                };
                let Some(cluster) = owner.client().mock_cluster() else {
                    let _ = ready_tx.send(Err(anyhow!(
                        "cannot start the embedded broker: librdkafka made no mock cluster"
                    )));
                    return;
                };
                no_initial_rebalance_delay(owner.client());
                for (topic, _) in &plan {
                    if let Err(e) = cluster.create_topic(topic, partitions, 1) {
                        let _ = ready_tx.send(Err(anyhow!("cannot create topic {topic}: {e}")));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                let _ = stop_rx.recv();
                drop(cluster);
                drop(owner);
            })?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| anyhow!("the embedded broker thread died"))??;
        Ok(Self {
            bootstrap,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Its bootstrap servers.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }
}

/// Sets the group join delay of `client`'s mock cluster to 0. librdkafka's mock cluster, like a
/// broker's default `group.initial.rebalance.delay.ms`, makes the first member of an empty
/// consumer group wait 3 s for others before it gets partitions: every stage of `run` and `bench`
/// read nothing for their first 3 s (a quarter of `bench --tweets 1000000`). A real broker is
/// configured the same way by `scripts/kafka.sh`. rdkafka does not wrap this call.
#[allow(unsafe_code)]
fn no_initial_rebalance_delay<C: rdkafka::ClientContext>(client: &rdkafka::client::Client<C>) {
    // SAFETY: `native_ptr` is the live handle of `client`, borrowed for the whole call;
    // `rd_kafka_handle_mock_cluster` returns its mock cluster (owned by the handle, so alive as
    // long as it is) or null, checked before the setter, which only stores the value under the
    // cluster's lock.
    unsafe {
        let cluster = rdkafka_sys::rd_kafka_handle_mock_cluster(client.native_ptr());
        if !cluster.is_null() {
            rdkafka_sys::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0);
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_comes_with_its_dead_letter_topic_and_only_compacted_ones_are_compacted() {
        let all = vec!["tweets".to_owned(), "models".to_owned()];
        let plan = topic_plan(&all, &["models".to_owned()]);
        assert_eq!(
            plan,
            vec![
                ("tweets".to_owned(), vec![]),
                (topics::dead_letter("tweets"), vec![]),
                ("models".to_owned(), vec![("cleanup.policy", "compact")]),
                (topics::dead_letter("models"), vec![]),
            ]
        );
        assert!(topic_plan(&[], &all).is_empty());
    }
}
