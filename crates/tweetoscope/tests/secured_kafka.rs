//! Tweetoscope on a secured listener of a real Apache Kafka broker: `run --brokers` completes over
//! SASL_SSL as the user `tweetoscope` with SCRAM-SHA-512 and SCRAM-SHA-256 (options as flags) and
//! with PLAIN (options from the environment), the password read from a file and the broker's CA
//! given as `ssl.ca.location`; a wrong password or a CA that did not sign the broker's certificate
//! ends the process at start, with exit code 2 and what to fix, instead of leaving it waiting.
//!
//! Needs the broker of `scripts/tiers/kafka.sh`, which starts it with its SASL_SSL listener
//! (`KAFKA_SASL_SSL=1 scripts/kafka.sh start`) and sets `TWEETOSCOPE_TEST_KAFKA_SASL_SSL` (the
//! listener's address), `TWEETOSCOPE_TEST_KAFKA_CA` (the CA certificate, PEM) and
//! `TWEETOSCOPE_TEST_KAFKA_PASSWORD_FILE` (the password of `tweetoscope`). By hand, setting
//! `KAFKA_STATE_DIR` as for `scripts/kafka.sh` is enough: the three are read from there.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tweetoscope::cli::Cli;

/// The secured listener under test.
struct Secured {
    bootstrap: String,
    ca: PathBuf,
    password_file: PathBuf,
}

/// The variable `name` if set and not blank.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn secured() -> Secured {
    let state = env("KAFKA_STATE_DIR").map(PathBuf::from);
    let in_state = |file: &str| state.as_ref().map(|s| s.join(file));
    let missing = |what: &str| -> ! {
        panic!(
            "no {what}: these tests need a real Kafka broker with a SASL_SSL listener. Run \
             scripts/tiers/kafka.sh, or start one with KAFKA_SASL_SSL=1 scripts/kafka.sh start \
             and set KAFKA_STATE_DIR as for it (or TWEETOSCOPE_TEST_KAFKA_SASL_SSL, \
             TWEETOSCOPE_TEST_KAFKA_CA and TWEETOSCOPE_TEST_KAFKA_PASSWORD_FILE)"
        )
    };
    let bootstrap = env("TWEETOSCOPE_TEST_KAFKA_SASL_SSL")
        .or_else(|| {
            let file = in_state("bootstrap-sasl-ssl")?;
            Some(std::fs::read_to_string(file).ok()?.trim().to_owned())
        })
        .unwrap_or_else(|| missing("SASL_SSL bootstrap address"));
    let ca = env("TWEETOSCOPE_TEST_KAFKA_CA")
        .map(PathBuf::from)
        .or_else(|| in_state("tls/ca.pem"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| missing("CA certificate file"));
    let password_file = env("TWEETOSCOPE_TEST_KAFKA_PASSWORD_FILE")
        .map(PathBuf::from)
        .or_else(|| in_state("tls/sasl-password"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| missing("password file"));
    Secured {
        bootstrap,
        ca,
        password_file,
    }
}

/// A suffix unique to one test run, so that a rerun on the same broker sees none of the records
/// or committed offsets of an earlier one.
fn unique(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{test}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// `--brokers`, a group prefix and every `--*-topic` option (read from the command line
/// definition) with names unique to `test`.
fn names_args(brokers: &str, test: &str) -> Vec<String> {
    let suffix = unique(test);
    let mut args = vec![
        "--brokers".to_owned(),
        brokers.to_owned(),
        "--group-prefix".to_owned(),
        format!("tweetoscope-{suffix}"),
    ];
    let command = <Cli as clap::CommandFactory>::command();
    let run = command.find_subcommand("run").expect("a run command");
    for a in run.get_arguments() {
        let (Some(long), Some(default)) = (
            a.get_long(),
            a.get_default_values().first().and_then(|d| d.to_str()),
        ) else {
            continue;
        };
        if long.ends_with("-topic") {
            args.push(format!("--{long}"));
            args.push(format!("{default}-{suffix}"));
        }
    }
    assert!(
        args.len() > 12,
        "`run` should have a --*-topic option per topic"
    );
    args
}

/// The librdkafka options of a SASL_SSL client with `mechanism`, the password from
/// `password_file` and the CA `ca`, as `--kafka-option` / `--kafka-option-file` flags.
fn security_flags(mechanism: &str, password_file: &Path, ca: &Path) -> Vec<String> {
    [
        ("--kafka-option", "security.protocol=SASL_SSL".to_owned()),
        ("--kafka-option", format!("sasl.mechanism={mechanism}")),
        ("--kafka-option", "sasl.username=tweetoscope".to_owned()),
        (
            "--kafka-option-file",
            format!("sasl.password={}", password_file.display()),
        ),
        (
            "--kafka-option",
            format!("ssl.ca.location={}", ca.display()),
        ),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_owned(), value])
    .collect()
}

/// A short seeded replay for `run`, its summary as JSON, no metrics endpoint.
const SMALL_RUN: &[&str] = &[
    "--partitions",
    "2",
    "--sources",
    "2",
    "--seed",
    "7",
    "--session-timeout-ms",
    "6000",
    "--stall-timeout",
    "30",
    "--no-log-topic",
    "--metrics-addr",
    "off",
    "--json",
];

/// What a `tweetoscope` process did: its exit code (None: killed after the time limit), its
/// output, its error output, and how long it ran.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `tweetoscope args` with only the `TWEETOSCOPE_*` variables of `vars`, killed after
/// `limit`.
fn tweetoscope(args: &[String], vars: &[(&str, String)], limit: Duration) -> Outcome {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tweetoscope"));
    for (name, _) in std::env::vars() {
        if name.starts_with("TWEETOSCOPE_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command.spawn().expect("tweetoscope starts");
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = reader(Box::new(child.stdout.take().expect("stdout")));
    let stderr = reader(Box::new(child.stderr.take().expect("stderr")));
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Outcome {
        code,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        took: started.elapsed(),
    }
}

/// Checks that `outcome` is a complete run on `brokers` with some predictions.
fn assert_complete_run(outcome: &Outcome, brokers: &str, label: &str) {
    assert_eq!(
        outcome.code,
        Some(0),
        "{label}: `run` should succeed (after {:?})\nstdout:\n{}\nstderr:\n{}",
        outcome.took,
        outcome.stdout,
        outcome.stderr
    );
    let summary: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap_or_else(|e| {
        panic!(
            "{label}: the summary is not JSON ({e}):\n{}",
            outcome.stdout
        )
    });
    assert_eq!(summary["brokers"], brokers, "{label}: {summary}");
    assert_eq!(summary["embedded"], false, "{label}: {summary}");
    assert_eq!(summary["complete"], true, "{label}: {summary}");
    let expected = summary["expected_predictions"].as_u64().unwrap_or(0);
    assert!(
        expected > 0,
        "{label}: the replay should give predictions: {summary}"
    );
    let predicted: u64 = summary["windows"]
        .as_object()
        .expect("windows")
        .values()
        .map(|w| w["predictions"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        predicted, expected,
        "{label}: every expected prediction has its error: {summary}"
    );
    eprintln!(
        "{label}: {expected} predictions in {:.1} s",
        outcome.took.as_secs_f64()
    );
}

/// A process that must fail at start: exit code 2 well within `limit`, and an error output that
/// names every one of `words` (case-insensitive).
fn assert_fails_at_start(outcome: &Outcome, words: &[&str], label: &str) {
    assert!(
        outcome.code.is_some(),
        "{label}: still running after {:?}: a refused connection should end it at start\n{}",
        outcome.took,
        outcome.stderr
    );
    assert_eq!(
        outcome.code,
        Some(2),
        "{label}: exit code 2 (a configuration problem)\nstderr:\n{}",
        outcome.stderr
    );
    let error = outcome.stderr.to_lowercase();
    for word in words {
        assert!(
            error.contains(&word.to_lowercase()),
            "{label}: the error should name {word:?}:\n{}",
            outcome.stderr
        );
    }
    eprintln!(
        "{label}: failed in {:.1} s: {}",
        outcome.took.as_secs_f64(),
        outcome.stderr.lines().last().unwrap_or_default()
    );
}

/// A scratch directory of this test process.
fn scratch(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tweetoscope-{}", unique(label)));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

#[test]
#[ignore = "needs a real Kafka with a SASL_SSL listener: run scripts/tiers/kafka.sh"]
fn run_completes_over_sasl_ssl_with_scram_sha_512_and_the_password_from_a_file() {
    run_completes_with_flags("SCRAM-SHA-512", "scram", 30);
}

#[test]
#[ignore = "needs a real Kafka with a SASL_SSL listener: run scripts/tiers/kafka.sh"]
fn run_completes_over_sasl_ssl_with_scram_sha_256() {
    run_completes_with_flags("SCRAM-SHA-256", "scram256", 10);
}

/// `run` over the SASL_SSL listener with `mechanism`, the security options given as flags (the
/// password from its file), on topics named after `label`, completes with `cascades` cascades.
fn run_completes_with_flags(mechanism: &str, label: &str, cascades: usize) {
    let s = secured();
    let mut args = vec!["run".to_owned()];
    args.extend(names_args(&s.bootstrap, label));
    args.extend(security_flags(mechanism, &s.password_file, &s.ca));
    args.extend(SMALL_RUN.iter().map(|a| a.to_string()));
    args.extend(["--cascades".to_owned(), cascades.to_string()]);
    let outcome = tweetoscope(&args, &[], Duration::from_secs(240));
    assert_complete_run(&outcome, &s.bootstrap, mechanism);
}

#[test]
#[ignore = "needs a real Kafka with a SASL_SSL listener: run scripts/tiers/kafka.sh"]
fn run_completes_over_sasl_ssl_with_plain_and_the_options_from_the_environment() {
    let s = secured();
    let mut args = vec!["run".to_owned()];
    args.extend(names_args(&s.bootstrap, "plain"));
    args.extend(SMALL_RUN.iter().map(|a| a.to_string()));
    args.extend(["--cascades".to_owned(), "10".to_owned()]);
    let vars = [
        (
            "TWEETOSCOPE_KAFKA_OPTION",
            format!(
                "security.protocol=SASL_SSL,sasl.mechanism=PLAIN,sasl.username=tweetoscope,\
                 ssl.ca.location={}",
                s.ca.display()
            ),
        ),
        (
            "TWEETOSCOPE_KAFKA_OPTION_FILE",
            format!("sasl.password={}", s.password_file.display()),
        ),
    ];
    let outcome = tweetoscope(&args, &vars, Duration::from_secs(240));
    assert_complete_run(&outcome, &s.bootstrap, "PLAIN");
}

#[test]
#[ignore = "needs a real Kafka with a SASL_SSL listener: run scripts/tiers/kafka.sh"]
fn a_wrong_password_ends_the_process_at_start_naming_the_authentication() {
    let s = secured();
    let dir = scratch("wrong-password");
    let wrong = dir.join("password");
    std::fs::write(&wrong, "not-the-password\n").expect("password file");
    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
        let mut args = vec!["run".to_owned()];
        args.extend(names_args(&s.bootstrap, "wrong-password"));
        args.extend(security_flags(mechanism, &wrong, &s.ca));
        args.extend(SMALL_RUN.iter().map(|a| a.to_string()));
        let outcome = tweetoscope(&args, &[], Duration::from_secs(60));
        assert_fails_at_start(
            &outcome,
            &["authentication", "sasl.password", &s.bootstrap],
            &format!("{mechanism}, wrong password"),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs a real Kafka with a SASL_SSL listener: run scripts/tiers/kafka.sh"]
fn a_ca_that_did_not_sign_the_broker_certificate_ends_a_stage_at_start_naming_ssl_ca_location() {
    let s = secured();
    let dir = scratch("wrong-ca");
    let other_ca = dir.join("other-ca.pem");
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=Not the broker's CA"])
        .arg("-keyout")
        .arg(dir.join("other-ca.key"))
        .arg("-out")
        .arg(&other_ca)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl (scripts/kafka.sh needs it too)");
    assert!(made.success(), "openssl makes a CA");
    // A stage that would otherwise wait for the broker forever.
    let mut args = vec!["collector".to_owned()];
    args.extend(names_args(&s.bootstrap, "wrong-ca"));
    args.extend(security_flags("SCRAM-SHA-512", &s.password_file, &other_ca));
    args.extend(["--metrics-addr".to_owned(), "off".to_owned()]);
    let outcome = tweetoscope(&args, &[], Duration::from_secs(60));
    assert_fails_at_start(
        &outcome,
        &["TLS handshake", "ssl.ca.location", &s.bootstrap],
        "wrong CA",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
