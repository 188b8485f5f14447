//! Choice of the time kernel and a kernel-agnostic fit result.

use std::fmt;
use std::str::FromStr;

use crate::power_law::{self, PowerLawFit};
use crate::{fit, predict_final_size, FitConfig, HawkesError, HawkesFit};

/// Time kernel of the Hawkes process, chosen per deployment.
///
/// Written `exponential` or `power-law` (in `Display`, `FromStr` and serde); `FromStr` also
/// accepts `exp`, `power_law`, `powerlaw` and `pl`, in any case.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Kernel {
    /// `φ(m, τ) = p·m·β·e^{−βτ}` (see [`fit`](crate::fit())).
    #[default]
    Exponential,
    /// `φ(m, τ) = K·m^β·(τ + c)^{−(1+θ)}` (see [`power_law`](crate::power_law)).
    PowerLaw,
}

impl Kernel {
    /// Both kernels.
    pub const ALL: [Kernel; 2] = [Kernel::Exponential, Kernel::PowerLaw];

    /// The canonical name: `exponential` or `power-law`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kernel::Exponential => "exponential",
            Kernel::PowerLaw => "power-law",
        }
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kernel {
    type Err = HawkesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "exponential" | "exp" => Ok(Kernel::Exponential),
            "power-law" | "power_law" | "powerlaw" | "pl" => Ok(Kernel::PowerLaw),
            _ => Err(HawkesError::UnknownKernel { name: s.to_owned() }),
        }
    }
}

/// Result of [`fit_kernel`], whatever the kernel.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KernelFit {
    /// The kernel fitted.
    pub kernel: Kernel,
    /// Fitted parameters: `[p, beta]` (exponential) or `[k, beta, c, theta]` (power law, where
    /// `beta` is the mark exponent).
    pub params: Vec<f64>,
    /// Branching factor `n*` (below `max_branching`).
    pub n_star: f64,
    /// `G1`: expected number of direct children of the observed events after the horizon.
    pub g1: f64,
    /// Number of observed events.
    pub n_obs: usize,
    /// Maximised objective (see [`HawkesFit::log_objective`] and
    /// [`PowerLawFit::log_objective`]).
    pub log_objective: f64,
    /// Optimiser iterations used (see [`HawkesFit::iterations`] and
    /// [`PowerLawFit::iterations`]).
    pub iterations: u64,
}

impl KernelFit {
    /// Predicted final size `n + omega·G1/(1 − n*)` (see [`predict_final_size`]).
    pub fn predicted_size(&self, omega: f64) -> Result<f64, HawkesError> {
        predict_final_size(self.n_obs, self.g1, self.n_star, omega)
    }
}

impl From<HawkesFit> for KernelFit {
    fn from(f: HawkesFit) -> Self {
        Self {
            kernel: Kernel::Exponential,
            params: vec![f.p, f.beta],
            n_star: f.n_star,
            g1: f.g1,
            n_obs: f.n_obs,
            log_objective: f.log_objective,
            iterations: f.iterations,
        }
    }
}

impl From<PowerLawFit> for KernelFit {
    fn from(f: PowerLawFit) -> Self {
        Self {
            kernel: Kernel::PowerLaw,
            params: vec![f.k, f.beta, f.c, f.theta],
            n_star: f.n_star,
            g1: f.g1,
            n_obs: f.n_obs,
            log_objective: f.log_objective,
            iterations: f.iterations,
        }
    }
}

/// Fits the chosen kernel: [`fit`](crate::fit()) (MAP or MLE per `config.prior`) for
/// [`Kernel::Exponential`], [`power_law::fit`] (MLE, default [`power_law::PowerLawBounds`])
/// for [`Kernel::PowerLaw`]. Same input conventions and errors as those.
pub fn fit_kernel(
    kernel: Kernel,
    times: &[f64],
    marks: &[f64],
    horizon: f64,
    config: &FitConfig,
) -> Result<KernelFit, HawkesError> {
    match kernel {
        Kernel::Exponential => fit(times, marks, horizon, config).map(KernelFit::from),
        Kernel::PowerLaw => power_law::fit(times, marks, horizon, config).map(KernelFit::from),
    }
}
