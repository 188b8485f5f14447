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

/// Ends a stage's helper tasks (see [`StageEnv::for_helpers`]) when stopped or dropped.
pub struct HelperStop(watch::Sender<bool>);

impl HelperStop {
    /// Tells the helpers to stop.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl Drop for HelperStop {
    fn drop(&mut self) {
        self.stop();
    }
}

impl StageEnv {
    /// The environment for tasks that help a stage's processing loop (e.g. the predictor's model
    /// follower): its shutdown turns true on the process's shutdown, and also when the returned
    /// [`HelperStop`] is stopped or dropped. A stage stops its helpers as soon as its loop ends,
    /// whether by shutdown or by failure, so that a failed stage returns to its supervisor instead
    /// of waiting for helpers that only stop on shutdown.
    pub fn for_helpers(&self) -> (StageEnv, HelperStop) {
        let (sender, receiver) = watch::channel(*self.shutdown.borrow());
        let relay = sender.clone();
        let mut process_shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                if *process_shutdown.borrow_and_update() {
                    relay.send_replace(true);
                    return;
                }
                tokio::select! {
                    changed = process_shutdown.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                    _ = relay.closed() => return,
                }
            }
        });
        let env = StageEnv {
            shutdown: receiver,
            ..self.clone()
        };
        (env, HelperStop(sender))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(shutdown: watch::Receiver<bool>) -> StageEnv {
        let cli = crate::cli::parse(["tweetoscope", "logger"]).expect("defaults");
        let (kafka, _) = cli.command.kafka().expect("a Kafka command");
        StageEnv {
            kafka: KafkaSettings::new(kafka, "127.0.0.1:1".into()),
            topics: kafka.topics.clone(),
            metrics: Metrics::new(),
            shutdown,
        }
    }

    async fn turns_true(mut signal: watch::Receiver<bool>) -> bool {
        let wait = signal.wait_for(|stop| *stop);
        tokio::time::timeout(std::time::Duration::from_secs(5), wait)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn helpers_stop_when_their_stage_loop_ends_without_a_shutdown() {
        let (_process, shutdown) = watch::channel(false);
        let (helpers, stop) = env(shutdown.clone()).for_helpers();
        assert!(!*helpers.shutdown.borrow());
        drop(stop);
        assert!(turns_true(helpers.shutdown.clone()).await);
        assert!(!*shutdown.borrow(), "the process keeps running");
    }

    #[tokio::test]
    async fn helpers_stop_on_the_process_shutdown() {
        let (process, shutdown) = watch::channel(false);
        let (helpers, _stop) = env(shutdown).for_helpers();
        process.send_replace(true);
        assert!(turns_true(helpers.shutdown.clone()).await);
    }
}
