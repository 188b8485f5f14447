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

use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::{
    CascadeArgs, DashboardArgs, EstimatorArgs, GeneratorArgs, KafkaArgs, LearnerArgs, LoggerArgs,
    MonitorArgs, PredictorArgs, RunArgs, TopicArgs,
};
use crate::events::MessageMalformed;
use crate::kafka::client::{check_brokers_accept, SECURITY_CHECK_FOR};
use crate::kafka::{
    create_topics, process, AtCommit, Handler, KafkaSettings, LoopSettings, Sink, StageContext,
};
use crate::metrics::Metrics;
use crate::telemetry::{self, LogQueue, STAGE_SPAN};

/// What every stage needs: Kafka, topic names, metrics and the shutdown signal.
#[derive(Debug, Clone)]
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
    /// Connects the stages of this process to Kafka at `kafka`: with client options, first checks
    /// that the brokers accept their credentials and TLS settings
    /// ([`check_brokers_accept`]: a [`ConfigError`](crate::config::ConfigError) if not); creates the topics unless
    /// `--no-create-topics` says they exist (or `create_topics` is false: the embedded broker made
    /// them), and publishes `log_queue` (if any) on the logs topic until `shutdown`. Returns the
    /// environment and the log shipper's task.
    pub async fn connect(
        kafka: KafkaSettings,
        args: &KafkaArgs,
        create_topics_now: bool,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
        log_queue: Option<LogQueue>,
    ) -> anyhow::Result<(StageEnv, Option<JoinHandle<()>>)> {
        let topics = args.topics.clone();
        if !kafka.client_options.is_empty() {
            // Credentials and TLS settings come with the client options: a refused login or
            // handshake ends the process now, with what to fix, rather than stalling each stage.
            let settings = kafka.clone();
            tokio::task::spawn_blocking(move || {
                check_brokers_accept(&settings, SECURITY_CHECK_FOR)
            })
            .await
            .map_err(|e| anyhow::anyhow!("the Kafka connection check panicked: {e}"))??;
        }
        if create_topics_now && !args.no_create_topics {
            create_topics(&kafka, &topics.all(), &topics.compacted(), args.partitions).await?;
        }
        let shipper = match log_queue {
            Some(queue) => Some(telemetry::ship_to_topic(
                queue,
                &kafka,
                topics.logs_topic.clone(),
                metrics.clone(),
                shutdown.clone(),
            )?),
            None => None,
        };
        let env = StageEnv {
            kafka,
            topics,
            metrics,
            shutdown,
        };
        Ok((env, shipper))
    }

    /// Processing-loop settings of `stage` (transactional when the Kafka settings say so).
    pub fn loop_settings(&self, stage: &'static str) -> LoopSettings {
        LoopSettings {
            transactional: self.kafka.transactions,
            commit_interval: self.kafka.commit_interval,
            ..LoopSettings::new(stage)
        }
    }

    /// What `stage` consumes by default: `topic`, in the group `<prefix>-<stage>`, with the
    /// loop settings of [`StageEnv::loop_settings`].
    pub fn input(&self, stage: &'static str, topic: &str) -> Input {
        Input {
            topic: topic.to_owned(),
            group: format!("{}-{stage}", self.kafka.group_prefix),
            settings: self.loop_settings(stage),
        }
    }

    /// Runs a stage: builds its producer and a consumer subscribed to `input`, makes its handler
    /// with `make_handler` (which may read topic metadata through the clients), and runs the
    /// shared exactly-once processing loop until shutdown or failure.
    pub async fn consume<H, F>(&self, input: Input, make_handler: F) -> anyhow::Result<()>
    where
        H: Handler,
        F: FnOnce(&StageClients) -> anyhow::Result<H>,
    {
        let stage = input.settings.stage;
        MessageMalformed::register(&self.metrics, stage, &input.topic);
        let producer = self.kafka.stage_producer(stage, &self.metrics).await?;
        let consumer = self
            .kafka
            .consumer_in_group(&input.group, stage, self.metrics.clone())?;
        consumer.subscribe(&[input.topic.as_str()])?;
        let sink = Sink::new(producer);
        let clients = StageClients {
            kafka: self.kafka.clone(),
            sink,
            consumer,
        };
        let handler = make_handler(&clients)?;
        let StageClients { sink, consumer, .. } = clients;
        process(
            input.settings,
            consumer,
            sink,
            self.metrics.clone(),
            self.shutdown.clone(),
            handler,
        )
        .await
    }
}

/// What a stage consumes: one topic, in one consumer group, with its loop settings.
#[derive(Debug, Clone)]
pub struct Input {
    /// The input topic.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// The processing loop's settings (the stage's name among them).
    pub settings: LoopSettings,
}

/// A stage's Kafka clients while its handler is being made.
pub struct StageClients {
    kafka: KafkaSettings,
    sink: Sink,
    consumer: StreamConsumer<StageContext>,
}

impl std::fmt::Debug for StageClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageClients")
            .field("brokers", &self.kafka.brokers)
            .finish_non_exhaustive()
    }
}

impl StageClients {
    /// The number of partitions of `topic` (an error if it has none).
    pub fn partitions_of(&self, topic: &str) -> anyhow::Result<i32> {
        self.kafka.partitions_of(self.sink.producer(), topic)
    }

    /// The counter increments that move with the stage's commits.
    pub fn at_commit(&self) -> AtCommit {
        self.sink.at_commit()
    }
}

/// A stage with its options: the unit `main` supervises and `run` spawns.
#[derive(Debug, Clone)]
pub enum Stage {
    /// Replays cascades onto the tweets topic, then ends.
    Generator(GeneratorArgs),
    /// Tweets → partial series and sizes.
    Collector(CascadeArgs),
    /// Partial series → Hawkes parameters.
    Estimator(EstimatorArgs),
    /// Parameters and sizes → alerts, stats, samples.
    Predictor(PredictorArgs),
    /// Samples → models.
    Learner(LearnerArgs),
    /// Stats → Pushgateway; the board of errors it keeps.
    Monitor(MonitorArgs, monitor::ErrorBoard),
    /// Alerts → Alertmanager; the most popular predictions it keeps.
    Dashboard(DashboardArgs, dashboard::TopCascades),
    /// Logs → stdout.
    Logger(LoggerArgs),
}

impl Stage {
    /// The stage's name (its metrics label, group suffix and log span).
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Generator(_) => "generator",
            Stage::Collector(_) => "collector",
            Stage::Estimator(_) => "estimator",
            Stage::Predictor(_) => "predictor",
            Stage::Learner(_) => "learner",
            Stage::Monitor(..) => "monitor",
            Stage::Dashboard(..) => "dashboard",
            Stage::Logger(_) => "logger",
        }
    }

    /// Every stage of `run` but the generator (which `run` drives itself, for its report and its
    /// back-pressure), in the order they start; the monitor and the dashboard keep their figures
    /// in `board` and `top`.
    pub fn pipeline(
        args: &RunArgs,
        board: &monitor::ErrorBoard,
        top: &dashboard::TopCascades,
    ) -> Vec<Stage> {
        vec![
            Stage::Collector(args.cascade.clone()),
            Stage::Estimator(args.estimator.clone()),
            Stage::Predictor(args.predictor.clone()),
            Stage::Learner(args.learner.clone()),
            Stage::Monitor(args.monitor.clone(), board.clone()),
            Stage::Dashboard(args.dashboard.clone(), top.clone()),
        ]
    }

    /// Runs the stage once, in its log span, until shutdown, failure or (for the generator) the
    /// end of the replay.
    pub async fn run(&self, env: StageEnv) -> anyhow::Result<()> {
        let span = tracing::info_span!(STAGE_SPAN, name = self.name());
        let run = async move {
            match self.clone() {
                Stage::Generator(a) => generator::run(env, a).await.map(drop),
                Stage::Collector(a) => collector::run(env, a).await,
                Stage::Estimator(a) => estimator::run(env, a).await,
                Stage::Predictor(a) => predictor::run(env, a).await,
                Stage::Learner(a) => learner::run(env, a).await,
                Stage::Monitor(a, board) => monitor::run(env, a, board).await,
                Stage::Dashboard(a, top) => dashboard::run(env, a, top).await,
                Stage::Logger(a) => logger::run(env, a).await,
            }
        };
        run.instrument(span).await
    }

    /// Runs the stage under [`supervise`]: again from its committed state after each failure.
    pub async fn supervise(&self, env: StageEnv) -> anyhow::Result<()> {
        let shutdown = env.shutdown.clone();
        supervise(self.name(), shutdown, || {
            // A restarted monitor rebuilds its board from the whole stats topic: it starts empty
            // (the same board, which `run`'s summary reads too).
            if let Stage::Monitor(_, board) = self {
                board.clear();
            }
            let stage = self.clone();
            let env = env.clone();
            async move { stage.run(env).await }
        })
        .await
    }
}

/// Ends a stage's helper tasks (see [`StageEnv::for_helpers`]) when stopped or dropped.
#[derive(Debug)]
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
/// Waits 1 s, then twice as long after each failure in a row (at most 30 s), each wait shortened
/// by a random share of up to half; stops on shutdown.
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
                let wait = jittered(backoff, rand::random::<f64>());
                tracing::error!(stage = name, error = %format!("{e:#}"), retry_in = ?wait, "stage failed; restarting it from its committed state");
                let mut stop = shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return Err(e),
                }
                backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
            }
        }
    }
}

/// `backoff` shortened by up to half, by `unit` in [0, 1): replicas that failed together (a
/// broker that went away) do not all come back at the same instant.
pub(crate) fn jittered(backoff: std::time::Duration, unit: f64) -> std::time::Duration {
    backoff.mul_f64(1.0 - 0.5 * unit.clamp(0.0, 1.0))
}

/// Sends `request` to `service` (named in the error) with a 10 s timeout; an answer other than
/// 2xx is an error with its status and body.
pub(crate) async fn send_http(
    request: reqwest::RequestBuilder,
    service: &str,
) -> Result<(), String> {
    let response = request
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status().is_success() {
        return Ok(());
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    Err(format!("{service} answered {status}: {body}"))
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
            kafka: KafkaSettings::new(kafka, "127.0.0.1:1".into()).expect("no option files"),
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

    #[test]
    fn the_restart_backoff_is_jittered_within_its_lower_half() {
        let backoff = std::time::Duration::from_secs(8);
        assert_eq!(jittered(backoff, 0.0), backoff);
        assert_eq!(jittered(backoff, 0.5), std::time::Duration::from_secs(6));
        assert_eq!(jittered(backoff, 1.0), std::time::Duration::from_secs(4));
        assert_eq!(jittered(backoff, 7.0), std::time::Duration::from_secs(4));
    }

    #[tokio::test]
    async fn helpers_stop_on_the_process_shutdown() {
        let (process, shutdown) = watch::channel(false);
        let (helpers, _stop) = env(shutdown).for_helpers();
        process.send_replace(true);
        assert!(turns_true(helpers.shutdown.clone()).await);
    }
}
