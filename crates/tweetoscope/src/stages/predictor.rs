//! Predictor stage: joins the `parameters` and the `size` of each (cascade, window) arriving on
//! `cascade_properties`. On parameters it predicts the final size, with the newest random forest of
//! the window when there is one, and emits an alert; once both halves are in, it emits the stat
//! (ARE) and the training sample. Models come from the `models` topic, read whole by every replica.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;
use tweetoscope_forest::RandomForest;
use tweetoscope_messages::{
    to_payload, Alert, AlertTag, CascadeId, CascadeParameters, CascadeProperty, Malformed,
    ModelMessage, ModelTarget, Sample, Stat, StatTag, SERVED_FEATURES,
};

use super::StageEnv;
use crate::config::PredictorArgs;
use crate::kafka::{
    close_consumer, header_text, now_ms, process, Handled, Handler, Outgoing, Sink,
    WINDOW_CLOSED_HEADER,
};

const STAGE: &str = "predictor";

/// The newest forest of each window, with its version.
#[derive(Default)]
pub struct ModelStore {
    models: HashMap<u64, (u64, ModelTarget, RandomForest)>,
}

impl ModelStore {
    /// Installs a model; refuses one whose feature list is not [`SERVED_FEATURES`] or whose
    /// blob is not a forest over them.
    pub fn install(&mut self, message: &ModelMessage) -> Result<(), String> {
        if message.features != SERVED_FEATURES {
            return Err(format!(
                "model of window {} version {} uses features {:?}, but this predictor computes \
                 {:?}: retrain it with a learner of the same version",
                message.t_obs, message.version, message.features, SERVED_FEATURES
            ));
        }
        let forest: RandomForest =
            serde_json::from_value(message.forest.clone()).map_err(|e| e.to_string())?;
        if forest.n_features() != 3 {
            return Err(format!(
                "forest has {} features, expected 3",
                forest.n_features()
            ));
        }
        self.models
            .insert(message.t_obs, (message.version, message.target, forest));
        Ok(())
    }

    /// The correction ω for these features, the version used (1 and 0 without a model) and
    /// ω's [`tweetoscope_messages::PREDICTION_INTERVAL_COVERAGE`] interval, when the model
    /// holds its out-of-bag residuals and learns ln ω.
    pub fn omega(&self, window: u64, features: [f64; 3]) -> Correction {
        let none = Correction {
            omega: 1.0,
            model_version: 0,
            interval: None,
        };
        let Some((version, target, forest)) = self.models.get(&window) else {
            return none;
        };
        let corrected = match target {
            ModelTarget::Omega => forest
                .try_predict_one(&features)
                .map(|y| (y.max(0.0), None)),
            ModelTarget::LnOmega => tweetoscope_predict::omega_with_interval(forest, &features),
        };
        match corrected {
            Ok((w, interval)) if w.is_finite() => Correction {
                omega: w,
                model_version: *version,
                interval: interval.filter(|(lo, hi)| lo.is_finite() && hi.is_finite()),
            },
            _ => none,
        }
    }
}

/// The forest's correction of one prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Correction {
    /// ω, the factor of the Hawkes expected remainder.
    pub omega: f64,
    /// Version of the model used (0: none).
    pub model_version: u64,
    /// Interval of ω (see [`ModelStore::omega`]).
    pub interval: Option<(f64, f64)>,
}

/// What the predictor keeps of the parameters half.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Prediction {
    n_obs: u64,
    features: [f64; 3],
    n_pred: f64,
    n_hawkes: f64,
    model_version: u64,
    /// Prediction interval of the final size (absent in entries written before intervals).
    #[serde(default)]
    interval: Option<(f64, f64)>,
}

/// One half of a join, as kept in memory and in the changelog.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Half {
    Predicted(Prediction),
    Size(u64),
}

/// The join of parameters and sizes, bounded in size (oldest entries are dropped first). Each
/// entry remembers the input partition it came from, so a revoked partition's entries can go.
pub struct Join {
    /// Half entries with the sequence number of their insertion and their partition.
    pending: HashMap<(CascadeId, u64), (u64, i32, Half)>,
    /// Insertion order; an entry whose sequence number no longer matches is stale.
    order: VecDeque<(u64, (CascadeId, u64))>,
    next_seq: u64,
    max_pending: usize,
}

/// Records the join emits.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    /// The stat.
    pub stat: Stat,
    /// The training sample.
    pub sample: Sample,
}

/// What adding a half did.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinStep {
    /// The completed pair, if the other half was waiting.
    pub joined: Option<Joined>,
    /// Whether the half now waits in the table.
    pub stored: bool,
    /// Entries dropped to make room: (cid, window, partition).
    pub evicted: Vec<(CascadeId, u64, i32)>,
}

impl Join {
    /// An empty join keeping at most `max_pending` half entries.
    pub fn new(max_pending: usize) -> Self {
        Self {
            pending: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
            max_pending,
        }
    }

    /// Half entries waiting.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn insert(&mut self, key: (CascadeId, u64), partition: i32, half: Half) {
        self.next_seq += 1;
        self.pending
            .insert(key.clone(), (self.next_seq, partition, half));
        self.order.push_back((self.next_seq, key));
    }

    /// Adds a half read from `partition`.
    fn add(&mut self, cid: &CascadeId, window: u64, partition: i32, half: Half) -> JoinStep {
        let key = (cid.clone(), window);
        let other = self.pending.remove(&key).map(|(_, _, h)| h);
        let pair = match (other, half) {
            (Some(Half::Predicted(p)), Half::Size(n_tot))
            | (Some(Half::Size(n_tot)), Half::Predicted(p)) => Some((p, n_tot)),
            (_, half) => {
                // No partner yet (or a repeat of the same half: the newest wins).
                self.insert(key, partition, half);
                None
            }
        };
        let stored = pair.is_none();
        let mut evicted = Vec::new();
        while self.pending.len() > self.max_pending {
            let Some((seq, old)) = self.order.pop_front() else {
                break;
            };
            if self.pending.get(&old).is_some_and(|(s, _, _)| *s == seq) {
                let (_, p, _) = self.pending.remove(&old).expect("present");
                evicted.push((old.0, old.1, p));
            }
        }
        // Drop stale order entries so the queue stays proportional to the table.
        if self.order.len() > 2 * self.pending.len() + 1024 {
            let pending = &self.pending;
            self.order
                .retain(|(seq, k)| pending.get(k).is_some_and(|(s, _, _)| s == seq));
        }
        let joined = pair.map(|(p, n_tot)| {
            let truth = n_tot as f64;
            let stat = Stat {
                kind: StatTag::Stat,
                cid: cid.clone(),
                t_obs: window,
                are: tweetoscope_stats::absolute_relative_error(p.n_pred, truth),
                n_pred: p.n_pred,
                n_tot,
                are_hawkes: tweetoscope_stats::absolute_relative_error(p.n_hawkes, truth),
                model_version: p.model_version,
                n_low: p.interval.map(|i| i.0),
                n_high: p.interval.map(|i| i.1),
            };
            let [beta, n_star, g1] = p.features;
            let w = tweetoscope_hawkes::random_forest_target(p.n_obs as usize, n_tot, g1, n_star);
            let sample = Sample::new(cid.clone(), window, [beta, n_star, g1], w);
            Joined { stat, sample }
        });
        JoinStep {
            joined,
            stored,
            evicted,
        }
    }

    /// Puts back an entry read from the changelog (`None`: the entry was deleted).
    fn restore(&mut self, cid: CascadeId, window: u64, partition: i32, half: Option<Half>) {
        match half {
            Some(h) => self.insert((cid, window), partition, h),
            None => {
                self.pending.remove(&(cid, window));
            }
        }
    }

    /// Drops the entries that came from `partition`.
    fn revoke(&mut self, partition: i32) {
        self.pending.retain(|_, (_, p, _)| *p != partition);
    }
}

/// Changelog key of a (cascade, window) entry.
fn state_key(cid: &CascadeId, window: u64) -> String {
    format!("{window}/{cid}")
}

/// Inverse of [`state_key`].
fn parse_state_key(key: &str) -> Option<(CascadeId, u64)> {
    let (window, cid) = key.split_once('/')?;
    Some((CascadeId(cid.to_owned()), window.parse().ok()?))
}

/// Predicts from parameters: the alert and the state to keep.
fn predict(
    window: u64,
    p: &CascadeParameters,
    models: &ModelStore,
) -> Result<(Alert, Prediction), Malformed> {
    let features = [p.time_feature(), p.n_star, p.g1];
    let n_hawkes = tweetoscope_hawkes::predict_final_size(p.n_obs as usize, p.g1, p.n_star, 1.0)
        .map_err(|e| Malformed::new(e.to_string()))?;
    let correction = models.omega(window, features);
    let size = |omega: f64| {
        tweetoscope_hawkes::predict_final_size(p.n_obs as usize, p.g1, p.n_star, omega)
            .map_err(|e| Malformed::new(e.to_string()))
    };
    let n_pred = size(correction.omega)?;
    let model_version = correction.model_version;
    // The size grows with ω, so ω's interval maps to the size's.
    let interval = match correction.interval {
        Some((lo, hi)) => Some((size(lo)?, size(hi)?)),
        None => None,
    };
    let alert = Alert {
        kind: AlertTag::Alert,
        cid: p.cid.clone(),
        msg: p.msg.clone(),
        t_obs: window,
        n_tot: n_pred.round() as u64,
        n_obs: p.n_obs,
        model_version,
        n_low: interval.map(|i| i.0),
        n_high: interval.map(|i| i.1),
    };
    Ok((
        alert,
        Prediction {
            n_obs: p.n_obs,
            features,
            n_pred,
            n_hawkes,
            model_version,
            interval,
        },
    ))
}

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
                        Ok(m) => {
                            env.metrics
                                .model_version
                                .with_label_values(&[STAGE, &m.t_obs.to_string()])
                                .set(m.version as i64);
                            tracing::info!(window = m.t_obs, version = m.version, samples = m.n_samples, "new model in use");
                        }
                        Err(reason) => {
                            env.metrics.malformed.with_label_values(&[STAGE, &env.topics.models_topic]).inc();
                            tracing::warn!(reason, offset = message.offset(), "unusable model ignored");
                        }
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
                    self.metrics.record_latency(latency);
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
    let producer = env.kafka.stage_producer(STAGE).await?;
    let consumer = env.kafka.consumer(STAGE, env.metrics.clone())?;
    consumer.subscribe(&[env.topics.properties_topic.as_str()])?;
    tracing::info!(max_pending = args.max_pending, "predictor started");
    let handler = PredictorHandler {
        join: Join::new(args.max_pending as usize),
        store,
        metrics: env.metrics.clone(),
        topics: env.topics.clone(),
        kafka: env.kafka.clone(),
    };
    let sink = Sink::new(producer, env.metrics.clone(), STAGE);
    let result = process(
        env.loop_settings(STAGE),
        consumer,
        sink,
        env.metrics.clone(),
        env.shutdown.clone(),
        handler,
    )
    .await;
    stop_helpers.stop();
    let _ = models_task.await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use tweetoscope_messages::CascadeSize;

    fn params(cid: &str) -> CascadeParameters {
        CascadeParameters {
            cid: cid.into(),
            msg: String::new(),
            t_obs: Some(600),
            n_obs: 20,
            n_supp: 0.0,
            params: vec![0.01, 0.002],
            kernel: Default::default(),
            n_star: 0.5,
            g1: 10.0,
        }
    }

    #[test]
    fn join_is_symmetric_and_computes_are_and_w() {
        let store = ModelStore::default();
        for size_first in [false, true] {
            let mut join = Join::new(10);
            let (alert, prediction) = predict(600, &params("a"), &store).unwrap();
            // n = 20 + 10 / (1 − 0.5) = 40.
            assert_eq!(alert.n_tot, 40);
            let size = Half::Size(50);
            let pred = Half::Predicted(prediction);
            let (first, second) = if size_first {
                (size, pred)
            } else {
                (pred, size)
            };
            let step = join.add(&"a".into(), 600, 0, first);
            assert_eq!(
                (step.joined, step.stored, step.evicted.len()),
                (None, true, 0)
            );
            let step = join.add(&"a".into(), 600, 0, second);
            assert!(!step.stored);
            let joined = step.joined.expect("pair complete");
            assert!((joined.stat.are - 0.2).abs() < 1e-12);
            // W = (50 − 20)(1 − 0.5)/10 = 1.5.
            assert!((joined.sample.w - 1.5).abs() < 1e-12);
            assert_eq!(joined.sample.x, [0.002, 0.5, 10.0]);
            assert_eq!(join.pending(), 0);
        }
    }

    #[test]
    fn join_windows_are_separate_and_bounded() {
        let mut join = Join::new(2);
        assert!(join
            .add(&"a".into(), 600, 0, Half::Size(5))
            .evicted
            .is_empty());
        assert!(join
            .add(&"a".into(), 1200, 1, Half::Size(5))
            .evicted
            .is_empty());
        let step = join.add(&"b".into(), 600, 2, Half::Size(5));
        assert_eq!(step.evicted, vec![("a".into(), 600, 0)], "oldest dropped");
        assert_eq!(join.pending(), 2);
        let store = ModelStore::default();
        let (_, p) = predict(600, &params("a"), &store).unwrap();
        // a/600 was evicted: its prediction waits again, and pushes out a/1200, the oldest.
        let step = join.add(&"a".into(), 600, 0, Half::Predicted(p.clone()));
        assert_eq!(
            (step.joined, step.evicted),
            (None, vec![("a".into(), 1200, 1)])
        );
        let step = join.add(&"a".into(), 1200, 1, Half::Predicted(p.clone()));
        assert_eq!(
            (step.joined, step.evicted),
            (None, vec![("b".into(), 600, 2)])
        );
        // a/600 and a/1200 are waiting and complete with their sizes.
        assert!(join
            .add(&"a".into(), 600, 0, Half::Size(50))
            .joined
            .is_some());
        assert!(join
            .add(&"a".into(), 1200, 1, Half::Size(50))
            .joined
            .is_some());
        assert_eq!(join.pending(), 0);
    }

    #[test]
    fn join_state_survives_through_its_changelog() {
        // What the handler writes for a stored half is what restore() reads back.
        let store = ModelStore::default();
        let (_, p) = predict(600, &params("a"), &store).unwrap();
        let half = Half::Predicted(p);
        let bytes = serde_json::to_vec(&half).unwrap();
        let key = state_key(&"tw:7/x".into(), 600);
        let (cid, window) = parse_state_key(&key).unwrap();
        assert_eq!((cid.0.as_str(), window), ("tw:7/x", 600));
        let mut restored = Join::new(10);
        restored.restore(
            cid.clone(),
            window,
            3,
            Some(serde_json::from_slice(&bytes).unwrap()),
        );
        restored.restore("gone".into(), 600, 3, Some(Half::Size(4)));
        restored.restore("gone".into(), 600, 3, None);
        assert_eq!(restored.pending(), 1);
        let step = restored.add(&cid, 600, 3, Half::Size(50));
        assert!(step.joined.is_some(), "the restored half joins its partner");
        restored.restore("other".into(), 600, 2, Some(Half::Size(4)));
        restored.revoke(2);
        assert_eq!(restored.pending(), 0);
    }

    #[test]
    fn supercritical_parameters_are_refused() {
        let mut p = params("a");
        p.n_star = 1.2;
        let err = predict(600, &p, &ModelStore::default()).unwrap_err();
        assert!(
            err.reason.to_lowercase().contains("n*") || err.reason.contains("supercritical"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn a_model_changes_the_prediction() {
        let rows: Vec<[f64; 3]> = (0..50).map(|i| [0.001 * i as f64, 0.5, 10.0]).collect();
        let targets = vec![2.0; 50];
        let forest = tweetoscope_forest::fit_rows(&rows, &targets, &Default::default()).unwrap();
        let message = ModelMessage {
            kind: tweetoscope_messages::ModelTag::Model,
            t_obs: 600,
            version: 3,
            n_samples: 50,
            features: vec!["beta".into(), "n_star".into(), "G1".into()],
            target: ModelTarget::Omega,
            forest: serde_json::from_str(&forest.to_json()).unwrap(),
        };
        let mut store = ModelStore::default();
        store.install(&message).unwrap();
        // A model over other features (another version's learner) is refused, with the lists.
        let other = ModelMessage {
            features: vec!["beta".into(), "n_star".into(), "log_n_obs".into()],
            ..message.clone()
        };
        let err = ModelStore::default().install(&other).unwrap_err();
        assert!(err.contains("log_n_obs") && err.contains("G1"), "{err}");
        let (alert, p) = predict(600, &params("a"), &store).unwrap();
        // ω = 2: n = 20 + 2 · 20 = 60.
        assert_eq!(
            (alert.n_tot, alert.model_version, p.n_hawkes),
            (60, 3, 40.0)
        );
        // A model that predicts ln ω = ln 2 gives the same correction.
        let log_forest =
            tweetoscope_forest::fit_rows(&rows, &[2f64.ln(); 50], &Default::default()).unwrap();
        let mut log_store = ModelStore::default();
        log_store
            .install(&ModelMessage {
                target: ModelTarget::LnOmega,
                forest: serde_json::from_str(&log_forest.to_json()).unwrap(),
                ..message.clone()
            })
            .unwrap();
        assert_eq!(predict(600, &params("a"), &log_store).unwrap().0.n_tot, 60);
        let (other, _) = predict(1200, &params("a"), &store).unwrap();
        assert_eq!(other.n_tot, 40, "no model for 1200");
        let size = CascadeSize {
            cid: "a".into(),
            t_obs: Some(600),
            n_tot: 60,
            t_end: 1.0,
        };
        let mut join = Join::new(4);
        join.add(&size.cid, 600, 0, Half::Size(size.n_tot));
        let stat = join
            .add(&"a".into(), 600, 0, Half::Predicted(p))
            .joined
            .unwrap()
            .stat;
        assert_eq!((stat.are, stat.model_version), (0.0, 3));
        assert!((stat.are_hawkes - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(
            (alert.n_low, stat.n_low),
            (None, None),
            "a raw-ω model has no interval"
        );
    }

    #[test]
    fn a_ln_omega_model_gives_an_interval_carried_to_the_alert_and_the_stat() {
        // ln ω spread evenly over [ln 1, ln 4]: the 80 % interval of ω is about [1.15, 3.5].
        let rows: Vec<[f64; 3]> = (0..400)
            .map(|i| [0.001 * (i % 7) as f64, 0.5, 10.0])
            .collect();
        let targets: Vec<f64> = (0..400).map(|i| (4f64.ln() * i as f64) / 399.0).collect();
        let forest = tweetoscope_forest::fit_rows(&rows, &targets, &Default::default()).unwrap();
        let mut store = ModelStore::default();
        store
            .install(&ModelMessage {
                kind: tweetoscope_messages::ModelTag::Model,
                t_obs: 600,
                version: 1,
                n_samples: 400,
                features: vec!["beta".into(), "n_star".into(), "G1".into()],
                target: ModelTarget::LnOmega,
                forest: serde_json::from_str(&forest.to_json()).unwrap(),
            })
            .unwrap();
        let (alert, p) = predict(600, &params("a"), &store).unwrap();
        let (lo, hi) = (alert.n_low.unwrap(), alert.n_high.unwrap());
        // n = 20 observed + ω · 20 expected remainder.
        assert!(
            lo < alert.n_tot as f64 && (alert.n_tot as f64) < hi,
            "{lo} {alert:?} {hi}"
        );
        assert!((lo - (20.0 + 20.0 * 1.15)).abs() < 4.0, "lower bound {lo}");
        assert!((hi - (20.0 + 20.0 * 3.5)).abs() < 8.0, "upper bound {hi}");
        let mut join = Join::new(4);
        join.add(&"a".into(), 600, 0, Half::Size(50));
        let stat = join
            .add(&"a".into(), 600, 0, Half::Predicted(p.clone()))
            .joined
            .unwrap()
            .stat;
        assert_eq!((stat.n_low, stat.n_high), (alert.n_low, alert.n_high));
        // A changelog entry written before intervals existed still loads, without one.
        let mut old = serde_json::to_value(Half::Predicted(p)).unwrap();
        old["predicted"].as_object_mut().unwrap().remove("interval");
        let Half::Predicted(restored) = serde_json::from_value(old).unwrap() else {
            panic!("a prediction");
        };
        assert_eq!(restored.interval, None);
    }
}
