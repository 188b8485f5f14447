//! Error type of the crate.

use std::fmt;

/// Everything that can go wrong when fitting, querying or decoding a forest.
#[derive(Debug, thiserror::Error)]
pub enum ForestError {
    /// The training set contains no sample.
    #[error("no training samples")]
    NoSamples,

    /// The training records have zero feature columns.
    #[error("training records have no feature columns")]
    NoFeatures,

    /// A feature value or a target is NaN or infinite.
    #[error("non-finite value at row {row}, {}", Location(*.column))]
    NonFinite {
        /// Row (sample) index of the offending value.
        row: usize,
        /// Feature column of the offending value, `None` for the target.
        column: Option<usize>,
    },

    /// A row does not have the number of features the model expects.
    #[error("feature-count mismatch: expected {expected} features, found {found}")]
    FeatureCountMismatch {
        /// Number of features expected (model or first training row).
        expected: usize,
        /// Number of features actually provided.
        found: usize,
    },

    /// The number of targets differs from the number of records.
    #[error("sample-count mismatch: {records} records but {targets} targets")]
    SampleCountMismatch {
        /// Number of record rows.
        records: usize,
        /// Number of targets.
        targets: usize,
    },

    /// A hyper-parameter is outside its allowed range.
    #[error("invalid parameter `{name}` = {value}: allowed {allowed}")]
    InvalidParameter {
        /// Field name in [`ForestParams`](crate::ForestParams).
        name: &'static str,
        /// The rejected value, formatted.
        value: String,
        /// Human-readable description of the allowed values.
        allowed: String,
    },

    /// A decoded model blob is structurally inconsistent.
    #[error("invalid model: {0}")]
    InvalidModel(String),

    /// A model blob is not valid JSON for this format.
    #[error("model JSON: {0}")]
    Json(#[from] serde_json::Error),

    /// Error reported by linfa.
    #[error(transparent)]
    Linfa(#[from] linfa::error::Error),
}

/// Display helper for [`ForestError::NonFinite`] locations.
struct Location(Option<usize>);

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(c) => write!(f, "feature column {c}"),
            None => f.write_str("target"),
        }
    }
}
