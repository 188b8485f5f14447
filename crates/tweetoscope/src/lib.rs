//! Tweetoscope: predicts the final popularity of tweets from a live Kafka stream of retweets.
//!
//! The binary `tweetoscope` runs one stage per subcommand, or all of them with `run`. This library
//! holds the stages and their wiring so that integration tests drive them directly.

pub mod admin_server;
pub mod bench;
pub mod cli;
pub mod config;
pub mod eval;
pub mod events;
pub mod fit;
pub mod kafka;
pub mod liveness;
pub mod metrics;
pub mod run;
pub mod stages;
pub mod telemetry;
