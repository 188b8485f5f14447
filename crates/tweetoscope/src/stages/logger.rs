//! Logger stage: prints the structured log records of every stage from the `logs` topic, filtered
//! by level (and optionally by stage).

use std::io::Write as _;

use rdkafka::Message;
use tweetoscope_messages::LogRecord;

use super::StageEnv;
use crate::config::{Level, LoggerArgs};
use crate::kafka::{handler, Handled};

const STAGE: &str = "logger";

/// Whether a record passes the filter.
pub fn shown(record: &LogRecord, args: &LoggerArgs) -> bool {
    let level_ok = Level::from_name(&record.level).is_some_and(|l| l <= args.level);
    let source_ok = args.log_source.as_ref().is_none_or(|s| *s == record.source);
    level_ok && source_ok
}

/// One line for a record: `time level source message key=value...`.
pub fn format_line(record: &LogRecord) -> String {
    let secs = record.t.floor() as i64;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let millis = ((record.t - record.t.floor()) * 1000.0).round() as i64 % 1000;
    let mut line = format!(
        "{h:02}:{m:02}:{s:02}.{millis:03} {:<5} {:<10} {}",
        record.level, record.source, record.message
    );
    for (k, v) in &record.fields {
        match v {
            serde_json::Value::String(s) => line.push_str(&format!(" {k}={s}")),
            other => line.push_str(&format!(" {k}={other}")),
        }
    }
    line
}

/// Runs the logger until shutdown.
pub async fn run(env: StageEnv, args: LoggerArgs) -> anyhow::Result<()> {
    let metrics = env.metrics.clone();
    let input = env.input(STAGE, &env.topics.logs_topic);
    env.consume(input, |_| {
        Ok(handler(move |message| {
            match LogRecord::parse(message.payload().unwrap_or_default()) {
                Ok(record) => {
                    if shown(&record, &args) {
                        metrics.logs_shown.with_label_values(&[&record.level]).inc();
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "{}", format_line(&record));
                    }
                    Handled::Now(Vec::new())
                }
                Err(m) => Handled::Malformed(m),
            }
        }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(level: &str, source: &str) -> LogRecord {
        let mut fields = serde_json::Map::new();
        fields.insert("cid".into(), "42".into());
        fields.insert("n".into(), 3.into());
        LogRecord {
            t: 3661.25,
            source: source.into(),
            level: level.into(),
            message: "hello".into(),
            fields,
        }
    }

    #[test]
    fn filters_by_level_and_source() {
        let args = LoggerArgs {
            level: Level::Warn,
            log_source: None,
        };
        assert!(shown(&record("ERROR", "collector"), &args));
        assert!(shown(&record("WARN", "collector"), &args));
        assert!(!shown(&record("INFO", "collector"), &args));
        assert!(!shown(&record("BOGUS", "collector"), &args));
        let only = LoggerArgs {
            level: Level::Trace,
            log_source: Some("estimator".into()),
        };
        assert!(shown(&record("DEBUG", "estimator"), &only));
        assert!(!shown(&record("DEBUG", "collector"), &only));
    }

    #[test]
    fn lines_carry_time_level_source_and_fields() {
        assert_eq!(
            format_line(&record("INFO", "collector")),
            "01:01:01.250 INFO  collector  hello cid=42 n=3"
        );
    }
}
