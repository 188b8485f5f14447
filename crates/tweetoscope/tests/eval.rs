//! Offline evaluation: on synthetic cascades with known generating parameters it guards the
//! estimator's parameter recovery at T_obs = 1200 s and that the random forest improves on the
//! Hawkes prediction alone; on hand-made cascades the baselines, alert scores, folds and test
//! data sets give known answers; the real TiDeH cascades go through cross-validation.

mod common;

use clap::Parser;
use tweetoscope::cli::{Cli, Command};
use tweetoscope::eval::{evaluate, EvalArgs, MethodReport};

fn eval_args(args: &[&str]) -> EvalArgs {
    let mut argv = vec!["tweetoscope", "eval"];
    argv.extend_from_slice(args);
    match Cli::try_parse_from(argv)
        .expect("valid command line")
        .command
    {
        Command::Eval(a) => a.args,
        _ => unreachable!(),
    }
}

#[test]
fn synthetic_evaluation_recovers_parameters_and_the_forest_helps() {
    let args = eval_args(&["--cascades", "600", "--seed", "11", "--trees", "50"]);
    args.validate().unwrap();
    let report = evaluate(&args).unwrap();
    assert_eq!(report.cascades, 600);
    assert_eq!(report.windows.len(), 2);
    for w in &report.windows {
        assert!(
            w.test_pairs > 100,
            "window {}: {} test pairs",
            w.window,
            w.test_pairs
        );
        assert!(
            w.fit_failure_share < 0.01,
            "window {}: {} failed",
            w.window,
            w.fit_failure_share
        );
        let hawkes = &w.methods[0];
        let forest = &w.methods[1];
        let names: Vec<&str> = w.methods.iter().map(|m| m.method.as_str()).collect();
        assert_eq!(
            names,
            [
                "hawkes",
                "hawkes+rf",
                "hawkes+rf-extended",
                "median-ratio",
                "log-linear"
            ]
        );
        let served: Vec<&str> = w
            .methods
            .iter()
            .filter(|m| m.served)
            .map(|m| m.method.as_str())
            .collect();
        assert_eq!(served, ["hawkes+rf"], "the pipeline serves Hawkes + RF");
        // The served 80 % interval (split-conformal bounds of held-out log errors) holds the
        // truth for about 80 % of the test cascades (measured 78 % and 77 %), within 10 points;
        // Hawkes alone has no interval.
        let interval = forest
            .interval
            .as_ref()
            .expect("forest methods have intervals");
        assert!(
            (interval.coverage - 0.8).abs() <= 0.1,
            "window {}: 80 % interval held {}",
            w.window,
            interval.coverage
        );
        assert!(interval.median_relative_width > 0.0);
        // The lower bound is at most the prediction: alerting on it raises a subset of the
        // alerts, measured at least as precise (100 % and 100 % against 82 % and 100 %).
        let lower = interval.lower_bound_alerts;
        assert!(lower.alerts <= forest.alerts.alerts && lower.alerts > 0);
        assert!(lower.true_alerts <= forest.alerts.true_alerts);
        assert_eq!(lower.popular, forest.alerts.popular);
        // The upper bound sits above the prediction (the held-out log errors' 90th percentile
        // is positive): a superset of the alerts, missing no popular cascade the prediction
        // catches.
        let upper = interval.upper_bound_alerts;
        assert!(upper.alerts >= forest.alerts.alerts);
        assert!(upper.true_alerts >= forest.alerts.true_alerts);
        assert_eq!(upper.popular, forest.alerts.popular);
        assert!(hawkes.interval.is_none());
        assert_eq!(hawkes.predictions, forest.predictions);
        assert!(
            forest.median_are < hawkes.median_are,
            "window {}: forest {} vs Hawkes alone {}",
            w.window,
            forest.median_are,
            hawkes.median_are
        );
        // On cascades the Hawkes model describes, the learner blends the growth model with
        // the forest-corrected Hawkes size.
        assert_eq!(w.served_blended, (1, 1), "window {}", w.window);
    }
    // Stated tolerance: at T_obs = 1200 s the MAP estimator's median relative error is below 20%
    // on p and below 35% on beta (measured 12% and 25% on this data).
    let at_1200 = report.windows.iter().find(|w| w.window == 1200).unwrap();
    let recovery = at_1200
        .recovery
        .as_ref()
        .expect("synthetic data has the truth");
    assert!(
        recovery.median_rel_error_p < 0.20,
        "p: {}",
        recovery.median_rel_error_p
    );
    assert!(
        recovery.median_rel_error_beta < 0.35,
        "beta: {}",
        recovery.median_rel_error_beta
    );
    let text = report.to_text();
    assert!(
        text.contains("window 1200 s") && text.contains("hawkes+rf"),
        "{text}"
    );
    let svg = report.to_svg();
    assert!(
        svg.starts_with("<svg") && svg.matches("<polyline").count() == 2 * 5,
        "one curve per window and method"
    );
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    let method = &json["windows"][0]["methods"][1];
    assert_eq!(method["method"], "hawkes+rf");
    assert_eq!(method["served"], true);
    for key in [
        "within_10",
        "within_25",
        "median_are",
        "quantiles",
        "alerts",
    ] {
        assert!(method.get(key).is_some(), "{key} missing in {method}");
    }
}

/// A directory of hand-made `t,m` cascades: `(observed in the first 600 s, final size)` each.
/// Observed tweets are 20 s apart from 0; the later ones 10 s apart from 1,000 s.
fn csv_cascades(name: &str, cascades: &[(usize, usize)]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tweetoscope-eval-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (i, &(observed, total)) in cascades.iter().enumerate() {
        let mut csv = String::from("t,m\n");
        for k in 0..total {
            let t = if k < observed {
                20.0 * k as f64
            } else {
                1_000.0 + 10.0 * (k - observed) as f64
            };
            csv.push_str(&format!("{t},{}\n", 50 + 13 * (k % 7)));
        }
        std::fs::write(dir.join(format!("c{}.csv", i + 1)), csv).unwrap();
    }
    dir
}

/// Options evaluating one 600 s window on hand-made data, plus `extra`.
fn known_answer_args(data_dir: &std::path::Path, extra: &[&str]) -> EvalArgs {
    let mut args = vec![
        "--data",
        "csv",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--windows",
        "600",
        "--terminated",
        "100000",
        "--min-cascade-size",
        "5",
        "--trees",
        "5",
    ];
    args.extend_from_slice(extra);
    let args = eval_args(&args);
    args.validate().unwrap();
    args
}

fn method<'a>(w: &'a tweetoscope::eval::WindowReport, name: &str) -> &'a MethodReport {
    w.methods.iter().find(|m| m.method == name).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn baselines_and_alerts_on_a_hand_made_data_set_with_a_known_answer() {
    // Training half: final/observed ratios 3 and 2 (median 2.5); test half: (10, 25), (20, 100).
    let dir = csv_cascades("known", &[(10, 30), (20, 40), (10, 25), (20, 100)]);
    let report = evaluate(&known_answer_args(&dir, &[])).unwrap();
    assert_eq!((report.train_cascades, report.test_cascades), (2, 2));
    let w = &report.windows[0];
    assert_eq!((w.train_pairs, w.test_pairs), (2, 2));
    // Median ratio: 10 × 2.5 = 25 (exact), 20 × 2.5 = 50 (ARE 0.5).
    let ratio = method(w, "median-ratio");
    let mut points = ratio.points.clone();
    points.sort_by(|a, b| a.1.total_cmp(&b.1));
    assert_eq!(points, [(25.0, 25.0), (50.0, 100.0)]);
    assert!(close(ratio.median_are, 0.25) && close(ratio.mean_are, 0.25));
    assert!(close(ratio.within_10, 0.5) && close(ratio.within_25, 0.5));
    // Log-linear through (10, 30) and (20, 40): predicts 30 for 10 (ARE 0.2) and 40 for 20
    // (ARE 0.6).
    let line = method(w, "log-linear");
    assert!(close(line.median_are, 0.4), "{}", line.median_are);
    assert!(close(line.within_10, 0.0) && close(line.within_25, 0.5));
    // Default alert size: the 90th percentile of the training finals {30, 40} = 39. The median
    // ratio alerts on the cascade predicted 50, which reached 100: precision 1, recall 1.
    assert!(close(w.alert_size, 39.0), "{}", w.alert_size);
    let a = ratio.alerts;
    assert_eq!((a.alerts, a.popular, a.true_alerts), (1, 1, 1));
    assert!(close(a.precision, 1.0) && close(a.recall, 1.0));
    // At --alert-size 60 nobody is predicted popular: no precision, recall 0.
    let report = evaluate(&known_answer_args(&dir, &["--alert-size", "60"])).unwrap();
    let a = method(&report.windows[0], "median-ratio").alerts;
    assert_eq!((a.alerts, a.popular), (0, 1));
    assert!(a.precision.is_nan() && a.recall == 0.0);
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["windows"][0]["methods"][3]["alerts"]["precision"].is_null());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn folds_hold_out_contiguous_blocks_and_report_their_spread() {
    let dir = csv_cascades("folds", &[(10, 30), (20, 40), (10, 25), (20, 100)]);
    let report = evaluate(&known_answer_args(&dir, &["--folds", "2"])).unwrap();
    assert_eq!(report.folds, Some(2));
    assert_eq!(report.test_cascades, 4, "each cascade tested once");
    let ratio = method(&report.windows[0], "median-ratio");
    // Fold 1 tests c1, c2 with ratio median(2.5, 5) = 3.75: predictions 37.5 and 75, AREs 0.25
    // and 0.875. Fold 2 tests c3, c4 with ratio 2.5: AREs 0 and 0.5.
    assert_eq!(ratio.predictions, 4);
    assert!(close(ratio.median_are, 0.375), "{}", ratio.median_are);
    let spread = ratio.folds.as_ref().expect("fold figures").median_are;
    assert!(close(spread.mean, (0.5625 + 0.25) / 2.0), "{spread:?}");
    assert!(
        close(spread.sd, (0.5625 - 0.25) / 2f64.sqrt()),
        "{spread:?}"
    );
    assert!(report.to_text().contains("fold sd"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_separate_test_data_set_is_predicted_by_models_of_the_training_one() {
    let train = csv_cascades("train", &[(10, 30), (20, 40)]);
    let test = csv_cascades("test", &[(10, 25), (20, 100)]);
    let args = known_answer_args(
        &train,
        &[
            "--test-data",
            "csv",
            "--test-data-dir",
            test.to_str().unwrap(),
        ],
    );
    let report = evaluate(&args).unwrap();
    assert!(report
        .test_dataset
        .as_deref()
        .unwrap()
        .contains("csv files"));
    assert_eq!((report.train_cascades, report.test_cascades), (2, 2));
    let ratio = method(&report.windows[0], "median-ratio");
    assert!(
        close(ratio.median_are, 0.25),
        "same answer as the split of one data set"
    );
    for bad in [
        &["--test-data-dir", "x"][..],
        &["--test-data", "csv", "--folds", "3"][..],
        &["--test-data", "tideh"][..],
        &["--folds", "1"][..],
    ] {
        let mut argv = vec!["tweetoscope", "eval"];
        argv.extend_from_slice(bad);
        let refused = match Cli::try_parse_from(argv) {
            Err(_) => true,
            Ok(cli) => match cli.command {
                Command::Eval(a) => a.args.validate().is_err(),
                _ => unreachable!(),
            },
        };
        assert!(refused, "{bad:?} must be refused");
    }
    let _ = std::fs::remove_dir_all(train);
    let _ = std::fs::remove_dir_all(test);
}

#[test]
fn real_tideh_cascades_are_evaluated_with_cross_validation() {
    let dir = &format!("{}/../../../shared/data/tideh", common::manifest_dir());
    let args = eval_args(&[
        "--data",
        "tideh",
        "--data-dir",
        dir,
        "--windows",
        "600,3600",
        "--terminated",
        "700000",
        "--folds",
        "5",
        "--trees",
        "20",
    ]);
    args.validate().unwrap();
    let report = evaluate(&args).unwrap();
    assert_eq!(report.cascades, 50);
    assert_eq!(report.test_cascades, 50);
    for w in &report.windows {
        assert_eq!(
            w.test_pairs, 50,
            "every cascade has ≥ 10 retweets in 10 minutes"
        );
        assert!(w.fit_failure_share == 0.0);
        for m in &w.methods {
            assert_eq!(m.predictions, 50, "{}", m.method);
            assert!(
                m.median_are.is_finite() && m.median_are > 0.0,
                "{}",
                m.method
            );
            let f = m.folds.as_ref().unwrap();
            assert!(f.median_are.sd.is_finite(), "{}", m.method);
            assert!((0.0..=1.0).contains(&m.within_25));
        }
        // TiDeH files give the time of day of each tweet: the TiDeH model is evaluated too.
        assert!(
            w.methods.iter().any(|m| m.method == "tideh"),
            "window {}: no tideh row",
            w.window
        );
        // The Hawkes prediction alone underestimates multi-day cascades badly; both baselines
        // do better (measured 0.79 / 0.61 against 0.43 / 0.41 for the median ratio).
        let hawkes = method(w, "hawkes").median_are;
        assert!(
            method(w, "median-ratio").median_are < hawkes,
            "window {}",
            w.window
        );
        // The served prediction (the growth model, alone here) beats both baselines by a wide
        // margin: measured 0.226 / 0.221 against 0.314 / 0.295 for the log-linear baseline,
        // the better one; the growth forest served before gave 0.411 / 0.365. Its 80 % interval
        // holds the truth for 76 % / 80 % of the real cascades, within 10 points.
        let served = method(w, "hawkes+rf");
        let best_baseline = method(w, "log-linear")
            .median_are
            .min(method(w, "median-ratio").median_are);
        assert!(
            served.median_are < 0.85 * best_baseline,
            "window {}: served {} against the better baseline {}",
            w.window,
            served.median_are,
            best_baseline
        );
        if w.window == 600 {
            // On real tweets after 10 minutes the Hawkes remainder is far off: every fold's
            // learner serves the growth model alone.
            assert_eq!(w.served_blended, (0, 5));
        }
        let coverage = served.interval.as_ref().expect("served interval").coverage;
        assert!(
            (coverage - 0.8).abs() <= 0.1,
            "window {}: 80 % interval held {coverage}",
            w.window
        );
    }
}

/// Final size of every cascade (window 600 s) the collector gives with `extra` options.
fn tideh_sizes(extra: &[&str]) -> std::collections::HashMap<String, u64> {
    let dir = &format!("{}/../../../shared/data/tideh", common::manifest_dir());
    let mut argv = vec!["--data", "tideh", "--data-dir", dir, "--windows", "600"];
    argv.extend_from_slice(extra);
    let args = eval_args(&argv);
    args.validate().unwrap();
    let collected =
        tweetoscope::eval::collect_offline(&args.generator, args.cascade.collector_config())
            .unwrap();
    collected
        .emitted
        .iter()
        .filter_map(|e| match e {
            tweetoscope_cascade::Emission::Size(s) => Some((s.cid.0.clone(), s.n_tot)),
            _ => None,
        })
        .collect()
}

#[test]
fn termination_by_age_waits_out_the_nightly_lulls_of_real_cascades() {
    // The whole observed life of each cascade: no quiet spell ends it before its file does.
    let whole = tideh_sizes(&["--terminated", "1e9"]);
    assert_eq!(whole.len(), 50);
    let complete = |sizes: &std::collections::HashMap<String, u64>| {
        let mut complete = 0;
        let mut smallest_share = f64::INFINITY;
        for (cid, &n) in sizes {
            let share = n as f64 / whole[cid] as f64;
            smallest_share = smallest_share.min(share);
            complete += usize::from(n == whole[cid]);
        }
        (complete, smallest_share)
    };
    // Quiet for longer than max(1800 s, the cascade's age), the default. Measured: 49 of 50
    // complete, the other at 99.9 % of its size.
    for extra in [&[][..], &["--terminated-age-ratio", "1"][..]] {
        let (done, smallest) = complete(&tideh_sizes(extra));
        assert!(done >= 48, "{extra:?}: {done} of 50 complete");
        assert!(
            smallest > 0.99,
            "{extra:?}: smallest share of the whole life {smallest}"
        );
    }
    // The classic fixed 1800 s rule ends most of them at their first half-hour lull (measured:
    // 1 complete, the worst at 8 % of its size).
    let (done, smallest) = complete(&tideh_sizes(&["--terminated-age-ratio", "0"]));
    assert!(done <= 5, "{done} of 50 complete");
    assert!(smallest < 0.2, "smallest share {smallest}");
}

#[test]
fn eval_refuses_a_bad_split() {
    let err = eval_args(&["--train-fraction", "1.5"])
        .validate()
        .unwrap_err();
    assert!(err.to_string().contains("--train-fraction"), "{err}");
}

#[test]
fn the_power_law_kernel_is_selectable_and_corrected_by_the_forest() {
    // On data simulated with the exponential kernel the power law is the wrong model: its Hawkes
    // prediction alone is poor, and the forest must pull it back.
    let args = eval_args(&[
        "--cascades",
        "300",
        "--seed",
        "4",
        "--trees",
        "30",
        "--kernel",
        "power-law",
    ]);
    let report = evaluate(&args).unwrap();
    assert!(
        report.dataset.contains("power-law kernel"),
        "{}",
        report.dataset
    );
    for w in &report.windows {
        assert!(
            w.fit_failure_share < 0.01,
            "window {}: {}",
            w.window,
            w.fit_failure_share
        );
        let (hawkes, forest) = (&w.methods[0], &w.methods[1]);
        assert!(
            forest.median_are < hawkes.median_are,
            "window {}: {} vs {}",
            w.window,
            forest.median_are,
            hawkes.median_are
        );
        let recovery = w.recovery.as_ref().unwrap();
        assert!(
            recovery.median_rel_error_p.is_nan(),
            "p and beta are exponential-kernel parameters"
        );
        assert!(recovery.median_rel_error_n_star.is_finite());
    }
}
