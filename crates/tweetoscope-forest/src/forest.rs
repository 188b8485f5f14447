//! The forest: bagging of CART trees, prediction and JSON model blobs.

use rand::Rng;
use serde::{Deserialize, Serialize, Serializer};

use crate::rng::{tree_seed, SplitMix64};
use crate::tree::{build_tree, stable_mean, TrainData, Tree, TreeConfig};
use crate::{ForestError, ForestParams};

/// Version of the JSON model format written by [`RandomForest::to_json`].
pub const MODEL_FORMAT_VERSION: u32 = 1;

/// Levels at which the out-of-bag residuals' quantiles are kept: central intervals of 50 %,
/// 80 % and 90 % coverage (see [`RandomForest::interval`]).
pub const RESIDUAL_LEVELS: [f64; 6] = [0.05, 0.1, 0.25, 0.75, 0.9, 0.95];

/// Below this many (samples × trees) the forest is grown on the calling thread.
const PARALLEL_MIN_WORK: usize = 50_000;

/// A trained random-forest regressor: the average of `n_trees` CART trees,
/// each grown on its own bootstrap sample.
///
/// Serializes (serde) to the same compact form as [`RandomForest::to_json`];
/// deserializing validates the structure, so a decoded model never panics or
/// loops when predicting rows of the right length.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "ForestWire")]
pub struct RandomForest {
    params: ForestParams,
    n_features: usize,
    oob_mse: Option<f64>,
    oob_residual_quantiles: Vec<(f64, f64)>,
    trees: Vec<Tree>,
}

/// Serialized form (owned, for decoding).
#[derive(Deserialize)]
struct ForestWire {
    format: u32,
    params: ForestParams,
    n_features: usize,
    oob_mse: Option<f64>,
    /// Absent from models written before intervals existed: they predict without intervals.
    #[serde(default)]
    oob_residual_quantiles: Vec<(f64, f64)>,
    trees: Vec<Tree>,
}

/// Serialized form (borrowed, for encoding).
#[derive(Serialize)]
struct ForestWireRef<'a> {
    format: u32,
    params: &'a ForestParams,
    n_features: usize,
    oob_mse: Option<f64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    oob_residual_quantiles: &'a [(f64, f64)],
    trees: &'a [Tree],
}

impl Serialize for RandomForest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ForestWireRef {
            format: MODEL_FORMAT_VERSION,
            params: &self.params,
            n_features: self.n_features,
            oob_mse: self.oob_mse,
            oob_residual_quantiles: &self.oob_residual_quantiles,
            trees: &self.trees,
        }
        .serialize(serializer)
    }
}

impl TryFrom<ForestWire> for RandomForest {
    type Error = ForestError;

    fn try_from(w: ForestWire) -> Result<Self, ForestError> {
        let invalid = |msg: String| Err(ForestError::InvalidModel(msg));
        if w.format != MODEL_FORMAT_VERSION {
            return invalid(format!(
                "unsupported format {} (expected {MODEL_FORMAT_VERSION})",
                w.format
            ));
        }
        if w.n_features == 0 {
            return invalid("model has no features".to_owned());
        }
        if let Err(e) = w.params.resolve_max_features(w.n_features) {
            return invalid(format!("parameters: {e}"));
        }
        if w.trees.len() != w.params.n_trees {
            return invalid(format!(
                "{} trees but n_trees = {}",
                w.trees.len(),
                w.params.n_trees
            ));
        }
        for (t, tree) in w.trees.iter().enumerate() {
            if let Err(e) = tree.validate(w.n_features) {
                return invalid(format!("tree {t}: {e}"));
            }
        }
        if let Some(m) = w.oob_mse {
            if !(m.is_finite() && m >= 0.0) {
                return invalid(format!(
                    "out-of-bag MSE {m} is not a finite non-negative number"
                ));
            }
        }
        let levels_ok = w
            .oob_residual_quantiles
            .iter()
            .all(|(level, v)| (0.0..=1.0).contains(level) && v.is_finite())
            && w.oob_residual_quantiles
                .windows(2)
                .all(|q| q[0].0 < q[1].0 && q[0].1 <= q[1].1);
        if !levels_ok {
            return invalid(
                "out-of-bag residual quantiles must be finite, at increasing levels in [0, 1], \
                 and non-decreasing"
                    .to_owned(),
            );
        }
        Ok(RandomForest {
            params: w.params,
            n_features: w.n_features,
            oob_mse: w.oob_mse,
            oob_residual_quantiles: w.oob_residual_quantiles,
            trees: w.trees,
        })
    }
}

impl RandomForest {
    /// Predicts the target of one row of `n_features()` values.
    ///
    /// A NaN feature goes to the right child of every split that tests it.
    ///
    /// # Panics
    /// If `x.len() != self.n_features()`; see [`RandomForest::try_predict_one`].
    pub fn predict_one(&self, x: &[f64]) -> f64 {
        assert_eq!(
            x.len(),
            self.n_features,
            "RandomForest::predict_one: expected {} features, got {}",
            self.n_features,
            x.len()
        );
        stable_mean(self.trees.iter().map(|t| t.predict(x)))
            .expect("a forest has at least one tree")
    }

    /// Like [`RandomForest::predict_one`] but checks the row: its length
    /// ([`ForestError::FeatureCountMismatch`]) and that every value is finite
    /// ([`ForestError::NonFinite`] with `row` 0).
    pub fn try_predict_one(&self, x: &[f64]) -> Result<f64, ForestError> {
        if x.len() != self.n_features {
            return Err(ForestError::FeatureCountMismatch {
                expected: self.n_features,
                found: x.len(),
            });
        }
        if let Some(column) = x.iter().position(|v| !v.is_finite()) {
            return Err(ForestError::NonFinite {
                row: 0,
                column: Some(column),
            });
        }
        Ok(self.predict_one(x))
    }

    /// Predicts several rows, checking each as [`RandomForest::try_predict_one`]
    /// does (errors carry the row index).
    pub fn predict_rows<R: AsRef<[f64]>>(&self, rows: &[R]) -> Result<Vec<f64>, ForestError> {
        rows.iter()
            .enumerate()
            .map(|(row, x)| {
                self.try_predict_one(x.as_ref()).map_err(|e| match e {
                    ForestError::NonFinite { column, .. } => ForestError::NonFinite { row, column },
                    other => other,
                })
            })
            .collect()
    }

    /// Number of features each row must have.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    /// Total number of nodes over all trees (the JSON blob grows by roughly
    /// 20–30 bytes per node).
    pub fn n_nodes(&self) -> usize {
        self.trees.iter().map(Tree::n_nodes).sum()
    }

    /// Hyper-parameters the forest was trained with.
    pub fn params(&self) -> &ForestParams {
        &self.params
    }

    /// Out-of-bag mean squared error: each training sample is predicted by
    /// the trees whose bootstrap did not contain it, averaged over the
    /// samples left out by at least one tree. `None` when there is none.
    pub fn out_of_bag_mse(&self) -> Option<f64> {
        self.oob_mse
    }

    /// Quantiles of the out-of-bag residuals `target − out-of-bag prediction`, as `(level,
    /// value)` at the [`RESIDUAL_LEVELS`] (empty for a model trained without out-of-bag
    /// samples or written before they were kept).
    pub fn oob_residual_quantiles(&self) -> &[(f64, f64)] {
        &self.oob_residual_quantiles
    }

    /// A central prediction interval of the given coverage (0.5, 0.8 or 0.9) for one row:
    /// the prediction plus the out-of-bag residual quantiles at `(1 − coverage)/2` and
    /// `(1 + coverage)/2` (split-conformal with out-of-bag predictions standing for held-out
    /// ones, so calibrated when training and new rows are alike). `None` when the model holds
    /// no residuals at those levels.
    pub fn interval(&self, x: &[f64], coverage: f64) -> Result<Option<(f64, f64)>, ForestError> {
        let Some((lo, hi)) = self.residual_bounds(coverage) else {
            return Ok(None);
        };
        let y = self.try_predict_one(x)?;
        Ok(Some((y + lo, y + hi)))
    }

    /// The out-of-bag residual quantiles at `(1 − coverage)/2` and `(1 + coverage)/2`: what
    /// [`RandomForest::interval`] adds to a prediction, for a caller that already has it.
    pub fn residual_bounds(&self, coverage: f64) -> Option<(f64, f64)> {
        let at = |level: f64| {
            self.oob_residual_quantiles
                .iter()
                .find(|(l, _)| (l - level).abs() < 1e-9)
                .map(|q| q.1)
        };
        at((1.0 - coverage) / 2.0).zip(at((1.0 + coverage) / 2.0))
    }

    /// Encodes the model as compact (single-line) JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a validated forest always serializes")
    }

    /// Decodes and validates a model produced by [`RandomForest::to_json`].
    ///
    /// Errors: [`ForestError::Json`] for malformed JSON,
    /// [`ForestError::InvalidModel`] for an inconsistent structure.
    pub fn from_json(json: &str) -> Result<Self, ForestError> {
        let wire: ForestWire = serde_json::from_str(json)?;
        RandomForest::try_from(wire)
    }
}

/// Fits a forest on plain rows (`&[Vec<f64>]`, `&[[f64; N]]`, `&[&[f64]]`, …),
/// without building ndarray values.
///
/// Errors: invalid `params`, [`ForestError::SampleCountMismatch`],
/// [`ForestError::NoSamples`], [`ForestError::NoFeatures`],
/// [`ForestError::FeatureCountMismatch`] for ragged rows,
/// [`ForestError::NonFinite`].
pub fn fit_rows<R: AsRef<[f64]>>(
    rows: &[R],
    targets: &[f64],
    params: &ForestParams,
) -> Result<RandomForest, ForestError> {
    fit_rows_out_of_bag(rows, targets, params).map(|(forest, _)| forest)
}

/// Fits a forest like [`fit_rows`] and also returns each row's out-of-bag prediction: the mean
/// of the trees whose bootstrap left the row out (`None` if every tree saw it). These stand for
/// predictions on unseen rows, e.g. to compare the forest with another model on the same rows.
pub fn fit_rows_out_of_bag<R: AsRef<[f64]>>(
    rows: &[R],
    targets: &[f64],
    params: &ForestParams,
) -> Result<(RandomForest, Vec<Option<f64>>), ForestError> {
    params.validate()?;
    if rows.len() != targets.len() {
        return Err(ForestError::SampleCountMismatch {
            records: rows.len(),
            targets: targets.len(),
        });
    }
    let Some(first) = rows.first() else {
        return Err(ForestError::NoSamples);
    };
    let n = rows.len();
    let p = first.as_ref().len();
    if let Some(bad) = rows.iter().find(|r| r.as_ref().len() != p) {
        return Err(ForestError::FeatureCountMismatch {
            expected: p,
            found: bad.as_ref().len(),
        });
    }
    let mut cols = vec![0.0; n * p];
    for (i, row) in rows.iter().enumerate() {
        for (f, &v) in row.as_ref().iter().enumerate() {
            cols[f * n + i] = v;
        }
    }
    fit_columns(cols, targets.to_vec(), p, params)
}

/// Validates column-major data (`cols[f * n + i]`, `n = y.len()`) and fits.
pub(crate) fn fit_columns(
    cols: Vec<f64>,
    y: Vec<f64>,
    p: usize,
    params: &ForestParams,
) -> Result<(RandomForest, Vec<Option<f64>>), ForestError> {
    let n = y.len();
    params.validate()?;
    if n == 0 {
        return Err(ForestError::NoSamples);
    }
    if p == 0 {
        return Err(ForestError::NoFeatures);
    }
    let max_features = params.resolve_max_features(p)?;
    for (row, &target) in y.iter().enumerate() {
        if let Some(column) = (0..p).find(|&f| !cols[f * n + row].is_finite()) {
            return Err(ForestError::NonFinite {
                row,
                column: Some(column),
            });
        }
        if !target.is_finite() {
            return Err(ForestError::NonFinite { row, column: None });
        }
    }
    let data = TrainData::new(cols, y, p);
    let cfg = TreeConfig {
        max_depth: params.max_depth,
        min_samples_leaf: params.min_samples_leaf,
        max_features,
    };
    fit_data(&data, params, cfg, default_workers(n, params.n_trees))
}

/// Number of threads used to grow the trees.
fn default_workers(n_samples: usize, n_trees: usize) -> usize {
    if n_samples.saturating_mul(n_trees) < PARALLEL_MIN_WORK {
        return 1;
    }
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(n_trees)
}

/// Grows tree `index`: bootstrap from its own seeded generator, then CART.
/// Returns the tree and the in-bag mask of the samples.
fn grow_tree(
    data: &TrainData,
    params: &ForestParams,
    cfg: TreeConfig,
    index: usize,
) -> (Tree, Vec<bool>) {
    let mut rng = SplitMix64::new(tree_seed(params.seed, index));
    let n = data.n_samples();
    let m = params.bootstrap_size(n);
    let samples: Vec<usize> = (0..m).map(|_| rng.gen_range(0..n)).collect();
    let mut in_bag = vec![false; n];
    for &i in &samples {
        in_bag[i] = true;
    }
    let tree = build_tree(data, &samples, &cfg, &mut rng);
    (tree, in_bag)
}

/// Grows all trees on `workers` threads; the result does not depend on
/// `workers` because each tree only depends on its index.
pub(crate) fn fit_data(
    data: &TrainData,
    params: &ForestParams,
    cfg: TreeConfig,
    workers: usize,
) -> Result<(RandomForest, Vec<Option<f64>>), ForestError> {
    let n_trees = params.n_trees;
    let grown: Vec<(Tree, Vec<bool>)> = if workers <= 1 {
        (0..n_trees)
            .map(|t| grow_tree(data, params, cfg, t))
            .collect()
    } else {
        let mut slots: Vec<Option<(Tree, Vec<bool>)>> = (0..n_trees).map(|_| None).collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    scope.spawn(move || {
                        (w..n_trees)
                            .step_by(workers)
                            .map(|t| (t, grow_tree(data, params, cfg, t)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for handle in handles {
                match handle.join() {
                    Ok(done) => {
                        for (t, result) in done {
                            slots[t] = Some(result);
                        }
                    }
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        });
        slots
            .into_iter()
            .map(|s| s.expect("every tree index is grown by one worker"))
            .collect()
    };

    // Out-of-bag error, accumulated in tree order for reproducibility, as
    // residuals (exact zero for a perfectly fitted target).
    let n = data.n_samples();
    let mut residuals = vec![0.0; n];
    let mut counts = vec![0usize; n];
    for (tree, in_bag) in &grown {
        for (i, _) in in_bag.iter().enumerate().filter(|(_, &b)| !b) {
            residuals[i] += tree.predict_by(|f| data.x(i, f)) - data.y(i);
            counts[i] += 1;
        }
    }
    let (mut se, mut k) = (0.0, 0usize);
    let mut oob_residuals = Vec::new();
    let mut oob_predictions = vec![None; n];
    for (i, (&r, &c)) in residuals.iter().zip(&counts).enumerate() {
        if c > 0 {
            let e = r / c as f64;
            se += e * e;
            k += 1;
            oob_residuals.push(-e);
            oob_predictions[i] = Some(data.y(i) + e);
        }
    }
    let oob_mse = Some(se / k.max(1) as f64).filter(|m| k > 0 && m.is_finite());
    let sorted = tweetoscope_stats::sorted(&oob_residuals);
    let oob_residual_quantiles = if sorted.iter().all(|v| v.is_finite()) && !sorted.is_empty() {
        RESIDUAL_LEVELS
            .iter()
            .map(|&level| (level, tweetoscope_stats::quantile_sorted(&sorted, level)))
            .collect()
    } else {
        Vec::new()
    };

    let trees: Vec<Tree> = grown.into_iter().map(|(t, _)| t).collect();
    for tree in &trees {
        // Only fails if sums of huge targets overflowed.
        tree.validate(data.n_features())
            .map_err(|e| ForestError::InvalidModel(format!("training overflowed: {e}")))?;
    }
    Ok((
        RandomForest {
            params: params.clone(),
            n_features: data.n_features(),
            oob_mse,
            oob_residual_quantiles,
            trees,
        },
        oob_predictions,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_count_does_not_change_the_model() {
        let n = 200;
        let mut rng = SplitMix64::new(3);
        let mut cols = vec![0.0f64; n * 3];
        for v in cols.iter_mut() {
            *v = rng.gen_range(-1.0..1.0);
        }
        let y: Vec<f64> = (0..n)
            .map(|i| cols[i] * 2.0 + cols[n + i].powi(2) + rng.gen_range(-0.1..0.1))
            .collect();
        let data = TrainData::new(cols, y, 3);
        let params = ForestParams {
            n_trees: 13,
            max_features: Some(2),
            seed: 99,
            ..ForestParams::default()
        };
        let cfg = TreeConfig {
            max_depth: params.max_depth,
            min_samples_leaf: params.min_samples_leaf,
            max_features: 2,
        };
        let one = fit_data(&data, &params, cfg, 1).unwrap();
        let four = fit_data(&data, &params, cfg, 4).unwrap();
        let thirteen = fit_data(&data, &params, cfg, 13).unwrap();
        assert_eq!(one, four);
        assert_eq!(one, thirteen);
        assert!(one.0.out_of_bag_mse().is_some());
        // Out-of-bag predictions: every row left out by some of the 13 trees, and their squared
        // errors are the forest's out-of-bag error.
        let oob: Vec<f64> = one
            .1
            .iter()
            .map(|p| p.expect("left out by a tree"))
            .collect();
        let mse = oob
            .iter()
            .enumerate()
            .map(|(i, p)| (p - data.y(i)).powi(2))
            .sum::<f64>()
            / n as f64;
        assert!((mse - one.0.out_of_bag_mse().unwrap()).abs() < 1e-9 * mse.max(1.0));
    }
}
