//! Random-forest regressor for the Tweetoscope learner.
//!
//! linfa 0.8 ships no random-forest *regressor*, so this crate provides one
//! that plugs into linfa's traits:
//!
//! * [`ForestParams`] implements [`linfa::traits::Fit`] on a
//!   `linfa::Dataset<f64, f64, Ix1>` (records `n × p`, one target per row) and
//!   returns a [`RandomForest`];
//! * [`RandomForest`] implements [`linfa::traits::PredictInplace`], so
//!   `model.predict(&records)` works through linfa's blanket `Predict`.
//!
//! Trees are CART regression trees (variance-reduction splits at midpoints
//! between distinct sorted values, leaves store the mean), each grown on a
//! bootstrap sample with its own generator seeded from
//! [`ForestParams::seed`] and the tree index: the same seed and data always
//! give the same model, whatever the number of threads used. Models travel as
//! compact JSON ([`RandomForest::to_json`] / [`RandomForest::from_json`]).
//!
//! ```
//! use tweetoscope_forest::{fit_rows, ForestParams, RandomForest};
//!
//! let rows: Vec<[f64; 2]> = (0..50).map(|i| [i as f64, (i % 7) as f64]).collect();
//! let y: Vec<f64> = rows.iter().map(|r| if r[0] < 25.0 { 1.0 } else { 3.0 }).collect();
//! let params = ForestParams { n_trees: 10, min_samples_leaf: 2, ..ForestParams::default() };
//! let forest = fit_rows(&rows, &y, &params)?;
//! assert!((forest.predict_one(&[40.0, 3.0]) - 3.0).abs() < 0.5);
//! let copy = RandomForest::from_json(&forest.to_json())?;
//! assert_eq!(copy.predict_one(&[40.0, 3.0]), forest.predict_one(&[40.0, 3.0]));
//! # Ok::<(), tweetoscope_forest::ForestError>(())
//! ```

mod error;
mod forest;
mod linfa_impl;
mod params;
mod rng;
mod tree;

pub use error::ForestError;
pub use forest::{
    fit_rows, fit_rows_out_of_bag, RandomForest, MODEL_FORMAT_VERSION, RESIDUAL_LEVELS,
};
pub use params::ForestParams;
