//! Hyper-parameters of the forest.

use serde::{Deserialize, Serialize};

use crate::ForestError;

/// Hyper-parameters of a [`RandomForest`](crate::RandomForest).
///
/// Missing fields take their [`Default`] value when deserialized, so a
/// configuration file only needs to list the fields it overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForestParams {
    /// Number of trees (≥ 1). Default 100.
    pub n_trees: usize,
    /// Maximum tree depth; the root is depth 0, so 1 gives a stump (≥ 1). Default 12.
    pub max_depth: usize,
    /// Minimum number of bootstrap samples in every leaf (≥ 1). Default 5.
    pub min_samples_leaf: usize,
    /// Features drawn at random at each node; `None` = all features
    /// (plain bagging, the usual choice for regression). Must be in
    /// `1..=n_features` when set. Default `None`.
    pub max_features: Option<usize>,
    /// Bootstrap size as a fraction of the number of samples, drawn with
    /// replacement; in `(0, 1]`. Default 1.0.
    pub sample_fraction: f64,
    /// Seed of the random generators; same seed and data ⇒ identical model. Default 0.
    pub seed: u64,
}

impl Default for ForestParams {
    /// 100 trees, depth 12, 5 samples per leaf, all features, full-size bootstrap, seed 0.
    fn default() -> Self {
        ForestParams {
            n_trees: 100,
            max_depth: 12,
            min_samples_leaf: 5,
            max_features: None,
            sample_fraction: 1.0,
            seed: 0,
        }
    }
}

impl ForestParams {
    /// Checks every parameter that does not depend on the data.
    ///
    /// `max_features` is additionally checked against the number of features
    /// when fitting.
    pub fn validate(&self) -> Result<(), ForestError> {
        fn bad(name: &'static str, value: impl std::fmt::Debug, allowed: &str) -> ForestError {
            ForestError::InvalidParameter {
                name,
                value: format!("{value:?}"),
                allowed: allowed.to_owned(),
            }
        }
        if self.n_trees == 0 {
            return Err(bad("n_trees", self.n_trees, "an integer >= 1"));
        }
        if self.max_depth == 0 {
            return Err(bad("max_depth", self.max_depth, "an integer >= 1"));
        }
        if self.min_samples_leaf == 0 {
            return Err(bad(
                "min_samples_leaf",
                self.min_samples_leaf,
                "an integer >= 1",
            ));
        }
        if self.max_features == Some(0) {
            return Err(bad(
                "max_features",
                self.max_features,
                "None (all features) or Some(k) with 1 <= k <= n_features",
            ));
        }
        let f = self.sample_fraction;
        if !(f.is_finite() && f > 0.0 && f <= 1.0) {
            return Err(bad("sample_fraction", f, "a number in (0, 1]"));
        }
        Ok(())
    }

    /// Validates the parameters against a data set with `n_features` columns
    /// and returns the number of features to draw at each node.
    pub(crate) fn resolve_max_features(&self, n_features: usize) -> Result<usize, ForestError> {
        self.validate()?;
        match self.max_features {
            None => Ok(n_features),
            Some(k) if (1..=n_features).contains(&k) => Ok(k),
            Some(k) => Err(ForestError::InvalidParameter {
                name: "max_features",
                value: format!("Some({k})"),
                allowed: format!("None (all features) or Some(k) with 1 <= k <= {n_features}"),
            }),
        }
    }

    /// Bootstrap size for `n` samples: `round(sample_fraction * n)`, at least 1.
    pub(crate) fn bootstrap_size(&self, n: usize) -> usize {
        ((self.sample_fraction * n as f64).round() as usize).clamp(1, n.max(1))
    }
}
