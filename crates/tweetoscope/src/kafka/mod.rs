//! Kafka plumbing shared by the stages: clients, topics, the embedded broker, and the processing
//! loop that reads a topic, hands each message to a stage, writes what the stage returns, sends
//! malformed input to the dead-letter topic, and commits.
//!
//! Commits are transactional: a stage's outputs and its input offsets are committed atomically
//! (Kafka transactions, consumers in `read_committed`), so a crash or a rebalance never loses nor
//! duplicates an output. A stage with state chooses what offset to commit (the oldest input its
//! state still needs) and stores in the commit metadata how far it had processed; after a restart
//! it replays from there, rebuilding its state with its outputs suppressed up to that mark.
//!
//! One module per job: [`client`] (settings, producers, consumers, partition reads), [`admin`]
//! (topics, the embedded broker), [`context`] (the consumer context: lag, rebalances), [`delivery`] (the producers' delivery reports,
//! tallied), [`sink`]
//! (records written, dead letters, headers) and [`processing`] (the exactly-once loop).

pub mod admin;
pub mod client;
pub mod context;
pub mod delivery;
pub mod processing;
pub mod sink;

pub use admin::{create_topics, topic_plan, EmbeddedBroker};
pub use client::{KafkaSettings, RawRecord};
pub use context::StageContext;
pub use delivery::{DeliveryTally, StageProducer};
pub use processing::{
    close_consumer, handler, process, processed_mark, Handled, Handler, Later, LoopSettings,
    MAX_PAYLOAD_BYTES,
};
pub use sink::{dead_letter, header_text, now_ms, AtCommit, Outgoing, Sink, WINDOW_CLOSED_HEADER};
