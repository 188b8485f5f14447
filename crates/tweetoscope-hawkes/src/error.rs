//! Error type of the crate.

/// Everything that can go wrong when validating inputs, fitting or predicting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HawkesError {
    /// The cascade has fewer events than the operation needs (a fit needs at least 2).
    #[error("a cascade needs at least {needed} event(s) here, got {n}")]
    TooFewEvents {
        /// Number of events received.
        n: usize,
        /// Minimum number of events required.
        needed: usize,
    },
    /// `times` and `marks` have different lengths.
    #[error("times and marks differ in length ({times} times, {marks} marks)")]
    LengthMismatch {
        /// Length of the time slice.
        times: usize,
        /// Length of the mark slice.
        marks: usize,
    },
    /// An event time is NaN or infinite.
    #[error("event time at index {index} is not finite")]
    NonFiniteTime {
        /// Index of the offending event.
        index: usize,
    },
    /// A mark (follower count) is NaN or infinite.
    #[error("mark at index {index} is not finite")]
    NonFiniteMark {
        /// Index of the offending event.
        index: usize,
    },
    /// The observation horizon is NaN or infinite.
    #[error("observation horizon {horizon} is not finite")]
    NonFiniteHorizon {
        /// The horizon received.
        horizon: f64,
    },
    /// Event times decrease somewhere.
    #[error(
        "event times must be non-decreasing: event {index} at {time} s comes after one at {previous} s"
    )]
    UnsortedTimes {
        /// Index of the first event earlier than its predecessor.
        index: usize,
        /// Time of the predecessor.
        previous: f64,
        /// Time of the offending event.
        time: f64,
    },
    /// The horizon (seconds after the first event) is not strictly after the last event.
    #[error(
        "observation horizon {horizon} s must be strictly after the last event at {last} s \
         (both relative to the first event)"
    )]
    HorizonNotAfterLastEvent {
        /// The horizon, relative to the first event.
        horizon: f64,
        /// Time of the last event, relative to the first event.
        last: f64,
    },
    /// Mark distribution parameters out of range (need finite `alpha > 2`, `mu > 0`).
    #[error(
        "invalid mark distribution (alpha = {alpha}, mu = {mu}): need finite alpha > 2 and mu > 0"
    )]
    InvalidMarkDistribution {
        /// Power-law exponent received.
        alpha: f64,
        /// Minimum mark received.
        mu: f64,
    },
    /// The prior moments do not define a valid bivariate log-normal distribution.
    #[error("invalid prior: {reason}")]
    InvalidPrior {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `max_branching` is not in the open interval (0, 1).
    #[error("max_branching must be in (0, 1), got {value}")]
    InvalidMaxBranching {
        /// The value received.
        value: f64,
    },
    /// The box for `p` is empty: `max_branching / E[m]` is not above the lower bound of `p`.
    #[error(
        "the upper bound of p ({p_max}) is not above its lower bound ({p_min}); E[m] is too large"
    )]
    EmptyParameterBox {
        /// Lower bound of `p`.
        p_min: f64,
        /// Upper bound of `p` (`max_branching / E[m]`).
        p_max: f64,
    },
    /// The branching factor is at least 1: the expected final size is infinite.
    #[error("supercritical process: branching factor n* = {n_star} >= 1, the expected final size is infinite")]
    Supercritical {
        /// The branching factor received.
        n_star: f64,
    },
    /// A kernel name that is neither `exponential` nor `power-law`.
    #[error("unknown kernel {name:?}: expected \"exponential\" or \"power-law\"")]
    UnknownKernel {
        /// The name received.
        name: String,
    },
    /// A numeric argument is out of its domain (NaN, infinite or negative where not allowed).
    #[error("invalid argument {name} = {value}")]
    InvalidArgument {
        /// Name of the argument.
        name: &'static str,
        /// Value received.
        value: f64,
    },
    /// The expected future rate of a time-dependent process grows without bound.
    #[error("the expected retweet rate diverges {at} s after the original tweet (p0 = {p0})")]
    Diverges {
        /// Seconds after the original tweet.
        at: f64,
        /// The base infectious rate that makes it diverge.
        p0: f64,
    },
}
