//! Bivariate log-normal prior on `(p, beta)` for the MAP fit.

use crate::HawkesError;

/// Prior on `(p, beta)` given by its moments in natural space: means, standard deviations and
/// the correlation of `p` and `beta`. The distribution is the bivariate log-normal with exactly
/// these moments (see [`Prior::log_space`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prior {
    /// Mean of `p`.
    pub mu_p: f64,
    /// Mean of `beta` (1/s).
    pub mu_beta: f64,
    /// Standard deviation of `p`.
    pub sigma_p: f64,
    /// Standard deviation of `beta` (1/s).
    pub sigma_beta: f64,
    /// Correlation of `p` and `beta`.
    pub rho: f64,
}

impl Default for Prior {
    /// `(mu_p, mu_beta, sigma_p, sigma_beta, rho) = (0.02, 2e-4, 0.01, 1e-3, -0.1)`.
    fn default() -> Self {
        Self {
            mu_p: 0.02,
            mu_beta: 2e-4,
            sigma_p: 0.01,
            sigma_beta: 1e-3,
            rho: -0.1,
        }
    }
}

/// The Gaussian on `(ln p, ln beta)` equivalent to a [`Prior`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogNormalParams {
    /// Mean of `ln p`.
    pub mean_log_p: f64,
    /// Mean of `ln beta`.
    pub mean_log_beta: f64,
    /// Variance of `ln p`.
    pub var_log_p: f64,
    /// Variance of `ln beta`.
    pub var_log_beta: f64,
    /// Covariance of `ln p` and `ln beta`.
    pub cov_log: f64,
}

impl Prior {
    /// Converts the moments to log space: `σ_log² = ln(1 + σ²/μ²)`, `μ_log = ln μ − σ_log²/2`,
    /// `cov_log = ln(1 + ρ·σ_p·σ_β/(μ_p·μ_β))`. Fails if a moment is not finite, a mean or
    /// standard deviation is not positive, `|rho| > 1`, or the log-space covariance matrix is
    /// not positive definite.
    pub fn log_space(&self) -> Result<LogNormalParams, HawkesError> {
        let all = [
            self.mu_p,
            self.mu_beta,
            self.sigma_p,
            self.sigma_beta,
            self.rho,
        ];
        if all.iter().any(|v| !v.is_finite()) {
            return Err(HawkesError::InvalidPrior {
                reason: "all moments must be finite",
            });
        }
        if self.mu_p <= 0.0 || self.mu_beta <= 0.0 {
            return Err(HawkesError::InvalidPrior {
                reason: "means must be positive",
            });
        }
        if self.sigma_p <= 0.0 || self.sigma_beta <= 0.0 {
            return Err(HawkesError::InvalidPrior {
                reason: "standard deviations must be positive",
            });
        }
        if self.rho.abs() > 1.0 {
            return Err(HawkesError::InvalidPrior {
                reason: "correlation must be in [-1, 1]",
            });
        }
        let cp = self.sigma_p / self.mu_p;
        let cb = self.sigma_beta / self.mu_beta;
        let var_log_p = (cp * cp).ln_1p();
        let var_log_beta = (cb * cb).ln_1p();
        let arg = self.rho * cp * cb;
        if arg <= -1.0 {
            return Err(HawkesError::InvalidPrior {
                reason:
                    "the negative correlation is too strong for a log-normal with these moments",
            });
        }
        let cov_log = arg.ln_1p();
        let det = var_log_p * var_log_beta - cov_log * cov_log;
        if !det.is_finite() || det <= 0.0 {
            return Err(HawkesError::InvalidPrior {
                reason: "the log-space covariance matrix is not positive definite",
            });
        }
        Ok(LogNormalParams {
            mean_log_p: self.mu_p.ln() - 0.5 * var_log_p,
            mean_log_beta: self.mu_beta.ln() - 0.5 * var_log_beta,
            var_log_p,
            var_log_beta,
            cov_log,
        })
    }

    /// Log-density of the log-normal prior at `(p, beta)` (with respect to `dp·dbeta`, so it
    /// includes the Jacobian terms `−ln p − ln beta`). `−∞` if `p` or `beta` is not positive;
    /// NaN if the prior itself is invalid (see [`Prior::log_space`]).
    pub fn log_density(&self, p: f64, beta: f64) -> f64 {
        match self.log_space() {
            Ok(l) => l.log_density(p, beta),
            Err(_) => f64::NAN,
        }
    }
}

impl LogNormalParams {
    fn det(&self) -> f64 {
        self.var_log_p * self.var_log_beta - self.cov_log * self.cov_log
    }

    /// Log-density at `(p, beta)` in natural space (see [`Prior::log_density`]).
    pub fn log_density(&self, p: f64, beta: f64) -> f64 {
        if p.is_nan() || beta.is_nan() {
            return f64::NAN;
        }
        if p <= 0.0 || beta <= 0.0 {
            return f64::NEG_INFINITY;
        }
        self.log_density_log_space(p.ln(), beta.ln()).0
    }

    /// Log-density in natural space as a function of `(ln p, ln beta)`, with its gradient with
    /// respect to `(ln p, ln beta)`.
    pub(crate) fn log_density_log_space(&self, lp: f64, lb: f64) -> (f64, [f64; 2]) {
        let det = self.det();
        let u = lp - self.mean_log_p;
        let v = lb - self.mean_log_beta;
        // Σ⁻¹·(u, v)
        let iu = (self.var_log_beta * u - self.cov_log * v) / det;
        let iv = (self.var_log_p * v - self.cov_log * u) / det;
        let quad = u * iu + v * iv;
        let value = -std::f64::consts::TAU.ln() - 0.5 * det.ln() - 0.5 * quad - lp - lb;
        (value, [-iu - 1.0, -iv - 1.0])
    }

    /// Mode of the density in natural space: `ln x = mean − Σ·(1, 1)`, returned as `(p, beta)`.
    pub fn mode(&self) -> (f64, f64) {
        let lp = self.mean_log_p - self.var_log_p - self.cov_log;
        let lb = self.mean_log_beta - self.cov_log - self.var_log_beta;
        (lp.exp(), lb.exp())
    }
}
