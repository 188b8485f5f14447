//! linfa integration: `Fit` for [`ForestParams`], `PredictInplace` for [`RandomForest`].

use linfa::dataset::{AsSingleTargets, DatasetBase};
use linfa::traits::{Fit, PredictInplace};
use ndarray::{Array1, ArrayBase, Data, Ix2};

use crate::forest::fit_columns;
use crate::{ForestError, ForestParams, RandomForest};

impl<D, T> Fit<ArrayBase<D, Ix2>, T, ForestError> for ForestParams
where
    D: Data<Elem = f64>,
    T: AsSingleTargets<Elem = f64>,
{
    type Object = RandomForest;

    /// Fits a forest on an `n × p` record matrix and `n` targets, e.g. a
    /// `linfa::Dataset<f64, f64, Ix1>`.
    fn fit(
        &self,
        dataset: &DatasetBase<ArrayBase<D, Ix2>, T>,
    ) -> Result<RandomForest, ForestError> {
        let x = &dataset.records;
        let y = dataset.targets.as_single_targets();
        if x.nrows() != y.len() {
            return Err(ForestError::SampleCountMismatch {
                records: x.nrows(),
                targets: y.len(),
            });
        }
        let mut cols = Vec::with_capacity(x.len());
        for column in x.columns() {
            cols.extend(column.iter().copied());
        }
        fit_columns(cols, y.to_vec(), x.ncols(), self).map(|(forest, _)| forest)
    }
}

impl<D> PredictInplace<ArrayBase<D, Ix2>, Array1<f64>> for RandomForest
where
    D: Data<Elem = f64>,
{
    /// Predicts every row of `x` into `y`.
    ///
    /// # Panics
    /// If `x` does not have `n_features()` columns or `y` has not one entry per row.
    fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<f64>) {
        assert_eq!(
            x.ncols(),
            self.n_features(),
            "RandomForest: records have {} features, model expects {}",
            x.ncols(),
            self.n_features()
        );
        assert_eq!(
            x.nrows(),
            y.len(),
            "RandomForest: one target per record row"
        );
        let mut buf = vec![0.0; x.ncols()];
        for (row, out) in x.rows().into_iter().zip(y.iter_mut()) {
            *out = match row.as_slice() {
                Some(slice) => self.predict_one(slice),
                None => {
                    for (b, &v) in buf.iter_mut().zip(row.iter()) {
                        *b = v;
                    }
                    self.predict_one(&buf)
                }
            };
        }
    }

    fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<f64> {
        Array1::zeros(x.nrows())
    }
}
