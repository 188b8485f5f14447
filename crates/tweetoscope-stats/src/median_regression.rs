//! Linear median regression: `y ≈ a + b·x` fitted by least absolute deviations (LAD), the linear
//! model of the conditional *median* of `y`. On log sizes it is what a median relative error
//! asks for, and a few cascades that grew a hundredfold do not pull the line as they pull a
//! least-squares one.

use serde::{Deserialize, Serialize};

/// A fitted median regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MedianRegression {
    /// The constant term.
    pub intercept: f64,
    /// One coefficient per feature, in the order of the rows it was fitted on.
    pub coefficients: Vec<f64>,
}

/// Iterations of the reweighted least squares at most (each a `(k+1)²` solve).
const MAX_ITERATIONS: usize = 200;

impl MedianRegression {
    /// Fits the line minimising `Σ |yᵢ − a − b·xᵢ|` by iteratively reweighted least squares
    /// (weights `1 / max(|rᵢ|, δ)`, δ a millionth of the targets' spread), on standardised
    /// features. A feature that does not vary gets the coefficient 0. `None` without rows, with
    /// rows of different lengths, or with a value that is not finite.
    pub fn fit(rows: &[Vec<f64>], targets: &[f64]) -> Option<Self> {
        let n = rows.len();
        let k = rows.first()?.len();
        if n != targets.len()
            || rows
                .iter()
                .any(|r| r.len() != k || r.iter().any(|v| !v.is_finite()))
            || targets.iter().any(|v| !v.is_finite())
        {
            return None;
        }
        // Standardise: the solve works on z = (x − centre) / scale, constant columns dropped.
        let centre: Vec<f64> = (0..k)
            .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n as f64)
            .collect();
        let scale: Vec<f64> = (0..k)
            .map(|j| {
                let var = rows.iter().map(|r| (r[j] - centre[j]).powi(2)).sum::<f64>() / n as f64;
                var.sqrt()
            })
            .collect();
        let used: Vec<usize> = (0..k)
            .filter(|&j| scale[j] > 1e-12 * (1.0 + centre[j].abs()))
            .collect();
        let design = Design {
            width: used.len() + 1,
            values: rows
                .iter()
                .flat_map(|r| {
                    std::iter::once(1.0).chain(used.iter().map(|&j| (r[j] - centre[j]) / scale[j]))
                })
                .collect(),
        };
        let spread = crate::quantile(targets, 0.75) - crate::quantile(targets, 0.25);
        let delta = 1e-6 * spread.max(1e-6);
        // Unit residuals, hence unit weights: least squares first.
        let mut residuals = vec![1.0_f64; n];
        let mut weights = vec![0.0; n];
        let mut best: Option<(f64, Vec<f64>)> = None;
        for _ in 0..=MAX_ITERATIONS {
            for (w, r) in weights.iter_mut().zip(&residuals) {
                *w = 1.0 / r.abs().max(delta);
            }
            let beta = design.weighted_least_squares(targets, &weights)?;
            let loss = design.residuals(targets, &beta, &mut residuals);
            let gain = best.as_ref().map_or(f64::INFINITY, |(b, _)| b - loss);
            if gain > 0.0 {
                best = Some((loss, beta));
            }
            if gain.abs() <= 1e-12 * (1.0 + loss) {
                break;
            }
        }
        // Back to the original features.
        let (_, beta) = best?;
        let mut coefficients = vec![0.0; k];
        let mut intercept = beta[0];
        for (slot, &j) in used.iter().enumerate() {
            coefficients[j] = beta[slot + 1] / scale[j];
            intercept -= coefficients[j] * centre[j];
        }
        Some(Self {
            intercept,
            coefficients,
        })
    }

    /// The fitted median of `y` for features `x` (NaN if `x` has the wrong length).
    pub fn predict(&self, x: &[f64]) -> f64 {
        if x.len() != self.coefficients.len() {
            return f64::NAN;
        }
        self.intercept + dot(&self.coefficients, x)
    }
}

/// A design matrix stored row after row: a constant 1, then the standardised features.
struct Design {
    width: usize,
    values: Vec<f64>,
}

impl Design {
    fn rows(&self) -> std::slice::ChunksExact<'_, f64> {
        self.values.chunks_exact(self.width)
    }

    /// Writes `y − zβ` of every row into `residuals` and returns `Σ |y − zβ|`.
    fn residuals(&self, targets: &[f64], beta: &[f64], residuals: &mut [f64]) -> f64 {
        let mut loss = 0.0;
        for ((z, y), r) in self.rows().zip(targets).zip(residuals) {
            *r = y - dot(z, beta);
            loss += r.abs();
        }
        loss
    }

    /// Solves the weighted normal equations `(Zᵀ W Z) β = Zᵀ W y` (one triangle accumulated,
    /// the other mirrored) by Gaussian elimination with partial pivoting (a tiny ridge keeps
    /// collinear features solvable); `None` if singular.
    fn weighted_least_squares(&self, targets: &[f64], weights: &[f64]) -> Option<Vec<f64>> {
        let p = self.width;
        let mut a = vec![vec![0.0; p + 1]; p];
        for ((z, y), w) in self.rows().zip(targets).zip(weights) {
            for i in 0..p {
                let wz = w * z[i];
                let row = &mut a[i];
                for j in i..p {
                    row[j] += wz * z[j];
                }
                row[p] += wz * y;
            }
        }
        for (i, j) in (0..p).flat_map(|i| (0..i).map(move |j| (i, j))) {
            a[i][j] = a[j][i];
        }
        let total_weight: f64 = weights.iter().sum();
        for (i, row) in a.iter_mut().enumerate().skip(1) {
            row[i] += 1e-10 * total_weight;
        }
        for col in 0..p {
            let pivot = (col..p).max_by(|&r, &s| a[r][col].abs().total_cmp(&a[s][col].abs()))?;
            if a[pivot][col].abs() < 1e-300 {
                return None;
            }
            a.swap(col, pivot);
            let pivot_row = a[col].clone();
            for (r, row) in a.iter_mut().enumerate() {
                let f = row[col] / pivot_row[col];
                if r != col && f != 0.0 {
                    for (v, pv) in row.iter_mut().zip(&pivot_row).skip(col) {
                        *v -= f * pv;
                    }
                }
            }
        }
        Some((0..p).map(|i| a[i][p] / a[i][i]).collect())
    }
}

/// Residuals `y − ŷ` of every row, each predicted by a median regression fitted without the
/// fold it falls in (`folds` folds of rows taken in turn: row i in fold i mod `folds`): honest
/// errors from which prediction intervals can be read. `None` if a fold's
/// fit fails or there are fewer rows than twice the folds.
pub fn cross_fitted_residuals(
    rows: &[Vec<f64>],
    targets: &[f64],
    folds: usize,
) -> Option<Vec<f64>> {
    if folds < 2 || rows.len() < 2 * folds || rows.len() != targets.len() {
        return None;
    }
    let mut residuals = vec![f64::NAN; rows.len()];
    for fold in 0..folds {
        let (train_rows, train_targets): (Vec<Vec<f64>>, Vec<f64>) = rows
            .iter()
            .zip(targets)
            .enumerate()
            .filter(|(i, _)| i % folds != fold)
            .map(|(_, (r, y))| (r.clone(), *y))
            .unzip();
        let model = MedianRegression::fit(&train_rows, &train_targets)?;
        for i in (fold..rows.len()).step_by(folds) {
            residuals[i] = targets[i] - model.predict(&rows[i]);
        }
    }
    Some(residuals)
}

/// The central interval of the next error, at `coverage`, from errors of past predictions made
/// without their rows (such as [`cross_fitted_residuals`]): the split-conformal order
/// statistics, the ⌊(n+1)·a⌋-th and ⌈(n+1)·(1−a)⌉-th smallest of the n errors with
/// a = (1 − coverage)/2, clamped to the extremes. Slightly wider than the plain quantiles, so
/// that it holds for about `coverage` of new rows even when n is small. `None` without errors
/// or with one that is not finite.
pub fn conformal_bounds(errors: &[f64], coverage: f64) -> Option<(f64, f64)> {
    if errors.is_empty() || errors.iter().any(|e| !e.is_finite()) {
        return None;
    }
    let sorted = crate::sorted(errors);
    let n = sorted.len();
    let tail = ((1.0 - coverage) / 2.0).clamp(0.0, 0.5);
    let rank_low = ((n + 1) as f64 * tail).floor() as usize;
    let rank_high = ((n + 1) as f64 * (1.0 - tail)).ceil() as usize;
    Some((
        sorted[rank_low.clamp(1, n) - 1],
        sorted[rank_high.clamp(1, n) - 1],
    ))
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_an_exact_line_and_ignores_outliers_that_pull_least_squares() {
        // y = 1 + 2·x₀ − x₁ exactly, for 30 rows; then 5 rows pushed far up.
        let rows: Vec<Vec<f64>> = (0..35)
            .map(|i| vec![i as f64 / 7.0, ((i * 13) % 11) as f64])
            .collect();
        let mut y: Vec<f64> = rows.iter().map(|r| 1.0 + 2.0 * r[0] - r[1]).collect();
        for v in y.iter_mut().skip(30) {
            *v += 100.0;
        }
        let m = MedianRegression::fit(&rows, &y).unwrap();
        // Reweighted least squares reaches the exact line to a few millionths.
        assert!((m.intercept - 1.0).abs() < 1e-4, "{m:?}");
        assert!((m.coefficients[0] - 2.0).abs() < 1e-4, "{m:?}");
        assert!((m.coefficients[1] + 1.0).abs() < 1e-4, "{m:?}");
        assert!((m.predict(&[1.0, 1.0]) - 2.0).abs() < 1e-4);
    }

    #[test]
    fn without_features_it_is_the_median() {
        let rows = vec![vec![]; 5];
        let m = MedianRegression::fit(&rows, &[1.0, 9.0, 3.0, 100.0, 2.0]).unwrap();
        assert!((m.intercept - 3.0).abs() < 1e-5, "{m:?}");
        // A constant feature carries no information: coefficient 0, same median.
        let rows = vec![vec![4.0]; 5];
        let m = MedianRegression::fit(&rows, &[1.0, 9.0, 3.0, 100.0, 2.0]).unwrap();
        assert_eq!(m.coefficients, vec![0.0]);
        assert!((m.predict(&[4.0]) - 3.0).abs() < 1e-5, "{m:?}");
    }

    #[test]
    fn halves_the_rows_above_and_below() {
        // Noisy line with skewed noise: about as many rows above the fit as below.
        let rows: Vec<Vec<f64>> = (0..200).map(|i| vec![(i % 20) as f64]).collect();
        let y: Vec<f64> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| 0.5 * r[0] + ((i * 7919) % 101) as f64 / 101.0 * ((i % 3) as f64 + 0.1))
            .collect();
        let m = MedianRegression::fit(&rows, &y).unwrap();
        let above = rows
            .iter()
            .zip(&y)
            .filter(|(r, y)| **y > m.predict(r) + 1e-9)
            .count();
        let below = rows
            .iter()
            .zip(&y)
            .filter(|(r, y)| **y < m.predict(r) - 1e-9)
            .count();
        assert!(above.abs_diff(below) <= 3, "{above} above, {below} below");
    }

    #[test]
    fn refuses_what_it_cannot_fit() {
        assert!(MedianRegression::fit(&[], &[]).is_none());
        assert!(MedianRegression::fit(&[vec![1.0]], &[1.0, 2.0]).is_none());
        assert!(MedianRegression::fit(&[vec![1.0], vec![1.0, 2.0]], &[1.0, 2.0]).is_none());
        assert!(MedianRegression::fit(&[vec![f64::NAN]], &[1.0]).is_none());
        let m = MedianRegression::fit(&[vec![1.0], vec![2.0]], &[1.0, 2.0]).unwrap();
        assert!(m.predict(&[1.0, 2.0]).is_nan(), "wrong width");
    }

    #[test]
    fn conformal_bounds_are_the_order_statistics_of_split_conformal_prediction() {
        // 40 errors 1..=40: a 80 % interval takes the 4th (⌊41·0.1⌋) and 37th (⌈41·0.9⌉).
        let errors: Vec<f64> = (1..=40).rev().map(f64::from).collect();
        assert_eq!(conformal_bounds(&errors, 0.8), Some((4.0, 37.0)));
        // Too few errors for the level: the extremes.
        assert_eq!(conformal_bounds(&[2.0, 1.0, 3.0], 0.8), Some((1.0, 3.0)));
        assert_eq!(conformal_bounds(&[], 0.8), None);
        assert_eq!(conformal_bounds(&[1.0, f64::NAN], 0.8), None);
    }

    #[test]
    fn cross_fitted_residuals_come_from_models_that_did_not_see_the_row() {
        // y = x except one row far off: fitted on the others, that row's residual is its offset,
        // and the other rows' residuals stay zero.
        let rows: Vec<Vec<f64>> = (0..20).map(|i| vec![i as f64]).collect();
        let mut y: Vec<f64> = (0..20).map(|i| i as f64).collect();
        y[7] += 50.0;
        let r = cross_fitted_residuals(&rows, &y, 5).unwrap();
        assert!((r[7] - 50.0).abs() < 1e-5, "{r:?}");
        assert!(
            r.iter().enumerate().all(|(i, v)| i == 7 || v.abs() < 1e-5),
            "{r:?}"
        );
        assert!(cross_fitted_residuals(&rows[..9], &y[..9], 5).is_none());
    }
}
