//! The command line: bad options fail at start with a message saying what to fix; `fit` prints
//! one JSON object.

use std::process::Command;

fn tweetoscope(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tweetoscope"));
    command
        .args(args)
        .env_remove("TWEETOSCOPE_BROKERS")
        .env_remove("TWEETOSCOPE_CONFIG");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tweetoscope-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn bad_values_are_refused_with_what_to_fix() {
    let cases: [(&[&str], &str); 11] = [
        (&["run", "--alert-retry-for", "0"], "--alert-retry-for"),
        (
            &["dashboard", "--alert-retry-for", "900"],
            "--alert-retry-for",
        ),
        (&["run", "--windows", "600,abc"], "--windows"),
        (&["run", "--terminated=-5"], "--terminated"),
        (&["run", "--warm-up-speed-up=-1"], "--warm-up-speed-up"),
        (
            &["collector", "--terminated-age-ratio=-1"],
            "--terminated-age-ratio",
        ),
        (&["run", "--max-branching", "1.5"], "--max-branching"),
        (&["run", "--metrics-addr", "nowhere"], "--metrics-addr"),
        (
            &["run", "--windows", "600,600"],
            "each window must appear once",
        ),
        (&["run", "--mark-exponent", "1.5"], "--mark-exponent"),
        (
            &["run", "--kernel", "power-law", "--mark-exponent", "0.5"],
            "fits its own mark exponent",
        ),
    ];
    for (args, expected) in cases {
        let (code, _, err) = tweetoscope(args, &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

#[test]
fn a_stage_without_broker_says_how_to_give_one() {
    let (code, _, err) = tweetoscope(&["collector", "--metrics-addr", "off"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--brokers") && err.contains("TWEETOSCOPE_BROKERS"),
        "{err}"
    );
}

#[test]
fn config_file_keys_are_checked_and_flags_win() {
    let bad = temp_file("bad.toml", "windows = [600]\nterminatd = 1800\n");
    let (code, _, err) = tweetoscope(&["--config", bad.to_str().unwrap(), "run"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("unknown key `terminatd`") && err.contains("terminated"),
        "{err}"
    );

    let broken = temp_file("broken.toml", "windows = [600\n");
    let (code, _, err) = tweetoscope(&["--config", broken.to_str().unwrap(), "run"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not valid TOML"), "{err}");

    // The file's bad value is reported with the option it sets...
    let wrong = temp_file("wrong.toml", "max-branching = 3.0\n");
    let (code, _, err) = tweetoscope(&["--config", wrong.to_str().unwrap(), "run"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--max-branching"), "{err}");
    // ...and a flag overrides the file.
    let (code, _, err) = tweetoscope(
        &[
            "--config",
            wrong.to_str().unwrap(),
            "run",
            "--max-branching",
            "0.9",
            "--windows",
            "0",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("--windows"),
        "the file's max-branching was overridden: {err}"
    );
}

#[test]
fn run_says_once_that_its_warm_up_is_over_and_never_without_one() {
    let count = |extra: &[&str]| {
        // Models come early (every 10 samples), so the warm-up ends on them, within the run.
        let mut args = vec![
            "run",
            "--cascades",
            "200",
            "--retrain-every",
            "10",
            "--trees",
            "10",
            "--metrics-addr",
            "off",
            "--log-format",
            "json",
        ];
        args.extend_from_slice(extra);
        let (code, _, err) = tweetoscope(&args, &[]);
        assert_eq!(code, 0, "{err}");
        err.matches("warm-up over").count()
    };
    // Paced by --speed-up: no warm-up, so nothing to announce (it used to be logged every 250 ms
    // once the models came: 15 times in this run).
    assert_eq!(count(&["--speed-up", "20000"]), 0);
    // The default warm-up ends once.
    assert_eq!(count(&[]), 1);
}

#[test]
fn fit_serves_with_a_model_written_by_eval() {
    // A model as the learner would publish it, from a small synthetic evaluation.
    let dir = std::env::temp_dir().join(format!("tweetoscope-cli-model-{}", std::process::id()));
    let (code, out, err) = tweetoscope(
        &[
            "eval",
            "--cascades",
            "120",
            "--seed",
            "5",
            "--windows",
            "600",
            "--trees",
            "10",
            "--out",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("model-<T_obs>.json"), "{out}");
    let written = std::fs::read_to_string(dir.join("model-600.json")).expect("model-600.json");
    let mut model: serde_json::Value = serde_json::from_str(&written).unwrap();
    assert_eq!(model["type"], "model");
    assert_eq!(model["T_obs"], 600);
    assert!(model["growth"].is_object(), "no growth model in {written}");

    // A growth model with a known answer: growth 3, served alone, log errors within ×0.5 … ×2.
    model["growth"]["intercept"] = 3f64.ln().into();
    model["growth"]["coefficients"] = serde_json::json!([0.0, 0.0, 0.0]);
    model["growth"]["blend"] = false.into();
    model["growth"]["log_error_bounds"] = serde_json::json!([0.5f64.ln(), 2f64.ln()]);
    model["max_growth"] = 1000.0.into();
    let known = temp_file("model-known.json", &model.to_string());
    let csv = temp_file(
        "served.csv",
        "t,m\n0,1000\n5,20\n30,300\n70,15\n200,40\n410,80\n590,10\n900,50\n",
    );
    let (code, out, err) = tweetoscope(
        &[
            "fit",
            csv.to_str().unwrap(),
            "--model",
            known.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    // Observed up to the model's window: the 7 tweets before 600 s.
    assert_eq!(v["n_obs"], 7, "{out}");
    assert_eq!(v["horizon"], 600.0, "{out}");
    let close = |key: &str, want: f64| {
        let got = v[key].as_f64().unwrap_or(f64::NAN);
        assert!(
            (got - want).abs() < 1e-9 * want,
            "{key}: {got} against {want} in {out}"
        );
    };
    close("n_served", 21.0);
    close("n_low", 10.5);
    close("n_high", 42.0);
    assert_eq!(v["model_version"], model["version"], "{out}");

    // The model's window is the observation horizon: another --until is refused, as is a file
    // that is not a model.
    let (code, _, err) = tweetoscope(
        &[
            "fit",
            csv.to_str().unwrap(),
            "--model",
            known.to_str().unwrap(),
            "--until",
            "300",
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("--until 600"), "{err}");
    let (code, _, err) = tweetoscope(
        &[
            "fit",
            csv.to_str().unwrap(),
            "--model",
            csv.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("--model") && err.contains("not a model"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fit_prints_one_json_object_with_the_documented_keys() {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
    let marks = tweetoscope_hawkes::MarkDistribution::default();
    let events = tweetoscope_hawkes::simulate::simulate_cascade_from(
        5_000.0,
        0.02,
        1.0 / 600.0,
        &marks,
        3_600.0,
        5_000,
        &mut rng,
    );
    assert!(events.len() > 30, "{} events", events.len());
    let mut csv = String::from("t,m\n");
    for (t, m) in &events {
        csv.push_str(&format!("{t},{m}\n"));
    }
    let path = temp_file("cascade.csv", &csv);
    let (code, out, err) = tweetoscope(&["fit", path.to_str().unwrap(), "--until", "1200"], &[]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    for key in ["p", "beta", "n_star", "G1", "n_obs", "n_pred"] {
        assert!(v.get(key).is_some(), "missing {key} in {out}");
    }
    let observed = events.iter().filter(|e| e.0 < 1200.0).count() as u64;
    assert_eq!(v["n_obs"].as_u64(), Some(observed));
    assert!(v["n_pred"].as_f64().unwrap() >= observed as f64);
    assert!(v["n_star"].as_f64().unwrap() < 1.0);

    // With sublinear marks the branching factor is p·E[m^0.5] of the default marks (α = 2.4,
    // μ = 10): 10^0.5 · 1.4/0.9.
    let (code, sub, err) = tweetoscope(
        &[
            "fit",
            path.to_str().unwrap(),
            "--until",
            "1200",
            "--mark-exponent",
            "0.5",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let sub: serde_json::Value = serde_json::from_str(sub.trim()).unwrap();
    let ratio = sub["n_star"].as_f64().unwrap() / sub["p"].as_f64().unwrap();
    assert!(
        (ratio - 10f64.sqrt() * 1.4 / 0.9).abs() < 1e-9,
        "n*/p = {ratio}"
    );
    assert_ne!(sub["p"], v["p"]);

    let (code, out_mle, _) = tweetoscope(
        &["fit", path.to_str().unwrap(), "--until", "1200", "--mle"],
        &[],
    );
    assert_eq!(code, 0);
    assert_ne!(out, out_mle, "MLE and MAP differ");

    let bad = temp_file("bad.csv", "t,m\n0,1\nx,2\n");
    let (code, _, err) = tweetoscope(&["fit", bad.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("bad.csv:3"), "{err}");
}

#[test]
fn fit_with_the_power_law_kernel_prints_that_kernels_parameters() {
    let marks = tweetoscope_hawkes::MarkDistribution::default();
    // A whole simulated cascade (n* = 0.7, mark exponent 0.8, c = 60 s, θ = 0.6), observed
    // for a day.
    let truth =
        tweetoscope_hawkes::power_law::PowerLawParams::from_branching(0.7, 0.8, 60.0, 0.6, &marks)
            .unwrap();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let events: Vec<(f64, f64)> = tweetoscope_hawkes::power_law::simulate_cascade_from(
        5e5,
        &truth,
        &marks,
        f64::INFINITY,
        1_000_000,
        &mut rng,
    )
    .into_iter()
    .filter(|e| e.0 < 86_400.0)
    .collect();
    assert!(events.len() > 1_000, "{} events", events.len());
    let mut csv = String::from("t,m\n");
    for (t, m) in &events {
        csv.push_str(&format!("{t},{m}\n"));
    }
    let path = temp_file("power-law.csv", &csv);
    let horizon = 86_400.0;
    let until = horizon.to_string();
    let (code, out, err) = tweetoscope(
        &[
            "fit",
            path.to_str().unwrap(),
            "--kernel",
            "power-law",
            "--until",
            &until,
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["kernel"], "power-law");
    assert_eq!(v["method"], "MLE");
    assert!(v.get("p").is_none(), "p is the exponential kernel's: {out}");
    // Exactly the library's fit of the same events.
    let (times, ms): (Vec<f64>, Vec<f64>) = events.iter().copied().unzip();
    let fit = tweetoscope_hawkes::fit_kernel(
        tweetoscope_hawkes::Kernel::PowerLaw,
        &times,
        &ms,
        horizon,
        &tweetoscope_hawkes::FitConfig::default(),
    )
    .unwrap();
    for (key, value) in ["K", "beta", "c", "theta"].iter().zip(&fit.params) {
        assert_eq!(v[key].as_f64(), Some(*value), "{key} in {out}");
    }
    assert_eq!(v["n_obs"].as_u64(), Some(events.len() as u64));
    // The tolerance of the library's own recovery test on this case.
    let n_star = v["n_star"].as_f64().unwrap();
    assert!(
        (n_star - 0.7).abs() < 0.12,
        "n* {n_star} far from the true 0.7"
    );
    let theta = v["theta"].as_f64().unwrap();
    assert!(
        (theta - 0.6).abs() < 0.6 * 0.3,
        "θ {theta} far from the true 0.6"
    );

    let (code, _, err) = tweetoscope(
        &["fit", path.to_str().unwrap(), "--kernel", "gaussian"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("--kernel"), "{err}");
}

#[test]
fn real_data_options_say_what_is_missing_and_bad_files_name_file_and_line() {
    let (code, _, err) = tweetoscope(&["eval", "--data", "tideh"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--data-dir"), "{err}");
    let (code, _, err) = tweetoscope(
        &[
            "eval",
            "--data",
            "csv",
            "--data-dir",
            "/nonexistent/cascades",
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--data-dir") && err.contains("/nonexistent/cascades"),
        "{err}"
    );
    let (code, _, err) = tweetoscope(&["eval", "--test-data-dir", "/tmp"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--test-data"), "{err}");

    let dir = temp_file("placeholder", "").parent().unwrap().join("tideh");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("RT1.txt"), "2 0.5\n0 10\n30 4\n60 x\n").unwrap();
    let (code, _, err) = tweetoscope(
        &[
            "eval",
            "--data",
            "tideh",
            "--data-dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("RT1.txt:4") && err.contains("follower count \"x\""),
        "{err}"
    );
}

#[test]
fn completions_are_printed_for_a_shell_and_an_unknown_shell_is_refused() {
    let (code, out, err) = tweetoscope(&["completions", "bash"], &[]);
    assert_eq!(code, 0, "{err}");
    for word in ["tweetoscope", "collector", "--windows", "--brokers"] {
        assert!(
            out.contains(word),
            "{word} missing from the bash completions"
        );
    }
    let (code, _, err) = tweetoscope(&["completions", "tcsh"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("bash") && err.contains("zsh"), "{err}");
}

#[test]
fn rust_log_is_the_log_filter_when_no_option_gives_one() {
    let csv = temp_file("rust-log.csv", "t,m\n0,100\n10,200\n25,50\n");
    let (code, _, err) = tweetoscope(
        &["fit", csv.to_str().unwrap()],
        &[("RUST_LOG", "info,[bad")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("RUST_LOG") && err.contains("[bad"), "{err}");
    // --log wins over RUST_LOG.
    let (code, _, err) = tweetoscope(
        &["fit", csv.to_str().unwrap(), "--log", "warn"],
        &[("RUST_LOG", "info,[bad")],
    );
    assert_eq!(code, 0, "{err}");
}
