//! The `tweetoscope` command.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio::sync::watch;
use tracing::Instrument;
use tweetoscope::config::{
    apply_config_file, default_metrics_port, Cli, Command, ConfigError, MetricsAddr,
};
use tweetoscope::kafka::{create_topics, KafkaSettings};
use tweetoscope::metrics::{self, Metrics, Readiness};
use tweetoscope::stages::{self, StageEnv};
use tweetoscope::telemetry::{self, STAGE_SPAN};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Err(e) = apply_config_file(&args) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse_from(&args);
    if let Command::Fit(fit) = &cli.command {
        return match tweetoscope::fit::fit_file(fit) {
            Ok(out) => {
                println!("{}", serde_json::to_string(&out).expect("serializable"));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    if let Command::Eval(eval) = &cli.command {
        let report = eval
            .validate()
            .map_err(anyhow::Error::from)
            .and_then(|()| tweetoscope::eval::evaluate(eval));
        return match report {
            Ok(report) => {
                print!("{}", report.to_text());
                if let Some(dir) = &eval.out {
                    if let Err(e) = report.write(dir) {
                        eprintln!("error: cannot write the report to {}: {e:#}", dir.display());
                        return ExitCode::from(1);
                    }
                    println!(
                        "\nreport written to {}/report.json and report.svg",
                        dir.display()
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) if e.downcast_ref::<ConfigError>().is_some() => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<ConfigError>().is_some() => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn stage_name(command: &Command) -> &'static str {
    match command {
        Command::Generator(_) => "generator",
        Command::Collector(_) => "collector",
        Command::Estimator(_) => "estimator",
        Command::Predictor(_) => "predictor",
        Command::Learner(_) => "learner",
        Command::Monitor(_) => "monitor",
        Command::Dashboard(_) => "dashboard",
        Command::Logger(_) => "logger",
        Command::Run(_) => "run",
        Command::Fit(_) => "fit",
        Command::Eval(_) => "eval",
        Command::Bench(_) => "run",
    }
}

/// Turns SIGINT/SIGTERM into the shutdown signal.
fn shutdown_on_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        #[cfg(unix)]
        let terminated = term.recv();
        #[cfg(not(unix))]
        let terminated = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminated => {}
        }
        tracing::info!("shutdown requested");
        let _ = tx.send(true);
    });
    rx
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    validate(&cli.command)?;
    let stage = stage_name(&cli.command);
    let metrics = Metrics::new();
    let mut telemetry = telemetry::init(&cli.common, stage, metrics.clone())?;
    let log_queue = telemetry.log_queue.take();
    let result = run_command(cli, stage, metrics, log_queue).await;
    telemetry.shutdown().await;
    result
}

async fn run_command(
    cli: Cli,
    stage: &'static str,
    metrics: Arc<Metrics>,
    log_queue: Option<telemetry::LogQueue>,
) -> anyhow::Result<()> {
    let readiness = Readiness::default();
    let metrics_addr = cli
        .common
        .metrics_addr
        .unwrap_or(MetricsAddr::At(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            default_metrics_port(&cli.command),
        ))));
    if let MetricsAddr::At(addr) = metrics_addr {
        let bound = metrics::serve(addr, metrics.clone(), readiness.clone())
            .await
            .map_err(|e| ConfigError(format!("cannot serve metrics on {addr}: {e} (choose another --metrics-addr, or \"off\")")))?;
        tracing::info!(%bound, "metrics at http://{bound}/metrics");
    }
    metrics::spawn_stall_watchdog(metrics.clone())
        .map_err(|e| anyhow::anyhow!("cannot start the stall watchdog thread: {e}"))?;
    if let Command::Bench(args) = &cli.command {
        readiness.set_ready();
        let report = tweetoscope::bench::bench(&cli.common, args, metrics).await?;
        if args.run.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.to_text());
        }
        return Ok(());
    }
    if let Command::Run(args) = &cli.command {
        readiness.set_ready();
        let summary = tweetoscope::run::run_pipeline(&cli.common, args, metrics, log_queue).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&summary)?);
        } else {
            print!("{}", summary.to_text());
        }
        return if summary.complete {
            Ok(())
        } else {
            Err(anyhow::anyhow!("the run ended with predictions missing"))
        };
    }
    let brokers = cli.common.brokers.clone().ok_or_else(|| {
        ConfigError(format!(
            "the {stage} stage needs Kafka: pass --brokers HOST:PORT or set TWEETOSCOPE_BROKERS (`tweetoscope run` alone uses an embedded broker)"
        ))
    })?;
    let kafka = KafkaSettings::from_common(&cli.common, brokers);
    let topics = cli.common.topics.clone();
    if !cli.common.no_create_topics {
        create_topics(
            &kafka,
            &topics.all(),
            &topics.compacted(),
            cli.common.partitions,
        )
        .await?;
    }
    let shutdown = shutdown_on_signals();
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
        metrics: Arc::clone(&metrics),
        shutdown,
    };
    readiness.set_ready();
    let span = tracing::info_span!(STAGE_SPAN, name = stage);
    let shutdown = env.shutdown.clone();
    match cli.command {
        Command::Generator(a) => {
            stages::supervise(stage, shutdown, || {
                stages::generator::run(env.clone(), a.clone())
            })
            .instrument(span)
            .await?;
        }
        Command::Collector(a) => {
            stages::supervise(stage, shutdown, || {
                stages::collector::run(env.clone(), a.cascade.clone())
            })
            .instrument(span)
            .await?
        }
        Command::Estimator(a) => {
            stages::supervise(stage, shutdown, || {
                stages::estimator::run(env.clone(), a.clone())
            })
            .instrument(span)
            .await?
        }
        Command::Predictor(a) => {
            stages::supervise(stage, shutdown, || {
                stages::predictor::run(env.clone(), a.clone())
            })
            .instrument(span)
            .await?
        }
        Command::Learner(a) => {
            stages::supervise(stage, shutdown, || {
                stages::learner::run(env.clone(), a.clone())
            })
            .instrument(span)
            .await?
        }
        Command::Monitor(a) => {
            // A restarted monitor rebuilds its board from the whole stats topic: a fresh one.
            stages::supervise(stage, shutdown, || {
                stages::monitor::run(
                    env.clone(),
                    a.clone(),
                    stages::monitor::ErrorBoard::default(),
                )
            })
            .instrument(span)
            .await?
        }
        Command::Dashboard(a) => {
            let top = stages::dashboard::TopCascades::new(a.top);
            stages::supervise(stage, shutdown, || {
                stages::dashboard::run(env.clone(), a.clone(), top.clone())
            })
            .instrument(span)
            .await?
        }
        Command::Logger(a) => {
            stages::supervise(stage, shutdown, || {
                stages::logger::run(env.clone(), a.clone())
            })
            .instrument(span)
            .await?
        }
        Command::Run(_) | Command::Fit(_) | Command::Eval(_) | Command::Bench(_) => {
            unreachable!("handled above")
        }
    }
    if let Some(shipper) = shipper {
        // The generator ends by itself: stop the shipper after a last flush.
        if !shipper.is_finished() {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            shipper.abort();
        }
    }
    Ok(())
}

fn validate(command: &Command) -> Result<(), ConfigError> {
    match command {
        Command::Generator(a) => a.validate(),
        Command::Collector(a) => a.cascade.validate(),
        Command::Estimator(a) => a.validate(),
        Command::Monitor(a) => a.validate(),
        Command::Run(a) => a.validate(),
        Command::Fit(a) => a.marks.validate(),
        Command::Eval(a) => a.validate(),
        Command::Bench(a) => a.run.validate(),
        Command::Predictor(_)
        | Command::Learner(_)
        | Command::Dashboard(_)
        | Command::Logger(_) => Ok(()),
    }
}
