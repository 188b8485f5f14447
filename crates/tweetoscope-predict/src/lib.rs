//! Pure logic of the Tweetoscope learner, free of I/O: the stage parses its input, calls this
//! crate and writes what it returns; `eval` runs the same functions offline.
//!
//! - [`learner`]: the forests learn ln ω ([`target_from_omega`], [`omega_with_interval`]); a
//!   [`Trainer`] keeps the newest samples of each window and says when to retrain; [`train`] fits
//!   one forest into a model message.

pub mod learner;

pub use learner::{
    forest_params, learner_metadata, omega_from_target, omega_with_interval,
    parse_learner_metadata, target_from_omega, train, Trainer, TrainingJob, WindowSamples,
    MAX_MODEL_BYTES, OMEGA_FLOOR,
};
