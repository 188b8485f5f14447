//! The command tree: [`Cli`], its [`Command`]s, and the configuration file layered under them.
//!
//! Every option is a flag with an environment fallback `TWEETOSCOPE_<NAME>`; a TOML file given by
//! `--config FILE` (or `TWEETOSCOPE_CONFIG`) supplies values for options that neither a flag nor
//! the environment set. Its keys are exactly the long option names; its values become the
//! options' defaults before the command line is parsed, so the precedence is flag > environment
//! > file > built-in default, and a bad value is refused by the option's own parser.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::bench::BenchArgs;
use crate::config::{
    CollectorArgs, ConfigError, DashboardArgs, EstimatorArgs, FitArgs, GeneratorArgs, KafkaArgs,
    LearnerArgs, LogArgs, LoggerArgs, MonitorArgs, PredictorArgs, RunArgs, TelemetryArgs,
};
use crate::eval::EvalArgs;
use crate::stages::dashboard::TopCascades;
use crate::stages::monitor::ErrorBoard;
use crate::stages::Stage;

/// Tweetoscope: predicts how popular a tweet will be from the first minutes of its retweets.
#[derive(Debug, Parser)]
#[command(name = "tweetoscope", version, about, long_about = None)]
pub struct Cli {
    /// TOML configuration file; its keys are the long option names (e.g. `terminated = 1800`).
    #[arg(long, global = true, env = "TWEETOSCOPE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// A command that talks to Kafka and runs for a while: its own options `A`, Kafka and telemetry.
#[derive(Debug, Clone, Args)]
pub struct KafkaCommand<A: Args> {
    /// The command's own options.
    #[command(flatten)]
    pub args: A,
    /// How to reach Kafka.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Logs, Loki, the log topic, the HTTP endpoint.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// A command that works offline on files: its own options `A` and console logs.
#[derive(Debug, Clone, Args)]
pub struct OfflineCommand<A: Args> {
    /// The command's own options.
    #[command(flatten)]
    pub args: A,
    /// Console logs.
    #[command(flatten)]
    pub logs: LogArgs,
}

/// Options of `completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay cascades (NEWS, TiDeH, CSV files or synthetic Hawkes) onto the tweets topic.
    Generator(KafkaCommand<GeneratorArgs>),
    /// Group tweets into cascades; emit partial series per window and final sizes.
    Collector(KafkaCommand<CollectorArgs>),
    /// Fit a marked Hawkes process to each partial cascade.
    Estimator(KafkaCommand<EstimatorArgs>),
    /// Join parameters and sizes: predictions, alerts, errors (stats) and training samples.
    Predictor(KafkaCommand<PredictorArgs>),
    /// Train one random forest per window from the samples; publish the models.
    Learner(KafkaCommand<LearnerArgs>),
    /// Push prediction errors per window to a Prometheus Pushgateway.
    Monitor(KafkaCommand<MonitorArgs>),
    /// Post alerts for cascades predicted to be popular to Alertmanager.
    Dashboard(KafkaCommand<DashboardArgs>),
    /// Show the structured logs of every stage.
    Logger(KafkaCommand<LoggerArgs>),
    /// Run every stage in this process (on an embedded broker unless --brokers is given).
    Run(Box<KafkaCommand<RunArgs>>),
    /// Throughput benchmark: a large seeded replay through every stage, with figures.
    Bench(Box<KafkaCommand<BenchArgs>>),
    /// Fit one cascade from a CSV file with columns `t,m` and print the fit as JSON.
    Fit(OfflineCommand<FitArgs>),
    /// Evaluate the predictions offline over a data set (no broker): ARE per window and method.
    Eval(Box<OfflineCommand<EvalArgs>>),
    /// Print a shell completion script on stdout (e.g. `tweetoscope completions bash`).
    Completions(CompletionsArgs),
}

impl Command {
    /// The command's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Generator(_) => "generator",
            Command::Collector(_) => "collector",
            Command::Estimator(_) => "estimator",
            Command::Predictor(_) => "predictor",
            Command::Learner(_) => "learner",
            Command::Monitor(_) => "monitor",
            Command::Dashboard(_) => "dashboard",
            Command::Logger(_) => "logger",
            Command::Run(_) => "run",
            Command::Bench(_) => "bench",
            Command::Fit(_) => "fit",
            Command::Eval(_) => "eval",
            Command::Completions(_) => "completions",
        }
    }

    /// Port of the HTTP endpoint when `--metrics-addr` is not given; `None` for the commands
    /// that serve none.
    pub fn metrics_port(&self) -> Option<u16> {
        match self {
            Command::Run(_) | Command::Bench(_) => Some(9100),
            Command::Generator(_) => Some(9101),
            Command::Collector(_) => Some(9102),
            Command::Estimator(_) => Some(9103),
            Command::Predictor(_) => Some(9104),
            Command::Learner(_) => Some(9105),
            Command::Monitor(_) => Some(9106),
            Command::Dashboard(_) => Some(9107),
            Command::Logger(_) => Some(9108),
            Command::Fit(_) | Command::Eval(_) | Command::Completions(_) => None,
        }
    }

    /// Checks the values that clap cannot check alone (ranges across options, files).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some((kafka, _)) = self.kafka() {
            // Option files are read now, so that a missing secret fails at start.
            crate::kafka::client::check_client_options(&kafka.client_options()?)?;
        }
        match self {
            Command::Generator(c) => c.args.validate(),
            Command::Collector(c) => c.args.cascade.validate(),
            Command::Estimator(c) => c.args.validate(),
            Command::Monitor(c) => c.args.validate(),
            Command::Dashboard(c) => c.args.validate(),
            Command::Run(c) => c.args.validate(),
            Command::Bench(c) => c.args.run.validate(),
            Command::Fit(c) => c.args.marks.validate(),
            Command::Eval(c) => c.args.validate(),
            Command::Predictor(_)
            | Command::Learner(_)
            | Command::Logger(_)
            | Command::Completions(_) => Ok(()),
        }
    }

    /// The stage this command runs, for the one-stage commands.
    pub fn stage(&self) -> Option<Stage> {
        Some(match self {
            Command::Generator(c) => Stage::Generator(c.args.clone()),
            Command::Collector(c) => Stage::Collector(c.args.cascade.clone()),
            Command::Estimator(c) => Stage::Estimator(c.args.clone()),
            Command::Predictor(c) => Stage::Predictor(c.args.clone()),
            Command::Learner(c) => Stage::Learner(c.args.clone()),
            Command::Monitor(c) => Stage::Monitor(
                c.args.clone(),
                ErrorBoard::new(c.args.error_window as usize),
            ),
            Command::Dashboard(c) => Stage::Dashboard(c.args.clone(), TopCascades::new(c.args.top)),
            Command::Logger(c) => Stage::Logger(c.args.clone()),
            Command::Run(_)
            | Command::Bench(_)
            | Command::Fit(_)
            | Command::Eval(_)
            | Command::Completions(_) => return None,
        })
    }

    /// Kafka and telemetry options, for the commands that have them.
    pub fn kafka(&self) -> Option<(&KafkaArgs, &TelemetryArgs)> {
        fn of<A: Args>(c: &KafkaCommand<A>) -> Option<(&KafkaArgs, &TelemetryArgs)> {
            Some((&c.kafka, &c.telemetry))
        }
        match self {
            Command::Generator(c) => of(c),
            Command::Collector(c) => of(c),
            Command::Estimator(c) => of(c),
            Command::Predictor(c) => of(c),
            Command::Learner(c) => of(c),
            Command::Monitor(c) => of(c),
            Command::Dashboard(c) => of(c),
            Command::Logger(c) => of(c),
            Command::Run(c) => of(c),
            Command::Bench(c) => of(c),
            Command::Fit(_) | Command::Eval(_) | Command::Completions(_) => None,
        }
    }
}

/// What stopped the parse: a configuration problem (exit code 2, our message), or clap's own
/// outcome (help, version, or a bad flag; clap prints it and picks the exit code).
#[derive(Debug)]
pub enum ParseError {
    /// The configuration file is missing, unreadable, not TOML, or has an unknown key.
    Config(ConfigError),
    /// Help, version or a bad command line.
    Clap(clap::Error),
}

impl ParseError {
    /// Prints the error and gives the process's exit code.
    pub fn report(self) -> std::process::ExitCode {
        match self {
            ParseError::Config(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::from(2)
            }
            ParseError::Clap(e) => {
                let _ = e.print();
                std::process::ExitCode::from(e.exit_code().clamp(0, 255) as u8)
            }
        }
    }
}

/// Parses the command line, with the configuration file (if `--config` or `TWEETOSCOPE_CONFIG`
/// names one) as defaults.
pub fn parse<I, T>(args: I) -> Result<Cli, ParseError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut command = Cli::command();
    if let Some(path) = config_path(&args) {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ParseError::Config(ConfigError(format!(
                "cannot read the config file {}: {e}",
                path.display()
            )))
        })?;
        let values = config_file_values(&command, &text, &path).map_err(ParseError::Config)?;
        command = with_defaults(command, &values);
    }
    let mut matches = command
        .try_get_matches_from(args)
        .map_err(ParseError::Clap)?;
    Cli::from_arg_matches_mut(&mut matches).map_err(ParseError::Clap)
}

/// The file named by `--config FILE`, `--config=FILE` or `TWEETOSCOPE_CONFIG`.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    args.iter()
        .position(|a| *a == "--config")
        .and_then(|i| args.get(i + 1).map(|s| (*s).to_owned()))
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--config=").map(str::to_owned))
        })
        .or_else(|| std::env::var("TWEETOSCOPE_CONFIG").ok())
        .map(PathBuf::from)
}

/// Long names of every option of the command tree but `config`, `help` and `version`.
pub fn option_names(command: &clap::Command) -> Vec<String> {
    fn walk(command: &clap::Command, out: &mut Vec<String>) {
        for arg in command.get_arguments() {
            if let Some(long) = arg.get_long() {
                if !matches!(long, "config" | "help" | "version") {
                    out.push(long.to_owned());
                }
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut names = Vec::new();
    walk(command, &mut names);
    names.sort();
    names.dedup();
    names
}

/// The `(option, value)` pairs a configuration file sets, values as they would be typed (lists
/// joined by commas). Unknown keys, and values that are not scalars or lists of scalars, are
/// errors naming the key.
pub fn config_file_values(
    command: &clap::Command,
    text: &str,
    path: &Path,
) -> Result<Vec<(String, String)>, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e| ConfigError(format!("{} is not valid TOML: {e}", path.display())))?;
    let known = option_names(command);
    let mut values = Vec::new();
    for (key, value) in table {
        if !known.contains(&key) {
            return Err(ConfigError(format!(
                "{}: unknown key `{key}`; known keys: {}",
                path.display(),
                known.join(", ")
            )));
        }
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        };
        let text = match &value {
            toml::Value::Array(items) => items
                .iter()
                .map(scalar)
                .collect::<Option<Vec<_>>>()
                .map(|v| v.join(",")),
            v => scalar(v),
        }
        .ok_or_else(|| {
            ConfigError(format!(
                "{}: key `{key}` must be a string, number, boolean or list of them",
                path.display()
            ))
        })?;
        values.push((key, text));
    }
    Ok(values)
}

/// The command tree with `values` as the defaults of the options of those long names, in every
/// command that has them.
pub fn with_defaults(mut command: clap::Command, values: &[(String, String)]) -> clap::Command {
    let set: Vec<(clap::Id, String)> = command
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            let (_, value) = values.iter().find(|(key, _)| key == long)?;
            Some((arg.get_id().clone(), value.clone()))
        })
        .collect();
    for (id, value) in set {
        command = command.mut_arg(id, |arg| arg.default_value(value));
    }
    let subcommands: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in subcommands {
        command = command.mut_subcommand(name, |sub| with_defaults(sub, values));
    }
    command
}

/// The completion script of `shell`.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "tweetoscope", &mut script);
    script
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::parser::ValueSource;

    /// Positional arguments a subcommand needs to parse at all.
    fn positionals(subcommand: &str) -> &'static [&'static str] {
        match subcommand {
            "fit" => &["cascade.csv"],
            "completions" => &["bash"],
            _ => &[],
        }
    }

    /// Parses `tweetoscope <subcommand>` with `values` as file defaults: the parsed options, and
    /// the raw values and source of option `long`.
    fn parse_sub(
        values: &[(String, String)],
        subcommand: &str,
        long: &str,
    ) -> Result<(Cli, Vec<String>, Option<ValueSource>), clap::Error> {
        let command = with_defaults(Cli::command(), values);
        let mut argv = vec!["tweetoscope", subcommand];
        argv.extend(positionals(subcommand));
        let mut matches = command.try_get_matches_from(argv)?;
        let (raw, source) = {
            let sub = matches
                .subcommand_matches(subcommand)
                .expect("the subcommand");
            let id = Cli::command()
                .find_subcommand(subcommand)
                .and_then(|s| {
                    s.get_arguments()
                        .find(|a| a.get_long() == Some(long))
                        .map(|a| a.get_id().to_string())
                })
                .expect("the option");
            let raw = sub
                .get_raw(&id)
                .map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            (raw, sub.value_source(&id))
        };
        let cli = Cli::from_arg_matches_mut(&mut matches)?;
        Ok((cli, raw, source))
    }

    #[test]
    fn every_option_can_be_set_from_the_config_file_under_its_long_name() {
        let candidates = [
            "7",
            "1500",
            "0.5",
            "true",
            "127.0.0.1:9",
            "http://127.0.0.1:9/",
            "power-law",
            "json",
            "lower-bound",
            "warn",
            "news",
            "a-name",
            "client.rack=rack-1",
        ];
        let tree = Cli::command();
        let names = option_names(&tree);
        assert!(names.len() > 60, "{} options", names.len());
        let mut checked = 0;
        for sub in tree.get_subcommands() {
            for arg in sub.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if matches!(long, "config" | "help" | "version") {
                    continue;
                }
                if arg
                    .get_env()
                    .is_some_and(|env| std::env::var_os(env).is_some())
                {
                    continue; // the environment wins over the file, as it should
                }
                let default: Vec<String> = arg
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect();
                let set = candidates.iter().find_map(|value| {
                    if default == [value.to_string()] {
                        return None;
                    }
                    let values = vec![(long.to_owned(), value.to_string())];
                    let (_, raw, source) = parse_sub(&values, sub.get_name(), long).ok()?;
                    Some((value, raw, source))
                });
                let Some((value, raw, source)) = set else {
                    panic!(
                        "no candidate value parses for --{long} of `{}`: add one",
                        sub.get_name()
                    )
                };
                assert_eq!(raw, [value.to_string()], "--{long} of {}", sub.get_name());
                assert_eq!(source, Some(ValueSource::DefaultValue), "--{long}");
                checked += 1;
            }
        }
        assert!(checked > 200, "{checked} (command, option) pairs");
    }

    #[test]
    fn file_values_reach_the_typed_options_and_flags_win() {
        let path = Path::new("test.toml");
        let text = "json = true\nno-transactions = true\nwindows = [300, 900]\n\
                    kernel = \"power-law\"\ntrees = 7\nmle = true\n";
        let values = config_file_values(&Cli::command(), text, path).expect("known keys");
        let command = with_defaults(Cli::command(), &values);
        let run = command
            .clone()
            .try_get_matches_from(["tweetoscope", "run", "--windows", "60"])
            .expect("parses");
        let cli = Cli::from_arg_matches(&run).expect("typed");
        let Command::Run(run) = cli.command else {
            panic!("run")
        };
        assert!(run.args.json && run.kafka.no_transactions);
        assert_eq!(
            run.args.cascade.windows,
            [60],
            "the flag wins over the file"
        );
        assert_eq!(
            run.args.estimator.kernel,
            tweetoscope_hawkes::Kernel::PowerLaw
        );
        assert_eq!(run.args.learner.trees, 7);
        let eval = command
            .clone()
            .try_get_matches_from(["tweetoscope", "eval"])
            .expect("parses");
        let Command::Eval(eval) = Cli::from_arg_matches(&eval).expect("typed").command else {
            panic!("eval")
        };
        assert_eq!(eval.args.trees, 7);
        assert_eq!(eval.args.cascade.windows, [300, 900]);
        let fit = command
            .try_get_matches_from(["tweetoscope", "fit", "x.csv"])
            .expect("parses");
        let Command::Fit(fit) = Cli::from_arg_matches(&fit).expect("typed").command else {
            panic!("fit")
        };
        assert!(fit.args.mle);
    }

    #[test]
    fn unknown_keys_and_nested_tables_are_refused_with_the_key() {
        let path = Path::new("bad.toml");
        let err = config_file_values(&Cli::command(), "terminatd = 1\n", path).unwrap_err();
        assert!(err.0.contains("unknown key `terminatd`") && err.0.contains("terminated"));
        let err = config_file_values(&Cli::command(), "config = \"x\"\n", path).unwrap_err();
        assert!(err.0.contains("unknown key `config`"), "{}", err.0);
        let err = config_file_values(&Cli::command(), "[windows]\na = 1\n", path).unwrap_err();
        assert!(err.0.contains("key `windows` must be"), "{}", err.0);
    }

    #[test]
    fn offline_commands_take_no_kafka_option() {
        for (sub, extra) in [("fit", &["x.csv"][..]), ("eval", &[][..])] {
            for flag in ["--brokers", "--partitions", "--metrics-addr", "--loki-url"] {
                let mut argv = vec!["tweetoscope", sub];
                argv.extend(extra);
                argv.extend([flag, "1"]);
                assert!(Cli::try_parse_from(&argv).is_err(), "{argv:?} accepted");
            }
            let mut argv = vec!["tweetoscope", sub];
            argv.extend(extra);
            argv.extend(["--log", "debug"]);
            assert!(Cli::try_parse_from(&argv).is_ok(), "{argv:?} refused");
        }
        assert!(Cli::try_parse_from(["tweetoscope", "collector", "--brokers", "b:9092"]).is_ok());
    }

    #[test]
    fn the_replication_factor_is_a_flag_that_reaches_the_kafka_settings() {
        let cli = Cli::try_parse_from(["tweetoscope", "collector", "--replication", "3"])
            .expect("parses");
        let (kafka, _) = cli.command.kafka().expect("a Kafka command");
        assert_eq!(
            crate::kafka::KafkaSettings::new(kafka, "b:9092".into())
                .expect("no option files")
                .replication,
            3
        );
        let cli = Cli::try_parse_from(["tweetoscope", "run"]).expect("parses");
        assert_eq!(cli.command.kafka().expect("Kafka").0.replication, 1);
        assert!(Cli::try_parse_from(["tweetoscope", "run", "--replication", "0"]).is_err());
    }

    #[test]
    fn every_long_running_command_has_a_distinct_metrics_port() {
        let mut ports = Vec::new();
        for sub in Cli::command().get_subcommands() {
            let mut argv = vec!["tweetoscope", sub.get_name()];
            argv.extend(positionals(sub.get_name()));
            let cli = Cli::try_parse_from(argv).expect("defaults parse");
            assert_eq!(cli.command.name(), sub.get_name());
            assert_eq!(
                cli.command.metrics_port().is_some(),
                cli.command.kafka().is_some()
            );
            if let Some(port) = cli.command.metrics_port() {
                ports.push(port);
            }
            if let Some(stage) = cli.command.stage() {
                assert_eq!(stage.name(), cli.command.name(), "one name per stage");
            }
        }
        let n = ports.len();
        ports.sort_unstable();
        ports.dedup();
        // `run` and `bench` share 9100: they never run beside each other.
        assert_eq!(ports.len(), n - 1, "{ports:?}");
        let cli = Cli::try_parse_from(["tweetoscope", "run"]).expect("defaults");
        let Command::Run(run) = cli.command else {
            panic!("run")
        };
        let board = ErrorBoard::default();
        let top = TopCascades::new(3);
        let names: Vec<&str> = Stage::pipeline(&run.args, &board, &top)
            .iter()
            .map(Stage::name)
            .collect();
        assert_eq!(
            names,
            [
                "collector",
                "estimator",
                "predictor",
                "learner",
                "monitor",
                "dashboard"
            ]
        );
    }

    #[test]
    fn kafka_options_come_from_flags_environment_lists_and_files() {
        let dir =
            std::env::temp_dir().join(format!("tweetoscope-kafka-option-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let secret = dir.join("password");
        std::fs::write(&secret, "s3cret=,x\n").expect("secret file");
        let file_option = format!("sasl.password={}", secret.display());
        let cli = Cli::try_parse_from([
            "tweetoscope",
            "collector",
            "--kafka-option",
            "security.protocol=SASL_PLAINTEXT",
            "--kafka-option",
            "sasl.mechanism=PLAIN,client.rack=r1,sasl.username=tweetoscope",
            "--kafka-option-file",
            &file_option,
        ])
        .expect("parses");
        cli.command.validate().expect("the file is readable");
        let (kafka, _) = cli.command.kafka().expect("a Kafka command");
        let settings = crate::kafka::KafkaSettings::new(kafka, "b:9092".into()).expect("settings");
        assert_eq!(
            settings.client_options,
            [
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", "PLAIN"),
                ("client.rack", "r1"),
                ("sasl.username", "tweetoscope"),
                ("sasl.password", "s3cret=,x"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn bad_kafka_options_fail_at_start_naming_what_to_fix() {
        let err = Cli::try_parse_from(["tweetoscope", "collector", "--kafka-option", "linger.ms"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not KEY=VALUE"), "{err}");
        let err = Cli::try_parse_from([
            "tweetoscope",
            "collector",
            "--kafka-option",
            "transactional.id=mine",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`transactional.id` is set by Tweetoscope"),
            "{err}"
        );
        let err = Cli::try_parse_from(["tweetoscope", "collector", "--kafka-option", "group.id=g"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--group-prefix"), "{err}");
        let cli = Cli::try_parse_from([
            "tweetoscope",
            "collector",
            "--kafka-option",
            "no.such.property=1",
        ])
        .expect("parses");
        let err = cli.command.validate().unwrap_err().to_string();
        assert!(
            err.contains("librdkafka refuses") && err.contains("no.such.property"),
            "{err}"
        );
        let cli = Cli::try_parse_from([
            "tweetoscope",
            "collector",
            "--kafka-option-file",
            "sasl.password=/nonexistent/tweetoscope-secret",
        ])
        .expect("parses");
        let err = cli.command.validate().unwrap_err().to_string();
        assert!(
            err.contains("--kafka-option-file sasl.password=/nonexistent/tweetoscope-secret")
                && err.contains("cannot read the file"),
            "{err}"
        );
    }
}
