//! Estimator stage: `cascade_series` → `cascade_properties` parameters. Fits run on worker threads
//! (at most `fit_workers` at once) so the consumer loop never stalls.

use std::sync::Arc;
use std::time::Instant;

use rdkafka::Message;
use tokio::sync::Semaphore;
use tweetoscope_messages::{partition_for, to_payload, CascadeProperty, CascadeSeries};
use tweetoscope_predict::{check_series, fit_marks, parameters_message};

use super::StageEnv;
use crate::config::EstimatorArgs;
use crate::events::{FitFailed, FitFailure, InternalEvent as _};
use crate::kafka::{handler, header_text, Handled, Outgoing, WINDOW_CLOSED_HEADER};

const STAGE: &str = "estimator";

/// Runs the estimator until shutdown.
pub async fn run(env: StageEnv, args: EstimatorArgs) -> anyhow::Result<()> {
    let config = Arc::new(args.fit_config()?);
    let kernel = args.kernel;
    let mark_exponent = args.mark_exponent;
    let workers = args.fit_workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    });
    let permits = Arc::new(Semaphore::new(workers));
    FitFailed::register(&env.metrics);
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
                    let result = tweetoscope_hawkes::fit_kernel(
                        kernel,
                        &times,
                        &marks,
                        series.t_obs as f64,
                        &config,
                    );
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
                        FitFailed {
                            cascade: Some((&series.cid.0, series.t_obs)),
                            failure: FitFailure::Error,
                            error: e.to_string(),
                        }
                        .emit(&metrics);
                        Vec::new()
                    }
                    Err(e) => {
                        FitFailed {
                            cascade: None,
                            failure: FitFailure::Panic,
                            error: e.to_string(),
                        }
                        .emit(&metrics);
                        Vec::new()
                    }
                }
            }))
        }))
    })
    .await
}
