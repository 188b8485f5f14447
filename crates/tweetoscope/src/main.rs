//! The `tweetoscope` command.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::watch;
use tweetoscope::admin_server::{self, Readiness};
use tweetoscope::cli::Command;
use tweetoscope::config::{ConfigError, MetricsAddr};
use tweetoscope::kafka::KafkaSettings;
use tweetoscope::metrics::Metrics;
use tweetoscope::stages::StageEnv;
use tweetoscope::telemetry;

fn main() -> ExitCode {
    let cli = match tweetoscope::cli::parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => return e.report(),
    };
    if let Err(e) = cli.command.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    match cli.command {
        Command::Completions(c) => {
            use std::io::Write as _;
            let script = tweetoscope::cli::completions(c.shell);
            match std::io::stdout().lock().write_all(&script) {
                // A reader that stops early (`| head`) is not an error.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("error: cannot write the completion script: {e}");
                    ExitCode::from(1)
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Command::Fit(c) => offline(&c.logs, "fit", || {
            let out = tweetoscope::fit::fit_file(&c.args)?;
            println!("{}", serde_json::to_string(&out)?);
            Ok(())
        }),
        Command::Eval(c) => offline(&c.logs, "eval", || {
            let eval = &c.args;
            let report = tweetoscope::eval::evaluate(eval)?;
            print!("{}", report.to_text());
            if let Some(dir) = &eval.out {
                report.write(dir).map_err(|e| {
                    anyhow::anyhow!("cannot write the report to {}: {e:#}", dir.display())
                })?;
                println!(
                    "\nreport written to {}/report.json, report.svg and model-<T_obs>.json",
                    dir.display()
                );
            }
            Ok(())
        }),
        command => {
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
            exit_code(runtime.block_on(run(command)))
        }
    }
}

/// Runs an offline command (no Kafka, no HTTP endpoint) with console logs.
fn offline(
    logs: &tweetoscope::config::LogArgs,
    name: &'static str,
    work: impl FnOnce() -> anyhow::Result<()>,
) -> ExitCode {
    if let Err(e) = telemetry::init_console(logs, name) {
        return exit_code(Err(e));
    }
    exit_code(work())
}

/// Exit code 2 for a configuration problem, 1 for any other failure.
fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
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

async fn run(command: Command) -> anyhow::Result<()> {
    let name = command.name();
    let (_, telemetry_args) = command
        .kafka()
        .expect("offline commands are handled before");
    let metrics = Metrics::new();
    let mut telemetry = telemetry::init(telemetry_args, name, metrics.clone())?;
    let log_queue = telemetry.log_queue.take();
    let result = run_command(command, name, metrics, log_queue).await;
    telemetry.shutdown().await;
    result
}

async fn run_command(
    command: Command,
    name: &'static str,
    metrics: Arc<Metrics>,
    log_queue: Option<telemetry::LogQueue>,
) -> anyhow::Result<()> {
    let readiness = Readiness::default();
    let (kafka_args, telemetry_args) = command
        .kafka()
        .expect("offline commands are handled before");
    let (kafka_args, telemetry_args) = (kafka_args.clone(), telemetry_args.clone());
    let metrics_addr = telemetry_args
        .metrics_addr
        .unwrap_or(MetricsAddr::At(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            command.metrics_port().unwrap_or(0),
        ))));
    if let MetricsAddr::At(addr) = metrics_addr {
        let bound = admin_server::serve(addr, metrics.clone(), readiness.clone())
            .await
            .map_err(|e| ConfigError(format!("cannot serve metrics on {addr}: {e} (choose another --metrics-addr, or \"off\")")))?;
        tracing::info!(%bound, "metrics at http://{bound}/metrics");
    }
    admin_server::spawn_stall_watchdog(metrics.clone())
        .map_err(|e| anyhow::anyhow!("cannot start the stall watchdog thread: {e}"))?;
    if let Command::Bench(c) = &command {
        readiness.set_ready();
        let report = tweetoscope::bench::bench(&c.kafka, &c.args, metrics).await?;
        if c.args.run.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.to_text());
        }
        return Ok(());
    }
    if let Command::Run(c) = &command {
        readiness.set_ready();
        let summary = tweetoscope::run::run_pipeline(&c.kafka, &c.args, metrics, log_queue).await?;
        if c.args.json {
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
    let brokers = kafka_args.brokers.clone().ok_or_else(|| {
        ConfigError(format!(
            "the {name} stage needs Kafka: pass --brokers HOST:PORT or set TWEETOSCOPE_BROKERS (`tweetoscope run` alone uses an embedded broker)"
        ))
    })?;
    let stage = command
        .stage()
        .expect("every other command is handled above");
    let (env, shipper) = StageEnv::connect(
        KafkaSettings::new(&kafka_args, brokers)?,
        &kafka_args,
        true,
        Arc::clone(&metrics),
        shutdown_on_signals(),
        log_queue,
    )
    .await?;
    readiness.set_ready();
    stage.supervise(env).await?;
    if let Some(shipper) = shipper {
        // The generator ends by itself: stop the shipper after a last flush.
        if !shipper.is_finished() {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            shipper.abort();
        }
    }
    Ok(())
}
