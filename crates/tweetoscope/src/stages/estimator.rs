//! Estimator stage: `cascade_series` → `cascade_properties` parameters. Fits run on worker threads
//! (at most `fit_workers` at once) so the consumer loop never stalls.

use std::sync::Arc;
use std::time::Instant;

use rdkafka::Message;
use tokio::sync::Semaphore;
use tweetoscope_hawkes::{FitConfig, MarkDistribution, Prior};
use tweetoscope_messages::{
    partition_for, to_payload, CascadeParameters, CascadeProperty, CascadeSeries, KernelKind,
    Malformed,
};

use super::StageEnv;
use crate::config::EstimatorArgs;
use crate::kafka::{handler, header_text, Handled, Outgoing, WINDOW_CLOSED_HEADER};

const STAGE: &str = "estimator";

/// The fit settings the options give (the mark distribution is that of the marks raised to
/// `--mark-exponent`, see [`fit_marks`]).
pub fn fit_config(args: &EstimatorArgs) -> anyhow::Result<FitConfig> {
    Ok(FitConfig {
        marks: MarkDistribution::new(args.mark_alpha, args.mark_mu)?.powered(args.mark_exponent)?,
        prior: if args.mle {
            None
        } else {
            Some(Prior::default())
        },
        max_branching: args.max_branching,
        ..FitConfig::default()
    })
}

/// The marks a fit uses: the follower counts raised to `--mark-exponent`.
pub fn fit_marks(series: &CascadeSeries, exponent: f64) -> Vec<f64> {
    let mut marks: Vec<f64> = series.tweets.iter().map(|e| e.1).collect();
    tweetoscope_hawkes::power_marks(&mut marks, exponent);
    marks
}

/// Checks a series before fitting: it must lie inside its window.
pub fn check_series(series: &CascadeSeries) -> Result<(), Malformed> {
    let first = series.tweets[0].0;
    let last = series.tweets[series.tweets.len() - 1].0;
    if last - first >= series.t_obs as f64 {
        return Err(Malformed::new(format!(
            "`tweets` span {} s, not inside the window T_obs = {} s",
            last - first,
            series.t_obs
        )));
    }
    Ok(())
}

/// The parameters message of a fitted series.
pub fn parameters_message(
    series: &CascadeSeries,
    fit: &tweetoscope_hawkes::KernelFit,
) -> CascadeParameters {
    CascadeParameters {
        cid: series.cid.clone(),
        msg: series.msg.clone(),
        t_obs: Some(series.t_obs),
        n_obs: fit.n_obs as u64,
        n_supp: fit.g1 / (1.0 - fit.n_star),
        params: fit.params.clone(),
        kernel: match fit.kernel {
            tweetoscope_hawkes::Kernel::Exponential => KernelKind::Exponential,
            tweetoscope_hawkes::Kernel::PowerLaw => KernelKind::PowerLaw,
        },
        n_star: fit.n_star,
        g1: fit.g1,
    }
}

/// Runs the estimator until shutdown.
pub async fn run(env: StageEnv, args: EstimatorArgs) -> anyhow::Result<()> {
    let config = Arc::new(fit_config(&args)?);
    let kernel = args.kernel;
    let mark_exponent = args.mark_exponent;
    let workers = args.fit_workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    });
    let permits = Arc::new(Semaphore::new(workers));
    for reason in ["fit_error", "panic"] {
        env.metrics.fit_failures.with_label_values(&[reason]);
    }
    tracing::info!(
        workers,
        mle = args.mle,
        max_branching = args.max_branching,
        "estimator started"
    );
    let metrics = env.metrics.clone();
    let topic = env.topics.properties_topic.clone();
    let mut input = env.input(STAGE, &env.topics.series_topic);
    input.settings.max_in_flight = 4 * workers + 64;
    env.consume(input, |clients| {
        let partitions = clients.partitions_of(&topic)?;
        Ok(handler(move |message| {
            let series = match CascadeSeries::parse(message.payload().unwrap_or_default())
                .and_then(|s| check_series(&s).map(|()| s))
            {
                Ok(s) => s,
                Err(m) => return Handled::Malformed(m),
            };
            let closed = header_text(message, WINDOW_CLOSED_HEADER);
            let config = config.clone();
            let permits = permits.clone();
            let metrics = metrics.clone();
            let topic = topic.clone();
            Handled::Later(Box::pin(async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return Vec::new();
                };
                let fitted = tokio::task::spawn_blocking(move || {
                    let started = Instant::now();
                    let t0 = series.tweets[0].0;
                    let times: Vec<f64> = series.tweets.iter().map(|e| e.0 - t0).collect();
                    let marks = fit_marks(&series, mark_exponent);
                    let result =
                        tweetoscope_hawkes::fit_kernel(kernel, &times, &marks, series.t_obs as f64, &config);
                    (series, result, started.elapsed())
                })
                .await;
                match fitted {
                    Ok((series, Ok(fit), elapsed)) => {
                        metrics.fit_seconds.observe(elapsed.as_secs_f64());
                        let parameters = parameters_message(&series, &fit);
                        let mut record = Outgoing::keyed(
                            &topic,
                            series.t_obs.to_string(),
                            to_payload(&CascadeProperty::Parameters(parameters)),
                        )
                        .on_partition(partition_for(&series.cid.0, partitions));
                        if let Some(closed) = closed {
                            record = record.with_header(WINDOW_CLOSED_HEADER, closed);
                        }
                        vec![record]
                    }
                    Ok((series, Err(e), _)) => {
                        metrics.fit_failures.with_label_values(&["fit_error"]).inc();
                        tracing::warn!(cid = %series.cid, window = series.t_obs, error = %e, "fit failed");
                        Vec::new()
                    }
                    Err(e) => {
                        metrics.fit_failures.with_label_values(&["panic"]).inc();
                        tracing::error!(error = %e, "fit worker panicked");
                        Vec::new()
                    }
                }
            }))
        }))
    })
    .await
}
