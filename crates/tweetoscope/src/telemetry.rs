//! Structured logs: human text on a terminal, JSON lines otherwise; optionally shipped to Grafana
//! Loki (`tracing-loki`) and published on the `logs` topic for the logger stage. Shipping never
//! blocks a stage: records go through bounded queues and are dropped (and counted) when full.

use std::io::IsTerminal;
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};
use tweetoscope_messages::{to_payload, LogRecord};

use crate::config::{LogArgs, LogFormat, TelemetryArgs};
use crate::events::{InternalEvent as _, LogRecordDropped};
use crate::kafka::{KafkaSettings, Outgoing, Sink};
use crate::metrics::Metrics;

/// Name of the span that marks which stage an event belongs to (`stage{name=...}`).
pub const STAGE_SPAN: &str = "stage";

/// Records waiting to be published on the logs topic.
#[derive(Debug)]
pub struct LogQueue(pub mpsc::Receiver<LogRecord>);

/// What [`init`] set up.
pub struct Telemetry {
    /// Records for the logs topic (None when disabled).
    pub log_queue: Option<LogQueue>,
    loki: Option<(
        tracing_loki::BackgroundTaskController,
        tokio::task::JoinHandle<()>,
    )>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("log_queue", &self.log_queue)
            .field("loki", &self.loki.is_some())
            .finish()
    }
}

impl Telemetry {
    /// Sends the logs still queued for Loki (for at most 5 s) and stops its task.
    pub async fn shutdown(self) {
        if let Some((controller, task)) = self.loki {
            controller.shutdown().await;
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
        }
    }
}

fn env_filter(directives: &str) -> Result<EnvFilter, crate::config::ConfigError> {
    EnvFilter::try_new(directives).map_err(|e| {
        crate::config::ConfigError(format!(
            "invalid log filter {directives:?} (from --log, TWEETOSCOPE_LOG or RUST_LOG): {e} (example: info,tweetoscope=debug)"
        ))
    })
}

/// The console layer `--log` and `--log-format` ask for, filtered: `--log` (or `RUST_LOG`),
/// default `info`; for `run` and `bench`, `warn,tweetoscope::run=info` so the progress stays
/// readable. Text is coloured on a terminal unless `NO_COLOR` is set.
fn console_layer<S>(
    logs: &LogArgs,
    process: &'static str,
) -> Result<Box<dyn Layer<S> + Send + Sync>, crate::config::ConfigError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let directives = logs.filter().unwrap_or_else(|| {
        if matches!(process, "run" | "bench") {
            "warn,tweetoscope::run=info".into()
        } else {
            "info".into()
        }
    });
    let filter = env_filter(&directives)?;
    let json = match logs.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    Ok(if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal() && !no_color)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    })
}

/// Installs a console-only subscriber, for the offline commands (`fit`, `eval`).
pub fn init_console(logs: &LogArgs, process: &'static str) -> anyhow::Result<()> {
    tracing_subscriber::registry()
        .with(console_layer(logs, process)?)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}

/// Installs the global subscriber. Must be called inside the tokio runtime (the Loki task is
/// spawned on it). The console follows `--log` (see `console_layer`); Loki gets `--log` when
/// given, else `info`; the logs topic gets Tweetoscope's own records at info and above.
pub fn init(
    telemetry: &TelemetryArgs,
    process: &'static str,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Telemetry> {
    let console = console_layer(&telemetry.logs, process)?;
    let loki_filter = env_filter(telemetry.logs.filter().as_deref().unwrap_or("info"))?;
    let (loki, loki_task) = match &telemetry.loki_url {
        Some(url) => {
            let (layer, controller, task) = tracing_loki::builder()
                .label("service", "tweetoscope")?
                .label("process", process)?
                .extra_field("pid", std::process::id().to_string())?
                .build_controller_url(url.clone())
                .map_err(|e| anyhow::anyhow!("cannot ship logs to Loki at {url}: {e}"))?;
            (
                Some(layer.with_filter(loki_filter)),
                Some((controller, tokio::spawn(task))),
            )
        }
        None => (None, None),
    };
    let (topic_layer, queue) = if telemetry.no_log_topic {
        (None, None)
    } else {
        let (tx, rx) = mpsc::channel(10_000);
        (
            Some(TopicLayer {
                tx,
                process,
                metrics,
            }),
            Some(LogQueue(rx)),
        )
    };
    let ours =
        tracing_subscriber::filter::Targets::new().with_target("tweetoscope", tracing::Level::INFO);
    tracing_subscriber::registry()
        .with(console)
        .with(loki)
        .with(topic_layer.map(|l| l.with_filter(ours)))
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))?;
    Ok(Telemetry {
        log_queue: queue,
        loki: loki_task,
    })
}

/// Publishes queued log records on the logs topic, keyed by stage, until `stop` turns true; then
/// flushes for at most 5 s. Await the returned task before the broker goes away.
pub fn ship_to_topic(
    queue: LogQueue,
    kafka: &KafkaSettings,
    topic: String,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let sink = Sink::new(kafka.producer("logs", &metrics)?);
    let LogQueue(mut rx) = queue;
    Ok(tokio::spawn(async move {
        loop {
            let record = tokio::select! {
                r = rx.recv() => r,
                _ = stop.changed() => None,
            };
            let Some(record) = record else { break };
            let key = record.source.clone();
            // Deliveries are not awaited here: a slow or absent broker must not hold the queue.
            sink.enqueue(Outgoing::keyed(&topic, key, to_payload(&record)))
                .await;
            while sink.in_flight() > 10_000 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        let flush = sink.settled();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), flush).await;
    }))
}

/// Stage name stored in a `stage` span's extensions.
struct StageName(String);

/// Layer turning events into [`LogRecord`]s for the logs topic.
struct TopicLayer {
    tx: mpsc::Sender<LogRecord>,
    process: &'static str,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Collect {
    message: String,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl Visit for Collect {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields.insert(field.name().into(), text.into());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.fields.insert(field.name().into(), value.into());
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.insert(field.name().into(), value.into());
    }
}

impl<S> Layer<S> for TopicLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        if attrs.metadata().name() != STAGE_SPAN {
            return;
        }
        let mut collect = Collect::default();
        attrs.record(&mut collect);
        if let (Some(serde_json::Value::String(name)), Some(span)) =
            (collect.fields.get("name"), ctx.span(id))
        {
            span.extensions_mut().insert(StageName(name.clone()));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut collect = Collect::default();
        event.record(&mut collect);
        let source = ctx
            .event_scope(event)
            .and_then(|scope| {
                scope
                    .from_root()
                    .find_map(|span| span.extensions().get::<StageName>().map(|s| s.0.clone()))
            })
            .or_else(|| {
                collect
                    .fields
                    .get("stage")
                    .and_then(|v| v.as_str().map(str::to_owned))
            })
            .unwrap_or_else(|| self.process.to_owned());
        let record = LogRecord {
            t: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            source,
            level: event.metadata().level().to_string(),
            message: collect.message,
            fields: collect.fields,
        };
        if self.tx.try_send(record).is_err() {
            LogRecordDropped.emit(&self.metrics);
        }
    }
}
