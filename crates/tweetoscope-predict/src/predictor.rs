//! The predictor's side: the newest forest of each window and its correction ω, the prediction
//! made from a cascade's parameters, and the bounded join of parameters and sizes per (cascade,
//! window) that yields the stat and the training sample.

use std::collections::{HashMap, VecDeque};

use tweetoscope_forest::RandomForest;
use tweetoscope_messages::{
    Alert, AlertTag, CascadeId, CascadeParameters, GrowthModel, Malformed, ModelMessage,
    ModelTarget, Sample, SeriesShape, Stat, StatTag, GROWTH_FEATURES, SERVED_FEATURES,
};
use tweetoscope_stats::MedianRegression;

/// The newest model of each window.
#[derive(Debug, Default)]
pub struct ModelStore {
    models: HashMap<u64, Installed>,
    /// By window, the largest growth `n_tot / n_obs` of the cascades whose truth this predictor
    /// has joined: the growth bound of predictions without a model's (see [`crate::guard`]).
    observed_growth: HashMap<u64, f64>,
}

/// An installed model.
#[derive(Debug)]
struct Installed {
    version: u64,
    target: ModelTarget,
    forest: RandomForest,
    max_growth: Option<f64>,
    /// The growth model, over [`GROWTH_FEATURES`] (absent in older models).
    growth: Option<InstalledGrowth>,
}

/// An installed growth model.
#[derive(Debug)]
struct InstalledGrowth {
    line: MedianRegression,
    blend: bool,
    log_error_bounds: Option<(f64, f64)>,
}

impl InstalledGrowth {
    /// Checks a model message's growth model.
    fn new(window: u64, version: u64, g: &GrowthModel) -> Result<Self, String> {
        if g.features != GROWTH_FEATURES {
            return Err(format!(
                "model of window {window} version {version}: its growth model uses features \
                 {:?}, but this predictor computes {:?}: retrain it with a learner of the same \
                 version",
                g.features, GROWTH_FEATURES
            ));
        }
        if g.coefficients.len() != GROWTH_FEATURES.len()
            || !g.intercept.is_finite()
            || g.coefficients.iter().any(|c| !c.is_finite())
        {
            return Err(format!(
                "model of window {window} version {version}: its growth model needs {} finite \
                 coefficients and a finite intercept, found {:?} and {}",
                GROWTH_FEATURES.len(),
                g.coefficients,
                g.intercept
            ));
        }
        Ok(Self {
            line: MedianRegression {
                intercept: g.intercept,
                coefficients: g.coefficients.clone(),
            },
            blend: g.blend,
            log_error_bounds: g
                .log_error_bounds
                .filter(|(lo, hi)| lo.is_finite() && hi.is_finite() && lo <= hi),
        })
    }
}

impl ModelStore {
    /// Installs a model; refuses one whose feature list is not [`SERVED_FEATURES`], whose growth
    /// model's is not [`GROWTH_FEATURES`], whose forest is not one over them, or whose growth
    /// model lacks its coefficients.
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
        let growth = message
            .growth
            .as_ref()
            .map(|g| InstalledGrowth::new(message.t_obs, message.version, g))
            .transpose()?;
        let max_growth = message.max_growth.filter(|g| g.is_finite() && *g >= 1.0);
        self.models.insert(
            message.t_obs,
            Installed {
                version: message.version,
                target: message.target,
                forest,
                max_growth,
                growth,
            },
        );
        Ok(())
    }

    /// Records the growth of a cascade whose final size is known (a sample with its sizes):
    /// until a model with its own bound exists for `window`, predictions there are held at the
    /// largest growth recorded (before the first truth, nothing holds them).
    pub fn observe_growth(&mut self, window: u64, growth: f64) {
        if growth.is_finite() && growth >= 1.0 {
            let largest = self.observed_growth.entry(window).or_insert(growth);
            *largest = largest.max(growth);
        }
    }

    /// The correction ω for these features, the version used (1 and 0 without a model) and
    /// ω's [`tweetoscope_messages::PREDICTION_INTERVAL_COVERAGE`] interval, when the model
    /// holds its out-of-bag residuals and learns ln ω; with a growth model and the series'
    /// shape, also the growth model's answer for a cascade of `n_obs` tweets (see
    /// [`Correction::growth`]).
    pub fn omega(
        &self,
        window: u64,
        features: [f64; 3],
        n_obs: f64,
        shape: Option<&SeriesShape>,
    ) -> Correction {
        let observed_growth = self.observed_growth.get(&window).copied();
        let none = Correction {
            omega: 1.0,
            model_version: 0,
            interval: None,
            max_growth: observed_growth,
            growth: None,
        };
        let Some(Installed {
            version,
            target,
            forest,
            max_growth,
            growth,
        }) = self.models.get(&window)
        else {
            return none;
        };
        let growth = growth.as_ref().zip(shape).and_then(|(g, shape)| {
            let x = crate::learner::growth_features(n_obs, shape);
            let ln_growth = g.line.predict(&x);
            ln_growth.is_finite().then_some(Growth {
                ln_growth,
                blend: g.blend,
                log_error_bounds: g.log_error_bounds,
            })
        });
        let corrected = match target {
            ModelTarget::Omega => forest
                .try_predict_one(&features)
                .map(|y| (y.max(0.0), None)),
            ModelTarget::LnOmega => crate::learner::omega_with_interval(forest, &features),
        };
        match corrected {
            Ok((w, interval)) if w.is_finite() => Correction {
                omega: w,
                model_version: *version,
                interval: interval.filter(|(lo, hi)| lo.is_finite() && hi.is_finite()),
                max_growth: max_growth.or(observed_growth),
                growth,
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
    /// The bound on the growth `n_tot / n_obs` (see [`crate::guard`]): the model's, else the
    /// largest growth this store has observed ([`ModelStore::observe_growth`]).
    pub max_growth: Option<f64>,
    /// The growth model's answer, when the model has one and the parameters carry their
    /// series' shape: it then decides the served size and its interval.
    pub growth: Option<Growth>,
}

/// The growth model's answer for one cascade.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Growth {
    /// Predicted `ln(n_tot / n_obs)`.
    pub ln_growth: f64,
    /// Whether the served size is [`crate::blend_sizes`] of the ω-corrected Hawkes size and
    /// `n_obs · e^ln_growth`, rather than the latter alone.
    pub blend: bool,
    /// Bounds of `ln(n_tot / served size)` for the served interval (see
    /// [`GrowthModel::log_error_bounds`]).
    pub log_error_bounds: Option<(f64, f64)>,
}

impl Growth {
    /// The served size for a cascade of `n_obs` tweets whose ω-corrected Hawkes size is
    /// `hawkes`.
    pub fn size(&self, hawkes: f64, n_obs: f64) -> f64 {
        if self.blend {
            crate::blend_sizes(hawkes, n_obs, self.ln_growth)
        } else {
            n_obs * self.ln_growth.exp()
        }
    }
}

/// What the predictor keeps of the parameters half.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prediction {
    n_obs: u64,
    features: [f64; 3],
    n_pred: f64,
    n_hawkes: f64,
    model_version: u64,
    /// Prediction interval of the final size (absent in entries written before intervals).
    #[serde(default)]
    interval: Option<(f64, f64)>,
    /// The series' shape, passed on to the sample (absent in older entries).
    #[serde(default)]
    shape: Option<SeriesShape>,
}

impl Prediction {
    /// The served size (unrounded).
    pub fn size(&self) -> f64 {
        self.n_pred
    }

    /// The served interval of the size, if any.
    pub fn interval(&self) -> Option<(f64, f64)> {
        self.interval
    }

    /// The training sample of this prediction once its cascade's final size `n_tot` is known:
    /// the features, the ω that would have been exact, the sizes and the series' shape.
    pub fn sample(&self, cid: &CascadeId, window: u64, n_tot: u64) -> Sample {
        let [_, n_star, g1] = self.features;
        let w = tweetoscope_hawkes::random_forest_target(self.n_obs as usize, n_tot, g1, n_star);
        Sample::new(cid.clone(), window, self.features, w)
            .with_sizes(self.n_obs, n_tot)
            .with_shape(self.shape)
    }
}

/// One half of a join, as kept in memory and in the changelog.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Half {
    /// The parameters half: the prediction made from them.
    Predicted(Prediction),
    /// The size half: the final size `n_tot`.
    Size(u64),
}

/// The join of parameters and sizes, bounded in size (oldest entries are dropped first). Each
/// entry remembers the input partition it came from, so a revoked partition's entries can go.
#[derive(Debug)]
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
    pub fn add(&mut self, cid: &CascadeId, window: u64, partition: i32, half: Half) -> JoinStep {
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
            let sample = p.sample(cid, window, n_tot);
            Joined { stat, sample }
        });
        JoinStep {
            joined,
            stored,
            evicted,
        }
    }

    /// Puts back an entry read from the changelog (`None`: the entry was deleted).
    pub fn restore(&mut self, cid: CascadeId, window: u64, partition: i32, half: Option<Half>) {
        match half {
            Some(h) => self.insert((cid, window), partition, h),
            None => {
                self.pending.remove(&(cid, window));
            }
        }
    }

    /// Drops the entries that came from `partition`.
    pub fn revoke(&mut self, partition: i32) {
        self.pending.retain(|_, (_, p, _)| *p != partition);
    }
}

/// Changelog key of a (cascade, window) entry.
pub fn state_key(cid: &CascadeId, window: u64) -> String {
    format!("{window}/{cid}")
}

/// Inverse of [`state_key`].
pub fn parse_state_key(key: &str) -> Option<(CascadeId, u64)> {
    let (window, cid) = key.split_once('/')?;
    Some((CascadeId(cid.to_owned()), window.parse().ok()?))
}

/// Predicts from parameters: the alert and the state to keep.
pub fn predict(
    window: u64,
    p: &CascadeParameters,
    models: &ModelStore,
) -> Result<(Alert, Prediction), Malformed> {
    let features = [p.time_feature(), p.n_star, p.g1];
    let n_hawkes = tweetoscope_hawkes::predict_final_size(p.n_obs as usize, p.g1, p.n_star, 1.0)
        .map_err(|e| Malformed::new(e.to_string()))?;
    let n_obs = p.n_obs as f64;
    let correction = models.omega(window, features, n_obs, p.shape.as_ref());
    let hawkes = |omega: f64| {
        tweetoscope_hawkes::predict_final_size(p.n_obs as usize, p.g1, p.n_star, omega)
            .map_err(|e| Malformed::new(e.to_string()))
    };
    // Every served size is held at the model's growth bound (the guard rail of `crate::guard`).
    let held = |n: f64| crate::cap_growth(n, n_obs, correction.max_growth);
    let (n_pred, interval) = match correction.growth {
        // With a growth model, the learner chose how to serve and measured the interval.
        Some(growth) => {
            let n = growth.size(hawkes(correction.omega)?, n_obs);
            let interval = growth
                .log_error_bounds
                .map(|(lo, hi)| (held(n * lo.exp()), held(n * hi.exp())));
            (held(n), interval)
        }
        // Without, the ω forest alone; the size grows with ω, so ω's interval maps to the
        // size's.
        None => {
            let interval = match correction.interval {
                Some((lo, hi)) => Some((held(hawkes(lo)?), held(hawkes(hi)?))),
                None => None,
            };
            (held(hawkes(correction.omega)?), interval)
        }
    };
    let model_version = correction.model_version;
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
            shape: p.shape,
        },
    ))
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
            shape: Some(SeriesShape {
                late_share: 0.5,
                sqrt_followers: 4.0,
            }),
        }
    }

    /// A model of window 600 over the served features.
    fn model(
        forest: &RandomForest,
        version: u64,
        target: ModelTarget,
        max_growth: Option<f64>,
    ) -> ModelMessage {
        ModelMessage {
            kind: tweetoscope_messages::ModelTag::Model,
            t_obs: 600,
            version,
            n_samples: 50,
            features: vec!["beta".into(), "n_star".into(), "G1".into()],
            target,
            forest: serde_json::from_str(&forest.to_json()).unwrap(),
            max_growth,
            growth: None,
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
    fn a_growth_model_serves_alone_or_blended_and_is_checked() {
        let rows: Vec<[f64; 3]> = (0..50).map(|i| [0.001 * i as f64, 0.5, 10.0]).collect();
        let forest =
            tweetoscope_forest::fit_rows(&rows, &[2f64.ln(); 50], &Default::default()).unwrap();
        let base = model(&forest, 4, ModelTarget::LnOmega, None);
        // An older model, serialized without the extra field, still parses: no growth model.
        let mut old = serde_json::to_value(&base).unwrap();
        assert!(old.get("growth").is_none(), "absent, not null");
        old.as_object_mut().unwrap().remove("growth");
        let parsed = ModelMessage::parse(old.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.growth, None);
        // ln(n_tot / n_obs) = ln 5 + 0·ln n + 1·ln late_share + 0.5·ln sqrt_followers: for the
        // test parameters (late share 0.5, √followers 4) ln 5, a growth of 5.
        let growth = |blend| tweetoscope_messages::GrowthModel {
            features: GROWTH_FEATURES.iter().map(|f| (*f).to_owned()).collect(),
            intercept: 5f64.ln(),
            coefficients: vec![0.0, 1.0, 0.5],
            blend,
            log_error_bounds: Some((-0.5, 0.25)),
        };
        let alone = ModelMessage {
            growth: Some(growth(false)),
            ..base.clone()
        };
        let parsed = ModelMessage::parse(&tweetoscope_messages::to_payload(&alone)).unwrap();
        assert_eq!(parsed, alone, "the extra field round-trips");
        let mut store = ModelStore::default();
        store.install(&parsed).unwrap();
        let (alert, p) = predict(600, &params("a"), &store).unwrap();
        // The growth model alone: 20 · 5 = 100, interval 100·e^−0.5 … 100·e^0.25.
        assert_eq!(alert.n_tot, 100, "{alert:?}");
        assert!((alert.n_low.unwrap() - 100.0 * (-0.5f64).exp()).abs() < 1e-9);
        assert!((alert.n_high.unwrap() - 100.0 * 0.25f64.exp()).abs() < 1e-9);
        // The shape travels on to the sample the join makes.
        let mut join = Join::new(10);
        join.add(&"a".into(), 600, 0, Half::Predicted(p));
        let size = Half::Size(120);
        let sample = join.add(&"a".into(), 600, 0, size).joined.unwrap().sample;
        assert_eq!(sample.shape, params("a").shape);
        // Blended: ω = 2 gives 20 + 2 · 20 = 60 and the growth model 100: served √6000 ≈ 77.5.
        let blended = ModelMessage {
            growth: Some(growth(true)),
            ..base.clone()
        };
        let mut store = ModelStore::default();
        store.install(&blended).unwrap();
        let (alert, p) = predict(600, &params("a"), &store).unwrap();
        assert_eq!(alert.n_tot, 77, "{alert:?}");
        assert!((p.n_pred - 6000f64.sqrt()).abs() < 1e-6);
        // Parameters without their shape (an older estimator) get the ω forest alone: 60.
        let shapeless = CascadeParameters {
            shape: None,
            ..params("a")
        };
        assert_eq!(predict(600, &shapeless, &store).unwrap().0.n_tot, 60);
        // A growth model over other features, such as an earlier version's growth forest, is
        // refused, naming both lists; so is one without its coefficients.
        let mut earlier = serde_json::to_value(&base).unwrap();
        earlier["growth"] = serde_json::json!({
            "features": ["beta", "n_star", "G1", "ln_n_obs", "ln_hawkes_growth"],
            "forest": {}
        });
        let earlier = ModelMessage::parse(earlier.to_string().as_bytes()).unwrap();
        let err = ModelStore::default().install(&earlier).unwrap_err();
        assert!(
            err.contains("growth")
                && err.contains("ln_hawkes_growth")
                && err.contains("ln_late_share"),
            "{err}"
        );
        let mut no_coefficients = growth(false);
        no_coefficients.coefficients.clear();
        let err = ModelStore::default()
            .install(&ModelMessage {
                growth: Some(no_coefficients),
                ..base.clone()
            })
            .unwrap_err();
        assert!(err.contains("coefficients"), "{err}");
        // The growth cap holds the served size and its bounds.
        let capped = ModelMessage {
            max_growth: Some(3.0),
            ..alone
        };
        let mut store = ModelStore::default();
        store.install(&capped).unwrap();
        let alert = predict(600, &params("a"), &store).unwrap().0;
        assert_eq!((alert.n_tot, alert.n_high), (60, Some(60.0)));
    }

    #[test]
    fn a_model_changes_the_prediction() {
        let rows: Vec<[f64; 3]> = (0..50).map(|i| [0.001 * i as f64, 0.5, 10.0]).collect();
        let targets = vec![2.0; 50];
        let forest = tweetoscope_forest::fit_rows(&rows, &targets, &Default::default()).unwrap();
        let message = model(&forest, 3, ModelTarget::Omega, None);
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
            .install(&model(&forest, 1, ModelTarget::LnOmega, None))
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

    #[test]
    fn a_fit_at_the_branching_cap_does_not_explode_the_served_prediction() {
        // n* at the default cap 0.99 and a celebrity's G1: the Hawkes remainder is
        // G1 / (1 − n*) = 100 · 5,000 = 500,000 tweets after 20 observed.
        let at_cap = CascadeParameters {
            n_star: 0.99,
            g1: 5_000.0,
            ..params("celebrity")
        };
        let rows: Vec<[f64; 3]> = (0..200)
            .map(|i| [0.001 * (i % 7) as f64, 0.3 + 0.003 * i as f64, 10.0])
            .collect();
        let forest = tweetoscope_forest::fit_rows(&rows, &[0.0; 200], &Default::default()).unwrap();
        let model = |max_growth| model(&forest, 1, ModelTarget::LnOmega, max_growth);
        // A model trained on cascades that grew at most 12-fold holds it at 20 × 12.
        let mut store = ModelStore::default();
        store.install(&model(Some(12.0))).unwrap();
        let (alert, p) = predict(600, &at_cap, &store).unwrap();
        assert_eq!(alert.n_tot, 240, "{alert:?}");
        assert!(alert.n_high.unwrap() <= 240.0 && alert.n_low.unwrap() <= 240.0);
        assert!(p.n_hawkes > 400_000.0, "the Hawkes estimate alone explodes");
        // An older model without the bound (or no model) serves the raw estimate until a truth
        // is known, then the largest growth of the truths of its window.
        let mut old = ModelStore::default();
        old.install(&model(None)).unwrap();
        assert!(predict(600, &at_cap, &old).unwrap().0.n_tot > 400_000);
        let mut none = ModelStore::default();
        assert!(predict(600, &at_cap, &none).unwrap().0.n_tot > 400_000);
        for store in [&mut old, &mut none] {
            store.observe_growth(1200, 2.0);
            assert!(
                predict(600, &at_cap, store).unwrap().0.n_tot > 400_000,
                "another window's truth"
            );
            store.observe_growth(600, 7.0);
            store.observe_growth(600, 3.0);
            store.observe_growth(600, f64::NAN);
            assert_eq!(
                predict(600, &at_cap, store).unwrap().0.n_tot,
                140,
                "20 × the largest, 7"
            );
        }
        // A model's own bound wins over the observed one.
        let mut both = ModelStore::default();
        both.observe_growth(600, 30.0);
        both.install(&model(Some(12.0))).unwrap();
        assert_eq!(predict(600, &at_cap, &both).unwrap().0.n_tot, 240);
        // A model message without the field still parses.
        let mut json = serde_json::to_value(model(Some(12.0))).unwrap();
        json.as_object_mut().unwrap().remove("max_growth");
        let parsed = ModelMessage::parse(json.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.max_growth, None);
    }

    #[test]
    fn samples_carry_the_sizes_the_learner_bounds_growth_with() {
        let mut join = Join::new(4);
        join.add(&"a".into(), 600, 0, Half::Size(90));
        let (_, p) = predict(600, &params("a"), &ModelStore::default()).unwrap();
        let sample = join
            .add(&"a".into(), 600, 0, Half::Predicted(p))
            .joined
            .unwrap()
            .sample;
        assert_eq!((sample.n_obs, sample.n_tot), (Some(20), Some(90)));
        assert_eq!(sample.growth(), Some(4.5));
        // An older sample without them parses, with no growth.
        let old = br#"{"type":"sample","cid":"a","T_obs":600,"X":[0.001,0.5,10.0],"W":1.0}"#;
        assert_eq!(Sample::parse(None, old).unwrap().growth(), None);
    }
}
