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

/// Runs a stage, and runs it again from its committed state when it fails for any reason but a
/// configuration error (e.g. the broker went away long enough for its transaction to time out, or
/// its producer was fenced): the same recovery as a restarted process, without losing the process.
/// Waits 1 s, then twice as long after each failure in a row (at most 30 s); stops on shutdown.
pub async fn supervise<F, Fut, T>(
    name: &str,
    shutdown: watch::Receiver<bool>,
    mut start: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut backoff = std::time::Duration::from_secs(1);
    loop {
        let attempt = std::time::Instant::now();
        match start().await {
            Ok(v) => return Ok(v),
            Err(e) if e.downcast_ref::<crate::config::ConfigError>().is_some() => return Err(e),
            Err(e) if *shutdown.borrow() => return Err(e),
            Err(e) => {
                if attempt.elapsed() > std::time::Duration::from_secs(60) {
                    backoff = std::time::Duration::from_secs(1);
                }
                tracing::error!(stage = name, error = %format!("{e:#}"), retry_in = ?backoff, "stage failed; restarting it from its committed state");
                let mut stop = shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return Err(e),
                }
                backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
            }
        }
    }
}

/// The record key as text, if any.
pub(crate) fn key_text(key: Option<&[u8]>) -> Option<String> {
    key.map(|k| String::from_utf8_lossy(k).into_owned())
}
