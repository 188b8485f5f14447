//! The options of every command, grouped by what they configure (Kafka, telemetry, each stage),
//! with the checks clap cannot make alone and the translations into the library crates' configs.
//! The command tree that assembles them, and the configuration file, are in `cli.rs`.
//! Values are checked before anything starts; a bad one stops the program with a message that
//! names the option and what it accepts.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use tweetoscope_hawkes::{FitConfig, HawkesError, MarkDistribution, Prior};
use tweetoscope_replay::news::{parse_index, NewsDataset};
use tweetoscope_replay::synthetic::{SyntheticCascades, SyntheticConfig};
use tweetoscope_replay::{CascadeEvents, ReplayConfig};

/// The real NEWS index bundled with the program: synthetic sizes follow it by default.
pub const BUNDLED_INDEX: &str = include_str!("../../../data/news-index.csv");

/// How a process reaches Kafka: brokers, partitions, groups, commits and topic names. Flattened
/// into the commands that talk to Kafka (the stages, `run`, `bench`), and only those.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Kafka")]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (host:port,...). `run` and `bench` start an embedded broker when
    /// absent.
    #[arg(long, env = "TWEETOSCOPE_BROKERS", value_name = "HOST:PORT,...")]
    pub brokers: Option<String>,
    /// Partitions of the topics this process creates.
    #[arg(long, env = "TWEETOSCOPE_PARTITIONS", default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=1024))]
    pub partitions: i32,
    /// Replication factor of the topics this process creates (at most the number of brokers).
    #[arg(long, env = "TWEETOSCOPE_REPLICATION", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=32))]
    pub replication: i32,
    /// Prefix of the consumer group ids (`<prefix>-<stage>`).
    #[arg(long, env = "TWEETOSCOPE_GROUP_PREFIX", default_value = "tweetoscope")]
    pub group_prefix: String,
    /// Kafka consumer session timeout in milliseconds.
    #[arg(long, env = "TWEETOSCOPE_SESSION_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1_000..=3_600_000))]
    pub session_timeout_ms: u32,
    /// Milliseconds between two commits (transactions) of a stage: lower gives lower latency
    /// downstream (read_committed consumers see outputs at commit), higher gives more throughput.
    #[arg(long, env = "TWEETOSCOPE_COMMIT_INTERVAL_MS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub commit_interval_ms: u64,
    /// Commit outputs and offsets without Kafka transactions (at-least-once instead of
    /// exactly-once; for brokers without transaction support).
    #[arg(long, env = "TWEETOSCOPE_NO_TRANSACTIONS")]
    pub no_transactions: bool,
    /// The topics exist already (created by an operator or a Kubernetes job): do not create them.
    #[arg(long, env = "TWEETOSCOPE_NO_CREATE_TOPICS")]
    pub no_create_topics: bool,
    /// A librdkafka property for every Kafka client of the process, e.g.
    /// `security.protocol=SASL_SSL` (repeatable; comma-separated in the environment, a list in
    /// the config file). It wins over Tweetoscope's own tuning; the properties exactly-once
    /// relies on are refused.
    #[arg(long = "kafka-option", env = "TWEETOSCOPE_KAFKA_OPTION", value_name = "KEY=VALUE", value_delimiter = ',', value_parser = parse_kafka_option)]
    pub kafka_options: Vec<KafkaOption>,
    /// Like --kafka-option, the value read from a file (for secrets such as `sasl.password`):
    /// KEY=PATH, the file's content without its trailing newline.
    #[arg(long = "kafka-option-file", env = "TWEETOSCOPE_KAFKA_OPTION_FILE", value_name = "KEY=PATH", value_delimiter = ',', value_parser = parse_kafka_option)]
    pub kafka_option_files: Vec<KafkaOption>,
    #[command(flatten)]
    /// Topic names.
    pub topics: TopicArgs,
}

/// One `KEY=VALUE` of `--kafka-option` (or `KEY=PATH` of `--kafka-option-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaOption {
    /// The librdkafka property.
    pub key: String,
    /// Its value (or the file holding it).
    pub value: String,
}

/// librdkafka properties that Tweetoscope sets for its guarantees, with the option to use
/// instead (if any): overriding them would break exactly-once or the consumer groups.
const MANAGED_KAFKA_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "use --brokers"),
    ("group.id", "use --group-prefix"),
    ("session.timeout.ms", "use --session-timeout-ms"),
    ("transactional.id", "each stage makes its own"),
    ("enable.idempotence", "transactions need it"),
    (
        "transaction.timeout.ms",
        "the transactional calls' time limits depend on it",
    ),
    ("isolation.level", "use --no-transactions for at-least-once"),
    (
        "enable.auto.commit",
        "offsets are committed with the outputs",
    ),
];

/// Parses `KEY=VALUE`: a non-empty key without spaces, not one of Tweetoscope's own properties.
fn parse_kafka_option(text: &str) -> Result<KafkaOption, String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
    let key = key.trim();
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(format!(
            "`{text}`: the key must be a librdkafka property name"
        ));
    }
    if let Some((_, instead)) = MANAGED_KAFKA_PROPERTIES.iter().find(|(k, _)| *k == key) {
        return Err(format!("`{key}` is set by Tweetoscope ({instead})"));
    }
    Ok(KafkaOption {
        key: key.to_owned(),
        value: value.to_owned(),
    })
}

impl KafkaArgs {
    /// The librdkafka properties of `--kafka-option` and `--kafka-option-file` (files read), in
    /// order; an unreadable file is an error naming it.
    pub fn client_options(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let mut options: Vec<(String, String)> = self
            .kafka_options
            .iter()
            .map(|o| (o.key.clone(), o.value.clone()))
            .collect();
        for o in &self.kafka_option_files {
            let text = std::fs::read_to_string(&o.value).map_err(|e| {
                ConfigError(format!(
                    "--kafka-option-file {}={}: cannot read the file: {e}",
                    o.key, o.value
                ))
            })?;
            let value = text.strip_suffix('\n').unwrap_or(&text);
            let value = value.strip_suffix('\r').unwrap_or(value);
            options.push((o.key.clone(), value.to_owned()));
        }
        Ok(options)
    }
}

/// Console logs: filter and format. `fit` and `eval` take these alone; the long-running commands
/// take them within [`TelemetryArgs`].
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logs")]
pub struct LogArgs {
    /// Log filter, e.g. `info` or `info,tweetoscope::stages::estimator=debug`; `RUST_LOG` when
    /// neither this nor `TWEETOSCOPE_LOG` is set (default: `info`; for `run` and `bench`,
    /// `warn,tweetoscope::run=info` so the progress stays readable).
    #[arg(long, env = "TWEETOSCOPE_LOG")]
    pub log: Option<String>,
    /// Log format: text for people, json for machines; auto picks text on a terminal. Text has
    /// no colours when `NO_COLOR` is set.
    #[arg(long, env = "TWEETOSCOPE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// The filter given by `--log`, else `TWEETOSCOPE_LOG` (both through clap), else `RUST_LOG`.
    pub fn filter(&self) -> Option<String> {
        self.log.clone().or_else(|| {
            std::env::var("RUST_LOG")
                .ok()
                .filter(|v| !v.trim().is_empty())
        })
    }
}

/// Telemetry of a long-running process: logs, Loki, the log topic and the HTTP endpoint.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Telemetry")]
pub struct TelemetryArgs {
    #[command(flatten)]
    /// Console logs.
    pub logs: LogArgs,
    /// Ship logs to this Grafana Loki base URL (e.g. http://127.0.0.1:3100).
    #[arg(
        long,
        env = "TWEETOSCOPE_LOKI_URL",
        value_name = "URL",
        help_heading = "Telemetry"
    )]
    pub loki_url: Option<reqwest::Url>,
    /// Do not publish log records to the logs topic.
    #[arg(long, env = "TWEETOSCOPE_NO_LOG_TOPIC", help_heading = "Telemetry")]
    pub no_log_topic: bool,
    /// Address of the HTTP endpoint serving /metrics, /healthz and /readyz ("off" to disable).
    /// Default: 127.0.0.1 with a port per stage (run 9100, generator 9101 ... logger 9108).
    #[arg(
        long,
        env = "TWEETOSCOPE_METRICS_ADDR",
        value_name = "ADDR|off",
        help_heading = "Telemetry"
    )]
    pub metrics_addr: Option<MetricsAddr>,
}

/// Where `/metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsAddr {
    /// Serve on this address.
    At(SocketAddr),
    /// Do not serve.
    Off,
}

impl std::str::FromStr for MetricsAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(MetricsAddr::Off);
        }
        s.parse().map(MetricsAddr::At).map_err(|_| {
            format!("{s:?} is not an address like 127.0.0.1:9100 or 0.0.0.0:9100, nor \"off\"")
        })
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Topic names.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Topics")]
pub struct TopicArgs {
    /// Topic of the tweets.
    #[arg(long, env = "TWEETOSCOPE_TWEETS_TOPIC", default_value = "tweets")]
    pub tweets_topic: String,
    /// Topic of the partial cascades.
    #[arg(
        long,
        env = "TWEETOSCOPE_SERIES_TOPIC",
        default_value = "cascade_series"
    )]
    pub series_topic: String,
    /// Topic of the sizes and parameters.
    #[arg(
        long,
        env = "TWEETOSCOPE_PROPERTIES_TOPIC",
        default_value = "cascade_properties"
    )]
    pub properties_topic: String,
    /// Topic of the training samples.
    #[arg(long, env = "TWEETOSCOPE_SAMPLES_TOPIC", default_value = "samples")]
    pub samples_topic: String,
    /// Topic of the models.
    #[arg(long, env = "TWEETOSCOPE_MODELS_TOPIC", default_value = "models")]
    pub models_topic: String,
    /// Topic of the alerts.
    #[arg(long, env = "TWEETOSCOPE_ALERTS_TOPIC", default_value = "alerts")]
    pub alerts_topic: String,
    /// Topic of the stats.
    #[arg(long, env = "TWEETOSCOPE_STATS_TOPIC", default_value = "stats")]
    pub stats_topic: String,
    /// Topic of the logs.
    #[arg(long, env = "TWEETOSCOPE_LOGS_TOPIC", default_value = "logs")]
    pub logs_topic: String,
    /// Compacted changelog of the predictor's half-joined entries (its state, for recovery).
    #[arg(
        long,
        env = "TWEETOSCOPE_PREDICTOR_STATE_TOPIC",
        default_value = "predictor_state"
    )]
    pub predictor_state_topic: String,
    /// Compacted topic where the generator records how far each replay got (for resuming).
    #[arg(
        long,
        env = "TWEETOSCOPE_GENERATOR_PROGRESS_TOPIC",
        default_value = "generator_progress"
    )]
    pub generator_progress_topic: String,
}

impl TopicArgs {
    /// Every topic of the pipeline, without dead-letter topics.
    pub fn all(&self) -> Vec<String> {
        vec![
            self.tweets_topic.clone(),
            self.series_topic.clone(),
            self.properties_topic.clone(),
            self.samples_topic.clone(),
            self.models_topic.clone(),
            self.alerts_topic.clone(),
            self.stats_topic.clone(),
            self.logs_topic.clone(),
            self.predictor_state_topic.clone(),
            self.generator_progress_topic.clone(),
        ]
    }

    /// Compacted topics: the newest record per key is what matters.
    pub fn compacted(&self) -> Vec<String> {
        vec![
            self.models_topic.clone(),
            self.predictor_state_topic.clone(),
            self.generator_progress_topic.clone(),
        ]
    }
}

/// Observation windows, termination and minimum size.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Cascades")]
pub struct CascadeArgs {
    /// Observation windows in seconds, comma-separated.
    #[arg(long, env = "TWEETOSCOPE_WINDOWS", value_delimiter = ',', default_value = "600,1200", value_parser = clap::value_parser!(u64).range(1..))]
    pub windows: Vec<u64>,
    /// Seconds without retweet after which a cascade is over, at least (see
    /// --terminated-age-ratio).
    #[arg(long, env = "TWEETOSCOPE_TERMINATED", default_value_t = 1800.0)]
    pub terminated: f64,
    /// A cascade is over after max(--terminated, this × its age) seconds without retweet, its age
    /// being the time from its original tweet to its last retweet: with 1 (the default) a cascade
    /// that has lived for a day is not ended by a night's lull. 0: --terminated alone (the
    /// classic course rule, which ends real multi-day cascades at their first half-hour lull).
    #[arg(long, env = "TWEETOSCOPE_TERMINATED_AGE_RATIO", default_value_t = 1.0)]
    pub terminated_age_ratio: f64,
    /// Minimum number of tweets in a window for the cascade to be processed at that window.
    #[arg(long, env = "TWEETOSCOPE_MIN_CASCADE_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub min_cascade_size: u64,
}

/// Generator options.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Replay")]
pub struct GeneratorArgs {
    /// Where cascades come from.
    #[arg(long, env = "TWEETOSCOPE_DATA", value_enum, default_value_t = DataSource::Synthetic)]
    pub data: DataSource,
    /// NEWS index CSV (`start_ind,end_ind`), with --data news.
    #[arg(long, env = "TWEETOSCOPE_NEWS_INDEX", value_name = "FILE")]
    pub news_index: Option<PathBuf>,
    /// NEWS data CSV (`time,magnitude`), with --data news.
    #[arg(long, env = "TWEETOSCOPE_NEWS_DATA", value_name = "FILE")]
    pub news_data: Option<PathBuf>,
    /// Directory of one file per cascade, with --data tideh (every `RT<n>.txt`) or --data csv
    /// (every `*.csv`), read in natural order of the names (`RT2` before `RT10`).
    #[arg(long, env = "TWEETOSCOPE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Index whose cascade sizes synthetic cascades follow (default: the bundled NEWS index).
    #[arg(long, env = "TWEETOSCOPE_SIZE_INDEX", value_name = "FILE")]
    pub size_index: Option<PathBuf>,
    /// Number of synthetic cascades (with real data: at most this many, in data set order, 0 for all).
    #[arg(long, env = "TWEETOSCOPE_CASCADES", default_value_t = 1000)]
    pub cascades: usize,
    /// Number of sources, each with its own clock.
    #[arg(long, env = "TWEETOSCOPE_SOURCES", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub sources: u64,
    /// Most cascades live at once on one source.
    #[arg(long, env = "TWEETOSCOPE_MAX_LIVE", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_live: u64,
    /// Mean delay in seconds between two cascade starts on a source.
    #[arg(long, env = "TWEETOSCOPE_MEAN_START_DELAY", default_value_t = 60.0)]
    pub mean_start_delay: f64,
    /// Replay speed-up over event time (100: 100 s of tweets a second); 0 replays as fast as possible.
    #[arg(long, env = "TWEETOSCOPE_SPEED_UP", default_value_t = 0.0)]
    pub speed_up: f64,
    /// Seed of every random choice of the replay.
    #[arg(long, env = "TWEETOSCOPE_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Name of this replay: a restarted generator resumes the replay of the same name where its
    /// committed output ends (default: derived from the data options and the seed, so the same
    /// command resumes; give another name to replay the same data again).
    #[arg(long, env = "TWEETOSCOPE_REPLAY_ID")]
    pub replay_id: Option<String>,
}

/// Origin of the replayed cascades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataSource {
    /// Marked Hawkes cascades simulated with known parameters.
    Synthetic,
    /// The NEWS data set files (--news-index, --news-data).
    News,
    /// TiDeH retweet files `RT<n>.txt` (--data-dir).
    Tideh,
    /// One `t,m` CSV per cascade, the format of `fit` (--data-dir).
    Csv,
}

impl DataSource {
    /// The name written on the command line.
    pub fn name(&self) -> String {
        self.to_possible_value()
            .map_or_else(|| format!("{self:?}"), |v| v.get_name().to_owned())
    }
}

/// Collector options.
#[derive(Debug, Clone, Args)]
pub struct CollectorArgs {
    #[command(flatten)]
    /// Windows, termination, minimum size.
    pub cascade: CascadeArgs,
}

/// Estimator options.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Estimator")]
pub struct EstimatorArgs {
    /// Maximum likelihood instead of the MAP estimate with the log-normal prior.
    #[arg(long, env = "TWEETOSCOPE_MLE")]
    pub mle: bool,
    /// Largest branching factor n* a fit may reach (below 1).
    #[arg(long, env = "TWEETOSCOPE_MAX_BRANCHING", default_value_t = 0.99)]
    pub max_branching: f64,
    /// Exponent α of the power-law marks (> 2).
    #[arg(long, env = "TWEETOSCOPE_MARK_ALPHA", default_value_t = 2.4)]
    pub mark_alpha: f64,
    /// Minimum μ of the power-law marks (> 0).
    #[arg(long, env = "TWEETOSCOPE_MARK_MU", default_value_t = 10.0)]
    pub mark_mu: f64,
    /// Exponent g in (0, 1] of the excitation by followers: an event with m followers excites
    /// p·m^g (1: linear, the classic model; 0.5 tames celebrities' accounts). Exponential
    /// kernel only (the power-law kernel fits its own).
    #[arg(long, env = "TWEETOSCOPE_MARK_EXPONENT", default_value_t = 1.0)]
    pub mark_exponent: f64,
    /// Time kernel: `exponential` (MAP with the log-normal prior) or `power-law` (MLE,
    /// sum-of-exponentials likelihood).
    #[arg(long, env = "TWEETOSCOPE_KERNEL", default_value = "exponential", value_parser = kernel_parser())]
    pub kernel: tweetoscope_hawkes::Kernel,
    /// Fits run at once (default: the number of cores).
    #[arg(long, env = "TWEETOSCOPE_FIT_WORKERS")]
    pub fit_workers: Option<usize>,
}

/// Predictor options.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Predictor")]
pub struct PredictorArgs {
    /// Most half-joined (cascade, window) entries kept; the oldest go first.
    #[arg(long, env = "TWEETOSCOPE_MAX_PENDING", default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pending: u64,
}

/// Learner options.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Learner")]
pub struct LearnerArgs {
    /// Retrain a window's forest after this many new samples (or a tenth of the samples it
    /// holds, in multiples of this, once that is more).
    #[arg(long, env = "TWEETOSCOPE_RETRAIN_EVERY", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub retrain_every: u64,
    /// Train on at most the newest this many samples per window.
    #[arg(long, env = "TWEETOSCOPE_TRAINING_WINDOW", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub training_window: u64,
    /// Trees per forest.
    #[arg(long, env = "TWEETOSCOPE_TREES", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub trees: u64,
    /// Seed of the forests.
    #[arg(long, env = "TWEETOSCOPE_FOREST_SEED", default_value_t = 1)]
    pub forest_seed: u64,
}

/// Monitor options.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Monitor")]
pub struct MonitorArgs {
    /// Pushgateway base URL, e.g. http://127.0.0.1:9091 (none: only keep and log the figures).
    #[arg(long, env = "TWEETOSCOPE_PUSHGATEWAY_URL", value_name = "URL")]
    pub pushgateway_url: Option<reqwest::Url>,
    /// Seconds between two pushes.
    #[arg(long, env = "TWEETOSCOPE_PUSH_INTERVAL", default_value_t = 5.0)]
    pub push_interval: f64,
    /// Job label of the pushed group.
    #[arg(long, env = "TWEETOSCOPE_PUSH_JOB", default_value = "tweetoscope")]
    pub push_job: String,
    /// Predictions per window whose errors the monitor keeps (the newest): the pushed median,
    /// mean and interval coverage are over them, which bounds its memory.
    #[arg(long, env = "TWEETOSCOPE_ERROR_WINDOW", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub error_window: u64,
}

/// Dashboard options.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Dashboard")]
pub struct DashboardArgs {
    /// Alertmanager base URL, e.g. http://127.0.0.1:9093 (none: only log the alerts).
    #[arg(long, env = "TWEETOSCOPE_ALERTMANAGER_URL", value_name = "URL")]
    pub alertmanager_url: Option<reqwest::Url>,
    /// Alert on cascades predicted to reach at least this many tweets.
    #[arg(long, env = "TWEETOSCOPE_ALERT_THRESHOLD", default_value_t = 500)]
    pub alert_threshold: u64,
    /// What must reach the threshold: the `predicted` size, the `lower-bound` of its 80 %
    /// interval ("very likely popular"), or its `upper-bound` ("possibly popular": early
    /// warnings, more of them false). A prediction made without a model has no interval and is
    /// compared by its predicted size.
    #[arg(long, env = "TWEETOSCOPE_ALERT_ON", value_enum, default_value_t = AlertOn::Predicted)]
    pub alert_on: AlertOn,
    /// How many of the most popular predictions to keep for the summary.
    #[arg(long, env = "TWEETOSCOPE_TOP", default_value_t = 10)]
    pub top: usize,
    /// Seconds to keep retrying an alert Alertmanager does not accept (jittered back-off from
    /// 0.5 s to 15 s) before it goes to the alerts dead-letter topic; the alert's offset is
    /// committed only then. At most 300, below the 330 s after which a loop counts as stuck.
    #[arg(long, env = "TWEETOSCOPE_ALERT_RETRY_FOR", default_value_t = 240.0)]
    pub alert_retry_for: f64,
}

impl DashboardArgs {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.alert_retry_for.is_finite()
            && self.alert_retry_for > 0.0
            && self.alert_retry_for <= 300.0)
        {
            return Err(bad(
                "alert-retry-for",
                self.alert_retry_for,
                "a number of seconds in (0, 300], e.g. 240",
            ));
        }
        Ok(())
    }
}

/// Which size a popularity alert compares with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlertOn {
    /// The predicted final size.
    Predicted,
    /// The lower bound of the prediction's 80 % interval, when it has one.
    LowerBound,
    /// The upper bound of the prediction's 80 % interval, when it has one.
    UpperBound,
}

/// Logger options.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logger")]
pub struct LoggerArgs {
    /// Show records at this level and above.
    #[arg(long, env = "TWEETOSCOPE_LEVEL", value_enum, default_value_t = Level::Info)]
    pub level: Level,
    /// Show only records of this stage.
    #[arg(long, env = "TWEETOSCOPE_LOG_SOURCE", value_name = "STAGE")]
    pub log_source: Option<String>,
}

/// A log level, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Level {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Information and above.
    Info,
    /// Debugging and above.
    Debug,
    /// Everything.
    Trace,
}

impl Level {
    /// Parses a level name as written in log records (`INFO`, `warn`, ...).
    pub fn from_name(name: &str) -> Option<Level> {
        Level::from_str(name, true).ok()
    }
}

/// Options of `run`: every stage's.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    /// Generator options.
    pub generator: GeneratorArgs,
    #[command(flatten)]
    /// Windows, termination, minimum size.
    pub cascade: CascadeArgs,
    #[command(flatten)]
    /// Estimator options.
    pub estimator: EstimatorArgs,
    #[command(flatten)]
    /// Predictor options.
    pub predictor: PredictorArgs,
    #[command(flatten)]
    /// Learner options.
    pub learner: LearnerArgs,
    #[command(flatten)]
    /// Monitor options.
    pub monitor: MonitorArgs,
    #[command(flatten)]
    /// Dashboard options.
    pub dashboard: DashboardArgs,
    /// Give up when nothing progresses for this many seconds after the replay ended (with
    /// `--brokers`, 150 s more: the longest wait of a stage for its consumer group before it is
    /// rebuilt).
    #[arg(
        long,
        env = "TWEETOSCOPE_STALL_TIMEOUT",
        default_value_t = 60.0,
        help_heading = "Run"
    )]
    pub stall_timeout: f64,
    /// Replay at this speed-up over event time until the predictor has a model for every
    /// window, then as fast as possible (0: as fast as possible from the start; ignored with
    /// --speed-up). Models learn from finished cascades: a replay that outruns the learner's
    /// first trainings is predicted almost without forests.
    #[arg(
        long,
        env = "TWEETOSCOPE_WARM_UP_SPEED_UP",
        default_value_t = 10_000.0,
        help_heading = "Run"
    )]
    pub warm_up_speed_up: f64,
    /// Print the summary as JSON instead of text.
    #[arg(long, env = "TWEETOSCOPE_JSON_SUMMARY", help_heading = "Run")]
    pub json: bool,
}

/// Options of `fit`.
#[derive(Debug, Clone, Args)]
pub struct FitArgs {
    /// CSV with columns `t,m` (header allowed), one tweet a line.
    pub file: PathBuf,
    /// Observation horizon in seconds after the first tweet (default: just after the last tweet).
    #[arg(long)]
    pub until: Option<f64>,
    /// Maximum likelihood instead of MAP (exponential kernel; the power-law fit is always MLE).
    #[arg(long)]
    pub mle: bool,
    /// Time kernel: `exponential` or `power-law`.
    #[arg(long, default_value = "exponential", value_parser = kernel_parser())]
    pub kernel: tweetoscope_hawkes::Kernel,
    /// A model as the learner publishes it on `models` (e.g. `model-600.json` of `eval --out`):
    /// also print the size the predictor serves with it and its 80 % interval (`n_served`,
    /// `n_low`, `n_high`), observing the model's window (`--until` defaults to it). Fit with the
    /// kernel and mark options the model's estimator used.
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    /// Mark distribution and branching cap.
    pub marks: FitMarkArgs,
}

/// Mark distribution of `fit`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Marks")]
pub struct FitMarkArgs {
    /// Largest branching factor n* a fit may reach (below 1).
    #[arg(long, default_value_t = 0.99)]
    pub max_branching: f64,
    /// Exponent α of the power-law marks (> 2).
    #[arg(long, default_value_t = 2.4)]
    pub mark_alpha: f64,
    /// Minimum μ of the power-law marks (> 0).
    #[arg(long, default_value_t = 10.0)]
    pub mark_mu: f64,
    /// Exponent g in (0, 1] of the excitation by followers (p·m^g; exponential kernel only).
    #[arg(long, default_value_t = 1.0)]
    pub mark_exponent: f64,
}

/// Parses `--kernel`, listing the kernels in the help and in the error for another name.
fn kernel_parser() -> impl clap::builder::TypedValueParser<Value = tweetoscope_hawkes::Kernel> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser as _};
    PossibleValuesParser::new([
        PossibleValue::new("exponential")
            .alias("exp")
            .help("exponential decay of the excitation (MAP with a log-normal prior)"),
        PossibleValue::new("power-law")
            .aliases(["power_law", "powerlaw", "pl"])
            .help("power-law decay (MLE, sum-of-exponentials likelihood)"),
    ])
    .map(|name| name.parse().expect("a listed kernel"))
}

/// A configuration problem, said so that the user knows what to fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn bad(option: &str, value: impl std::fmt::Display, expected: &str) -> ConfigError {
    ConfigError(format!("invalid value {value} for --{option}: {expected}"))
}

impl CascadeArgs {
    /// Checks the values; returns the windows sorted.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.windows.is_empty() {
            return Err(bad(
                "windows",
                "(empty)",
                "give at least one window, e.g. 600,1200",
            ));
        }
        let mut sorted = self.windows.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.windows.len() {
            return Err(bad(
                "windows",
                format!("{:?}", self.windows),
                "each window must appear once",
            ));
        }
        if !(self.terminated.is_finite() && self.terminated > 0.0) {
            return Err(bad(
                "terminated",
                self.terminated,
                "a number of seconds > 0, e.g. 1800",
            ));
        }
        if !(self.terminated_age_ratio.is_finite() && self.terminated_age_ratio >= 0.0) {
            return Err(bad(
                "terminated-age-ratio",
                self.terminated_age_ratio,
                "a number >= 0, e.g. 1 (0: --terminated alone)",
            ));
        }
        Ok(())
    }

    /// The collector settings these options give.
    pub fn collector_config(&self) -> tweetoscope_cascade::CollectorConfig {
        let mut windows = self.windows.clone();
        windows.sort_unstable();
        tweetoscope_cascade::CollectorConfig {
            windows,
            terminated: self.terminated,
            terminated_age_ratio: self.terminated_age_ratio,
            min_cascade_size: self.min_cascade_size as usize,
            ..Default::default()
        }
    }
}

fn check_marks(alpha: f64, mu: f64, max_branching: f64) -> Result<(), ConfigError> {
    if !(alpha.is_finite() && alpha > 2.0) {
        return Err(bad(
            "mark-alpha",
            alpha,
            "the power-law exponent must be > 2 (mean marks must be finite)",
        ));
    }
    if !(mu.is_finite() && mu > 0.0) {
        return Err(bad("mark-mu", mu, "the smallest mark must be > 0"));
    }
    if !(max_branching > 0.0 && max_branching < 1.0) {
        return Err(bad(
            "max-branching",
            max_branching,
            "a branching factor strictly between 0 and 1, e.g. 0.99",
        ));
    }
    Ok(())
}

impl EstimatorArgs {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_marks(self.mark_alpha, self.mark_mu, self.max_branching)?;
        check_mark_exponent(self.mark_exponent, self.kernel)?;
        if self.fit_workers == Some(0) {
            return Err(bad("fit-workers", 0, "at least 1"));
        }
        Ok(())
    }

    /// The fit settings these options give (the mark distribution is that of the marks raised to
    /// `--mark-exponent`, see [`tweetoscope_predict::fit_marks`]).
    pub fn fit_config(&self) -> Result<FitConfig, HawkesError> {
        fit_config(
            self.mark_alpha,
            self.mark_mu,
            self.mark_exponent,
            self.max_branching,
            self.mle,
        )
    }
}

/// The fit settings of marks with exponent `alpha` above `mu`, powered by `exponent`, a branching
/// cap and MLE (else MAP with the default prior).
fn fit_config(
    alpha: f64,
    mu: f64,
    exponent: f64,
    max_branching: f64,
    mle: bool,
) -> Result<FitConfig, HawkesError> {
    Ok(FitConfig {
        marks: MarkDistribution::new(alpha, mu)?.powered(exponent)?,
        prior: if mle { None } else { Some(Prior::default()) },
        max_branching,
        ..FitConfig::default()
    })
}

impl FitMarkArgs {
    /// The fit settings of these marks, MLE or MAP.
    pub fn fit_config(&self, mle: bool) -> Result<FitConfig, HawkesError> {
        fit_config(
            self.mark_alpha,
            self.mark_mu,
            self.mark_exponent,
            self.max_branching,
            mle,
        )
    }
}

/// Checks `--mark-exponent` for a kernel.
pub fn check_mark_exponent(
    exponent: f64,
    kernel: tweetoscope_hawkes::Kernel,
) -> Result<(), ConfigError> {
    if !(exponent > 0.0 && exponent <= 1.0) {
        return Err(bad(
            "mark-exponent",
            exponent,
            "an exponent in (0, 1], e.g. 1 (linear) or 0.5",
        ));
    }
    if exponent != 1.0 && kernel == tweetoscope_hawkes::Kernel::PowerLaw {
        return Err(ConfigError(format!(
            "--mark-exponent {exponent} applies to the exponential kernel; the power-law kernel \
             fits its own mark exponent (drop --mark-exponent or use --kernel exponential)"
        )));
    }
    Ok(())
}

impl FitMarkArgs {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_marks(self.mark_alpha, self.mark_mu, self.max_branching)?;
        check_mark_exponent(self.mark_exponent, tweetoscope_hawkes::Kernel::Exponential)
    }
}

impl GeneratorArgs {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.speed_up.is_finite() && self.speed_up >= 0.0) {
            return Err(bad(
                "speed-up",
                self.speed_up,
                "a factor >= 0 (0 replays as fast as possible)",
            ));
        }
        if !(self.mean_start_delay.is_finite() && self.mean_start_delay >= 0.0) {
            return Err(bad(
                "mean-start-delay",
                self.mean_start_delay,
                "a number of seconds >= 0",
            ));
        }
        if self.data == DataSource::News && (self.news_index.is_none() || self.news_data.is_none())
        {
            return Err(ConfigError(
                "--data news needs both --news-index FILE and --news-data FILE (see README, \"Real data\")"
                    .into(),
            ));
        }
        if matches!(self.data, DataSource::Tideh | DataSource::Csv) {
            match &self.data_dir {
                None => {
                    return Err(ConfigError(format!(
                        "--data {} needs --data-dir DIR, the directory of its cascade files",
                        self.data.name()
                    )))
                }
                Some(dir) if !dir.is_dir() => {
                    return Err(bad(
                        "data-dir",
                        dir.display(),
                        "an existing directory of cascade files",
                    ))
                }
                Some(_) => {}
            }
        }
        if self.data == DataSource::Synthetic && self.cascades == 0 {
            return Err(bad("cascades", 0, "at least 1 synthetic cascade"));
        }
        Ok(())
    }

    /// The cascades the options describe.
    pub fn cascade_events(&self) -> anyhow::Result<Box<dyn Iterator<Item = CascadeEvents> + Send>> {
        match self.data {
            DataSource::Synthetic => Ok(Box::new(SyntheticCascades::new(self.synthetic_config()?))),
            DataSource::News => {
                let (Some(index), Some(data)) = (&self.news_index, &self.news_data) else {
                    anyhow::bail!("--data news needs --news-index and --news-data");
                };
                let set = NewsDataset::load(index, data)?;
                let take = if self.cascades == 0 {
                    set.len()
                } else {
                    self.cascades.min(set.len())
                };
                Ok(Box::new((0..take).map(move |i| set.cascade(i))))
            }
            DataSource::Tideh | DataSource::Csv => {
                let Some(dir) = &self.data_dir else {
                    anyhow::bail!("--data {} needs --data-dir DIR", self.data.name());
                };
                let mut set = if self.data == DataSource::Tideh {
                    tweetoscope_replay::files::tideh::read_dir(dir)?
                } else {
                    tweetoscope_replay::files::csv::read_dir(dir)?
                };
                if self.cascades > 0 {
                    set.truncate(self.cascades);
                }
                Ok(Box::new(set.into_iter()))
            }
        }
    }

    /// The synthetic source the options describe (sizes follow `--size-index` or the bundled
    /// index).
    pub fn synthetic_config(&self) -> anyhow::Result<SyntheticConfig> {
        let target_sizes = match &self.size_index {
            Some(path) => tweetoscope_replay::news::index_sizes(path)?,
            None => parse_index(BUNDLED_INDEX, "bundled news-index.csv")?
                .into_iter()
                .map(|(s, e)| e - s)
                .collect(),
        };
        Ok(SyntheticConfig {
            cascades: self.cascades,
            target_sizes,
            seed: self.seed,
            ..SyntheticConfig::default()
        })
    }

    /// The replay settings the options give.
    pub fn replay_config(&self) -> ReplayConfig {
        ReplayConfig {
            sources: self.sources as usize,
            max_live_per_source: self.max_live as usize,
            mean_start_delay: self.mean_start_delay,
            seed: self.seed,
            first_tweet_id: 1,
        }
    }
}

impl LearnerArgs {
    /// The forest settings these options give (see [`tweetoscope_predict::forest_params`]).
    pub fn forest_params(&self) -> tweetoscope_forest::ForestParams {
        tweetoscope_predict::forest_params(self.trees as usize, self.forest_seed)
    }
}

impl MonitorArgs {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.push_interval.is_finite() && self.push_interval > 0.0) {
            return Err(bad(
                "push-interval",
                self.push_interval,
                "a number of seconds > 0",
            ));
        }
        Ok(())
    }
}

impl RunArgs {
    /// Checks every stage's values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.generator.validate()?;
        self.cascade.validate()?;
        self.estimator.validate()?;
        self.monitor.validate()?;
        self.dashboard.validate()?;
        if !(self.stall_timeout.is_finite() && self.stall_timeout > 0.0) {
            return Err(bad(
                "stall-timeout",
                self.stall_timeout,
                "a number of seconds > 0",
            ));
        }
        if !(self.warm_up_speed_up.is_finite() && self.warm_up_speed_up >= 0.0) {
            return Err(bad(
                "warm-up-speed-up",
                self.warm_up_speed_up,
                "a speed-up ≥ 0 (0: no warm-up)",
            ));
        }
        Ok(())
    }
}
