//! Predictor stage: joins the `parameters` and the `size` of each (cascade, window) arriving on
//! `cascade_properties`. On parameters it predicts the final size, with the newest random forest of
//! the window when there is one, and emits an alert; once both halves are in, it emits the stat
//! (ARE) and the training sample. Models come from the `models` topic, read whole by every replica.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::message::BorrowedMessage;
use rdkafka::Message;
use tweetoscope_messages::{to_payload, CascadeProperty, ModelMessage};
use tweetoscope_predict::{parse_state_key, predict, state_key, Half, Join, Joined, ModelStore};

use super::StageEnv;
use crate::config::PredictorArgs;
use crate::events::{InternalEvent as _, ModelInUse, ModelRejected};
use crate::kafka::{
    close_consumer, header_text, now_ms, Handled, Handler, Outgoing, WINDOW_CLOSED_HEADER,
};

const STAGE: &str = "predictor";

/// Keeps `store` up to date from the models topic until shutdown.
async fn follow_models(env: StageEnv, store: Arc<RwLock<ModelStore>>) -> anyhow::Result<()> {
    let consumer =
        tokio::task::block_in_place(|| env.kafka.broadcast_consumer(&env.topics.models_topic))?;
    let mut shutdown = env.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            received = consumer.recv() => match received {
                Ok(message) => {
                    let parsed = ModelMessage::parse(message.payload().unwrap_or_default());
                    let installed = parsed.map_err(|m| m.reason).and_then(|m| {
                        store.write().expect("model store lock").install(&m).map(|()| m)
                    });
                    match installed {
                        Ok(m) => ModelInUse {
                            window: m.t_obs,
                            version: m.version,
                            samples: m.n_samples,
                        }
                        .emit(&env.metrics),
                        Err(reason) => ModelRejected {
                            stage: STAGE,
                            topic: &env.topics.models_topic,
                            offset: message.offset(),
                            reason: &reason,
                        }
                        .emit(&env.metrics),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "models consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    close_consumer(consumer).await;
    Ok(())
}

/// The predictor wired to Kafka: join table backed by the changelog topic.
#[derive(Debug)]
pub struct PredictorHandler {
    join: Join,
    store: Arc<RwLock<ModelStore>>,
    metrics: Arc<crate::metrics::Metrics>,
    topics: crate::config::TopicArgs,
    kafka: crate::kafka::KafkaSettings,
}

impl Handler for PredictorHandler {
    fn handle(&mut self, message: &BorrowedMessage<'_>) -> Handled {
        let (window, property) =
            match CascadeProperty::parse(message.key(), message.payload().unwrap_or_default()) {
                Ok(p) => p,
                Err(m) => return Handled::Malformed(m),
            };
        let partition = message.partition();
        let topics = &self.topics;
        let mut records = Vec::new();
        let half = match &property {
            CascadeProperty::Parameters(p) => {
                let predicted = predict(window, p, &self.store.read().expect("model store lock"));
                let (alert, prediction) = match predicted {
                    Ok(x) => x,
                    Err(m) => return Handled::Malformed(m),
                };
                self.metrics
                    .predictions
                    .with_label_values(&[&window.to_string()])
                    .inc();
                let mut record = Outgoing::keyed(
                    &topics.alerts_topic,
                    alert.cid.0.clone(),
                    to_payload(&alert),
                );
                let closed =
                    header_text(message, WINDOW_CLOSED_HEADER).and_then(|c| c.parse::<u64>().ok());
                if let Some(closed) = closed {
                    let latency = now_ms().saturating_sub(closed) as f64 / 1000.0;
                    self.metrics.prediction_latency.observe(latency);
                    self.metrics.latencies.record(latency);
                    record = record.with_header(WINDOW_CLOSED_HEADER, closed.to_string());
                }
                records.push(record);
                Half::Predicted(prediction)
            }
            CascadeProperty::Size(s) => Half::Size(s.n_tot),
        };
        let cid = property.cid();
        let step = self.join.add(cid, window, partition, half.clone());
        let key = state_key(cid, window);
        if step.stored {
            let value = serde_json::to_vec(&half).expect("serializable");
            records.push(
                Outgoing::keyed(&topics.predictor_state_topic, key, value).on_partition(partition),
            );
        } else {
            records.push(
                Outgoing::tombstone(&topics.predictor_state_topic, key).on_partition(partition),
            );
        }
        if !step.evicted.is_empty() {
            self.metrics
                .join_evictions
                .inc_by(step.evicted.len() as u64);
            tracing::warn!(
                evicted = step.evicted.len(),
                "join table full: oldest half entries dropped"
            );
            for (cid, w, p) in &step.evicted {
                records.push(
                    Outgoing::tombstone(&topics.predictor_state_topic, state_key(cid, *w))
                        .on_partition(*p),
                );
            }
        }
        self.metrics.join_pending.set(self.join.pending() as i64);
        if let Some(Joined { stat, sample }) = step.joined {
            if let Some(growth) = sample.growth() {
                self.store
                    .write()
                    .expect("model store lock")
                    .observe_growth(window, growth);
            }
            self.metrics
                .are
                .with_label_values(&[&window.to_string()])
                .observe(stat.are);
            records.push(Outgoing::keyed(
                &topics.stats_topic,
                stat.cid.0.clone(),
                to_payload(&stat),
            ));
            // Samples keyed by window: one learner replica owns all samples of a window.
            records.push(Outgoing::keyed(
                &topics.samples_topic,
                window.to_string(),
                to_payload(&sample),
            ));
        }
        Handled::Now(records)
    }

    fn resume(
        &mut self,
        _topic: &str,
        partition: i32,
        _committed: Option<(i64, &str)>,
    ) -> anyhow::Result<()> {
        let records = self
            .kafka
            .read_partition(&self.topics.predictor_state_topic, partition)?;
        let count = records.len();
        for (key, value) in records {
            let Some((cid, window)) = key
                .as_deref()
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(parse_state_key)
            else {
                continue;
            };
            let half = match value {
                Some(v) => match serde_json::from_slice::<Half>(&v) {
                    Ok(h) => Some(h),
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable changelog entry skipped");
                        continue;
                    }
                },
                None => None,
            };
            self.join.restore(cid, window, partition, half);
        }
        self.metrics.join_pending.set(self.join.pending() as i64);
        tracing::info!(
            partition,
            changelog_records = count,
            pending = self.join.pending(),
            "join state restored"
        );
        Ok(())
    }

    fn revoke(&mut self, _topic: &str, partition: i32) {
        self.join.revoke(partition);
        self.metrics.join_pending.set(self.join.pending() as i64);
    }
}

/// Runs the predictor until shutdown.
pub async fn run(env: StageEnv, args: PredictorArgs) -> anyhow::Result<()> {
    let store = Arc::new(RwLock::new(ModelStore::default()));
    let (helper_env, stop_helpers) = env.for_helpers();
    let models_task = tokio::spawn(follow_models(helper_env, store.clone()));
    tracing::info!(max_pending = args.max_pending, "predictor started");
    let handler = PredictorHandler {
        join: Join::new(args.max_pending as usize),
        store,
        metrics: env.metrics.clone(),
        topics: env.topics.clone(),
        kafka: env.kafka.clone(),
    };
    let input = env.input(STAGE, &env.topics.properties_topic);
    let result = env.consume(input, |_| Ok(handler)).await;
    stop_helpers.stop();
    let _ = models_task.await;
    result
}
