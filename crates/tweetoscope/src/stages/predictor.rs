//! Predictor stage: joins the `parameters` and the `size` of each (cascade, window) arriving on
//! `cascade_properties`. On parameters it predicts the final size, with the newest random forest of
//! the window when there is one, and emits an alert; once both halves are in, it emits the stat
//! (ARE) and the training sample. Models come from the `models` topic, read whole by every replica.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::Message;
use tweetoscope_forest::RandomForest;
use tweetoscope_messages::{
    to_payload, Alert, AlertTag, CascadeId, CascadeParameters, CascadeProperty, Malformed,
    ModelMessage, ModelTarget, Sample, Stat, StatTag,
};

use super::StageEnv;
use crate::config::PredictorArgs;
use crate::kafka::{close_consumer, process, Handled, LoopSettings, Outgoing, Sink};

const STAGE: &str = "predictor";

/// The newest forest of each window, with its version.
#[derive(Default)]
pub struct ModelStore {
    models: HashMap<u64, (u64, ModelTarget, RandomForest)>,
}

impl ModelStore {
    /// Installs a model; returns false when the blob is not a forest over 3 features.
    pub fn install(&mut self, message: &ModelMessage) -> Result<(), String> {
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

    /// The correction ω for these features and the version used (1 and 0 without a model).
    pub fn omega(&self, window: u64, features: [f64; 3]) -> (f64, u64) {
        match self.models.get(&window) {
            Some((version, target, forest)) => {
                let omega = forest.try_predict_one(&features).map(|y| match target {
                    ModelTarget::Omega => y.max(0.0),
                    ModelTarget::LnOmega => crate::stages::learner::omega_from_target(y),
                });
                match omega {
                    Ok(w) if w.is_finite() => (w, *version),
                    _ => (1.0, 0),
                }
            }
            None => (1.0, 0),
        }
    }
}

/// What the predictor keeps of the parameters half.
#[derive(Debug, Clone, PartialEq)]
struct Prediction {
    n_obs: u64,
    features: [f64; 3],
    n_pred: f64,
    n_hawkes: f64,
    model_version: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum Half {
    Predicted(Prediction),
    Size(u64),
}

/// The join of parameters and sizes, bounded in size (oldest entries are dropped first).
pub struct Join {
    /// Half entries with the sequence number of their insertion.
    pending: HashMap<(CascadeId, u64), (u64, Half)>,
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

    /// Adds a half; returns the completed pair if the other half was waiting, and how many old
    /// entries were evicted to make room.
    fn add(&mut self, cid: &CascadeId, window: u64, half: Half) -> (Option<Joined>, u64) {
        let key = (cid.clone(), window);
        let other = self.pending.remove(&key).map(|(_, h)| h);
        let pair = match (other, half) {
            (Some(Half::Predicted(p)), Half::Size(n_tot))
            | (Some(Half::Size(n_tot)), Half::Predicted(p)) => Some((p, n_tot)),
            (_, half) => {
                // No partner yet (or a repeat of the same half: the newest wins).
                self.next_seq += 1;
                self.pending.insert(key.clone(), (self.next_seq, half));
                self.order.push_back((self.next_seq, key));
                None
            }
        };
        let mut evicted = 0;
        while self.pending.len() > self.max_pending {
            let Some((seq, old)) = self.order.pop_front() else {
                break;
            };
            if self.pending.get(&old).is_some_and(|(s, _)| *s == seq) {
                self.pending.remove(&old);
                evicted += 1;
            }
        }
        // Drop stale order entries so the queue stays proportional to the table.
        if self.order.len() > 2 * self.pending.len() + 1024 {
            let pending = &self.pending;
            self.order
                .retain(|(seq, k)| pending.get(k).is_some_and(|(s, _)| s == seq));
        }
        let joined = pair.map(|(p, n_tot)| {
            let truth = n_tot.max(1) as f64;
            let stat = Stat {
                kind: StatTag::Stat,
                cid: cid.clone(),
                t_obs: window,
                are: (p.n_pred - truth).abs() / truth,
                n_pred: p.n_pred,
                n_tot,
                are_hawkes: (p.n_hawkes - truth).abs() / truth,
                model_version: p.model_version,
            };
            let [beta, n_star, g1] = p.features;
            let w = tweetoscope_hawkes::random_forest_target(p.n_obs as usize, n_tot, g1, n_star);
            let sample = Sample::new(cid.clone(), window, [beta, n_star, g1], w);
            Joined { stat, sample }
        });
        (joined, evicted)
    }
}

/// Predicts from parameters: the alert and the state to keep.
fn predict(
    window: u64,
    p: &CascadeParameters,
    models: &ModelStore,
) -> Result<(Alert, Prediction), Malformed> {
    let features = [p.params[1], p.n_star, p.g1];
    let n_hawkes = tweetoscope_hawkes::predict_final_size(p.n_obs as usize, p.g1, p.n_star, 1.0)
        .map_err(|e| Malformed::new(e.to_string()))?;
    let (omega, model_version) = models.omega(window, features);
    let n_pred = tweetoscope_hawkes::predict_final_size(p.n_obs as usize, p.g1, p.n_star, omega)
        .map_err(|e| Malformed::new(e.to_string()))?;
    let alert = Alert {
        kind: AlertTag::Alert,
        cid: p.cid.clone(),
        msg: p.msg.clone(),
        t_obs: window,
        n_tot: n_pred.round() as u64,
        n_obs: p.n_obs,
        model_version,
    };
    Ok((
        alert,
        Prediction {
            n_obs: p.n_obs,
            features,
            n_pred,
            n_hawkes,
            model_version,
        },
    ))
}

/// Keeps `store` up to date from the models topic until shutdown.
async fn follow_models(env: StageEnv, store: Arc<RwLock<ModelStore>>) -> anyhow::Result<()> {
    let consumer = env.kafka.broadcast_consumer(&env.topics.models_topic)?;
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

/// Runs the predictor until shutdown.
pub async fn run(env: StageEnv, args: PredictorArgs) -> anyhow::Result<()> {
    let store = Arc::new(RwLock::new(ModelStore::default()));
    let models_task = tokio::spawn(follow_models(env.clone(), store.clone()));
    let producer = env.kafka.producer()?;
    let consumer = env.kafka.consumer(STAGE, env.metrics.clone())?;
    consumer.subscribe(&[env.topics.properties_topic.as_str()])?;
    let mut join = Join::new(args.max_pending as usize);
    let metrics = env.metrics.clone();
    let topics = env.topics.clone();
    tracing::info!(max_pending = args.max_pending, "predictor started");
    let sink = Sink::new(producer, env.metrics.clone(), STAGE);
    let result = process(
        LoopSettings::new(STAGE),
        consumer,
        sink,
        env.metrics.clone(),
        env.shutdown.clone(),
        move |message| {
            let (window, property) = match CascadeProperty::parse(
                message.key(),
                message.payload().unwrap_or_default(),
            ) {
                Ok(p) => p,
                Err(m) => return Handled::Malformed(m),
            };
            let mut records = Vec::new();
            let half = match &property {
                CascadeProperty::Parameters(p) => {
                    let predicted = predict(window, p, &store.read().expect("model store lock"));
                    let (alert, prediction) = match predicted {
                        Ok(x) => x,
                        Err(m) => return Handled::Malformed(m),
                    };
                    metrics
                        .predictions
                        .with_label_values(&[&window.to_string()])
                        .inc();
                    records.push(Outgoing::keyed(
                        &topics.alerts_topic,
                        alert.cid.0.clone(),
                        to_payload(&alert),
                    ));
                    Half::Predicted(prediction)
                }
                CascadeProperty::Size(s) => Half::Size(s.n_tot),
            };
            let (joined, evicted) = join.add(property.cid(), window, half);
            if evicted > 0 {
                metrics.join_evictions.inc_by(evicted);
                tracing::warn!(evicted, "join table full: oldest half entries dropped");
            }
            metrics.join_pending.set(join.pending() as i64);
            if let Some(Joined { stat, sample }) = joined {
                metrics
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
        },
    )
    .await;
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
            params: [0.01, 0.002],
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
            assert_eq!(join.add(&"a".into(), 600, first), (None, 0));
            let (joined, _) = join.add(&"a".into(), 600, second);
            let joined = joined.expect("pair complete");
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
        assert_eq!(join.add(&"a".into(), 600, Half::Size(5)).1, 0);
        assert_eq!(join.add(&"a".into(), 1200, Half::Size(5)).1, 0);
        assert_eq!(
            join.add(&"b".into(), 600, Half::Size(5)).1,
            1,
            "oldest dropped"
        );
        assert_eq!(join.pending(), 2);
        let store = ModelStore::default();
        let (_, p) = predict(600, &params("a"), &store).unwrap();
        // a/600 was evicted: its prediction waits again, and pushes out a/1200, the oldest.
        assert_eq!(
            join.add(&"a".into(), 600, Half::Predicted(p.clone())),
            (None, 1)
        );
        assert_eq!(
            join.add(&"a".into(), 1200, Half::Predicted(p.clone())),
            (None, 1)
        );
        // b/600 went out with it; a/600 and a/1200 are waiting and complete with their sizes.
        assert!(join.add(&"a".into(), 600, Half::Size(50)).0.is_some());
        assert!(join.add(&"a".into(), 1200, Half::Size(50)).0.is_some());
        assert_eq!(join.pending(), 0);
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
        join.add(&size.cid, 600, Half::Size(size.n_tot));
        let (joined, _) = join.add(&"a".into(), 600, Half::Predicted(p));
        let stat = joined.unwrap().stat;
        assert_eq!((stat.are, stat.model_version), (0.0, 3));
        assert!((stat.are_hawkes - 1.0 / 3.0).abs() < 1e-12);
    }
}
