//! Pure logic of the Tweetoscope estimator, predictor and learner, free of I/O: the stages parse
//! their input, call this crate and write what it returns; `eval` runs the same functions offline.
//!
//! - [`estimator`]: the marks a Hawkes fit uses, the check of a series, the parameters message.
//! - [`predictor`]: the newest forest of each window ([`ModelStore`]) and its correction ω, the
//!   prediction from a cascade's parameters ([`predict`]), and the bounded [`Join`] of parameters
//!   and sizes per (cascade, window) that yields the stat and the training sample.
//! - [`learner`]: the forests learn ln ω ([`target_from_omega`], [`omega_with_interval`]); a
//!   [`Trainer`] keeps the newest samples of each window and says when to retrain; [`train`] fits
//!   one forest into a model message.

pub mod estimator;
pub mod guard;
pub mod learner;
pub mod predictor;

pub use estimator::{check_series, fit_marks, parameters_message, series_shape};
pub use guard::{cap_growth, growth_cap};
pub use learner::{
    blend_sizes, forest_params, growth_features, learner_metadata, omega_from_target,
    omega_with_interval, parse_learner_metadata, target_from_omega, train, GrowthRow, Trainer,
    TrainingJob, WindowSamples, MAX_MODEL_BYTES, OMEGA_FLOOR,
};
pub use predictor::{
    parse_state_key, predict, state_key, Correction, Growth, Half, Join, JoinStep, Joined,
    ModelStore, Prediction,
};
