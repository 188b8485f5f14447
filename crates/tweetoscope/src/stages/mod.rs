//! The stages: thin modules wiring the pure logic crates to Kafka and telemetry.

pub mod collector;
pub mod dashboard;
pub mod estimator;
pub mod generator;
pub mod learner;
pub mod logger;
pub mod monitor;
pub mod predictor;

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::TopicArgs;
use crate::kafka::KafkaSettings;
use crate::metrics::Metrics;

/// What every stage needs: Kafka, topic names, metrics and the shutdown signal.
#[derive(Clone)]
pub struct StageEnv {
    /// How to reach Kafka.
    pub kafka: KafkaSettings,
    /// Topic names.
    pub topics: TopicArgs,
    /// The process's metrics.
    pub metrics: Arc<Metrics>,
    /// Turns true when the stage must stop.
    pub shutdown: watch::Receiver<bool>,
}

impl StageEnv {
    /// Processing-loop settings of `stage` (transactional when the Kafka settings say so).
    pub fn loop_settings(&self, stage: &'static str) -> crate::kafka::LoopSettings {
        crate::kafka::LoopSettings {
            transactional: self.kafka.transactions,
            commit_interval: self.kafka.commit_interval,
            ..crate::kafka::LoopSettings::new(stage)
        }
    }
}

/// The record key as text, if any.
pub(crate) fn key_text(key: Option<&[u8]>) -> Option<String> {
    key.map(|k| String::from_utf8_lossy(k).into_owned())
}
