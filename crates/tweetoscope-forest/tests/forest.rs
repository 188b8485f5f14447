//! Behavioural tests of the public API.

use linfa::traits::{Fit, Predict};
use linfa::Dataset;
use ndarray::{Array1, Array2, ShapeBuilder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tweetoscope_forest::{fit_rows, ForestError, ForestParams, RandomForest};

/// Noisy nonlinear data: y = 3·sin(x0) + x1² + U(-0.5, 0.5); x2 is pure noise.
fn nonlinear(n: usize, seed: u64) -> (Vec<[f64; 3]>, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let rows: Vec<[f64; 3]> = (0..n)
        .map(|_| {
            [
                rng.gen_range(-3.0..3.0),
                rng.gen_range(-2.0..2.0),
                rng.gen_range(-1.0..1.0),
            ]
        })
        .collect();
    let y = rows
        .iter()
        .map(|r| 3.0 * r[0].sin() + r[1] * r[1] + rng.gen_range(-0.5..0.5))
        .collect();
    (rows, y)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn variance(v: &[f64]) -> f64 {
    let m = mean(v);
    v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64
}

fn mse(model: &RandomForest, rows: &[[f64; 3]], y: &[f64]) -> f64 {
    rows.iter()
        .zip(y)
        .map(|(r, t)| (model.predict_one(r) - t).powi(2))
        .sum::<f64>()
        / y.len() as f64
}

fn small_params(seed: u64) -> ForestParams {
    ForestParams {
        n_trees: 20,
        seed,
        ..ForestParams::default()
    }
}

#[test]
fn default_parameters_are_documented_values() {
    let p = ForestParams::default();
    assert_eq!(p.n_trees, 100);
    assert_eq!(p.max_depth, 12);
    assert_eq!(p.min_samples_leaf, 5);
    assert_eq!(p.max_features, None);
    assert_eq!(p.sample_fraction, 1.0);
    assert_eq!(p.seed, 0);
    assert!(p.validate().is_ok());
    // Partial configs fill in the defaults.
    let partial: ForestParams = serde_json::from_str(r#"{"n_trees": 7}"#).unwrap();
    assert_eq!(
        partial,
        ForestParams {
            n_trees: 7,
            ..ForestParams::default()
        }
    );
}

#[test]
fn forest_beats_variance_and_a_stump_on_nonlinear_data() {
    let (train_x, train_y) = nonlinear(500, 1);
    let (test_x, test_y) = nonlinear(500, 2);
    let var = variance(&test_y);

    let forest = fit_rows(&train_x, &train_y, &ForestParams::default()).unwrap();
    let stump_params = ForestParams {
        n_trees: 1,
        max_depth: 1,
        ..ForestParams::default()
    };
    let stump = fit_rows(&train_x, &train_y, &stump_params).unwrap();
    assert_eq!(stump.n_nodes(), 3);

    let forest_mse = mse(&forest, &test_x, &test_y);
    let stump_mse = mse(&stump, &test_x, &test_y);
    println!(
        "var(y) = {var:.3}, forest MSE = {forest_mse:.3}, stump MSE = {stump_mse:.3}, OOB = {:?}",
        forest.out_of_bag_mse()
    );
    assert!(
        forest_mse < 0.10 * var,
        "forest MSE {forest_mse} not below 0.10 × var(y) = {}",
        0.10 * var
    );
    assert!(
        forest_mse < 0.25 * stump_mse,
        "forest MSE {forest_mse} not below 0.25 × stump MSE {stump_mse}"
    );
    // The out-of-bag estimate tracks the held-out error.
    let oob = forest
        .out_of_bag_mse()
        .expect("bootstrap leaves samples out");
    assert!(
        oob < 0.2 * var && oob > 0.3 * forest_mse,
        "OOB MSE {oob} vs test MSE {forest_mse}"
    );
}

#[test]
fn random_feature_subsets_also_learn() {
    let (train_x, train_y) = nonlinear(500, 3);
    let (test_x, test_y) = nonlinear(300, 4);
    let params = ForestParams {
        n_trees: 50,
        max_features: Some(1),
        ..ForestParams::default()
    };
    let sub = fit_rows(&train_x, &train_y, &params).unwrap();
    let all = fit_rows(
        &train_x,
        &train_y,
        &ForestParams {
            max_features: None,
            ..params.clone()
        },
    )
    .unwrap();
    assert_ne!(sub, all);
    let sub_mse = mse(&sub, &test_x, &test_y);
    assert!(
        sub_mse < 0.3 * variance(&test_y),
        "max_features=1 MSE {sub_mse}"
    );
}

#[test]
fn same_seed_same_model_different_seed_different_predictions() {
    let (x, y) = nonlinear(300, 5);
    let (probe, _) = nonlinear(100, 6);
    let a = fit_rows(&x, &y, &small_params(7)).unwrap();
    let b = fit_rows(&x, &y, &small_params(7)).unwrap();
    let c = fit_rows(&x, &y, &small_params(8)).unwrap();
    assert_eq!(a, b);
    let pa: Vec<u64> = probe.iter().map(|r| a.predict_one(r).to_bits()).collect();
    let pb: Vec<u64> = probe.iter().map(|r| b.predict_one(r).to_bits()).collect();
    let pc: Vec<u64> = probe.iter().map(|r| c.predict_one(r).to_bits()).collect();
    assert_eq!(pa, pb);
    assert_ne!(pa, pc);
}

#[test]
fn json_round_trip_preserves_predictions_exactly() {
    let (x, y) = nonlinear(300, 9);
    let (probe, _) = nonlinear(200, 10);
    let model = fit_rows(&x, &y, &small_params(3)).unwrap();
    let json = model.to_json();
    assert!(!json.contains('\n'), "blob must be single-line");
    let back = RandomForest::from_json(&json).unwrap();
    assert_eq!(back, model);
    assert_eq!(back.to_json(), json);
    for r in &probe {
        assert_eq!(
            back.predict_one(r).to_bits(),
            model.predict_one(r).to_bits()
        );
    }
    // Plain serde goes through the same validated format.
    let via_serde: RandomForest = serde_json::from_str(&json).unwrap();
    assert_eq!(via_serde, model);
    assert_eq!(back.out_of_bag_mse(), model.out_of_bag_mse());
    assert_eq!(back.params(), model.params());
}

#[test]
fn corrupted_blobs_are_rejected() {
    let (x, y) = nonlinear(100, 11);
    let model = fit_rows(&x, &y, &small_params(1)).unwrap();
    let good: serde_json::Value = serde_json::from_str(&model.to_json()).unwrap();
    let tamper = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        f(&mut v);
        RandomForest::from_json(&v.to_string())
    };
    assert!(matches!(
        RandomForest::from_json("{\"format\":1,"),
        Err(ForestError::Json(_))
    ));
    assert!(matches!(
        RandomForest::from_json("[]"),
        Err(ForestError::Json(_))
    ));
    for (what, result) in [
        ("format", tamper(&|v| v["format"] = 2.into())),
        ("n_features", tamper(&|v| v["n_features"] = 0.into())),
        (
            "split feature",
            tamper(&|v| v["trees"][0]["f"][0] = 3.into()),
        ),
        (
            "child index",
            tamper(&|v| v["trees"][0]["l"][0] = 100_000.into()),
        ),
        (
            "array length",
            tamper(&|v| v["trees"][0]["v"] = serde_json::json!([])),
        ),
        (
            "tree count",
            tamper(&|v| v["params"]["n_trees"] = 21.into()),
        ),
        ("params", tamper(&|v| v["params"]["max_depth"] = 0.into())),
    ] {
        assert!(
            matches!(
                result,
                Err(ForestError::InvalidModel(_)) | Err(ForestError::Json(_))
            ),
            "{what}: {result:?}"
        );
    }
    assert!(matches!(
        tamper(&|v| v["trees"][0]["l"][0] = 100_000.into()),
        Err(ForestError::InvalidModel(_))
    ));
    assert!(tamper(&|_| {}).is_ok());
}

#[test]
fn linfa_traits_match_predict_one() {
    let (rows, y) = nonlinear(200, 12);
    let x = Array2::from_shape_fn((rows.len(), 3), |(i, j)| rows[i][j]);
    let dataset = Dataset::new(x.clone(), Array1::from(y.clone()));
    let params = small_params(4);
    let model: RandomForest = params.fit(&dataset).unwrap();
    assert_eq!(model, fit_rows(&rows, &y, &params).unwrap());
    assert_eq!(model.n_features(), 3);
    assert_eq!(model.n_trees(), 20);

    let (probe_rows, _) = nonlinear(50, 13);
    let probe = Array2::from_shape_fn((50, 3), |(i, j)| probe_rows[i][j]);
    let expected: Vec<f64> = probe_rows.iter().map(|r| model.predict_one(r)).collect();
    let owned: Array1<f64> = model.predict(&probe);
    let view: Array1<f64> = model.predict(&probe.view());
    // Column-major records take the non-contiguous row path.
    let fortran = Array2::from_shape_fn((50, 3).f(), |(i, j)| probe_rows[i][j]);
    let strided: Array1<f64> = model.predict(&fortran);
    assert_eq!(owned.to_vec(), expected);
    assert_eq!(view.to_vec(), expected);
    assert_eq!(strided.to_vec(), expected);
    // Predicting a dataset reference also goes through PredictInplace.
    let on_dataset: Array1<f64> = model.predict(&dataset);
    let train_expected: Vec<f64> = rows.iter().map(|r| model.predict_one(r)).collect();
    assert_eq!(on_dataset.to_vec(), train_expected);
    assert_eq!(model.predict_rows(&probe_rows).unwrap(), expected);
}

#[test]
#[should_panic(expected = "features")]
fn linfa_predict_panics_on_wrong_width() {
    let (rows, y) = nonlinear(50, 14);
    let model = fit_rows(&rows, &y, &small_params(0)).unwrap();
    let _: Array1<f64> = model.predict(&Array2::<f64>::zeros((2, 2)));
}

#[test]
fn constant_target_gives_that_constant() {
    let (x, _) = nonlinear(200, 15);
    let c = 0.1 + 1234.567;
    let y = vec![c; x.len()];
    let model = fit_rows(&x, &y, &small_params(2)).unwrap();
    assert_eq!(
        model.n_nodes(),
        model.n_trees(),
        "no split on a constant target"
    );
    let (probe, _) = nonlinear(50, 16);
    for r in &probe {
        assert_eq!(model.predict_one(r), c);
    }
    assert_eq!(model.out_of_bag_mse(), Some(0.0));
}

#[test]
fn leaf_of_full_size_predicts_a_bootstrap_mean() {
    let (x, y) = nonlinear(300, 17);
    let params = ForestParams {
        min_samples_leaf: x.len(),
        ..small_params(5)
    };
    let model = fit_rows(&x, &y, &params).unwrap();
    assert_eq!(
        model.n_nodes(),
        model.n_trees(),
        "every tree is a single leaf"
    );
    let (probe, _) = nonlinear(30, 18);
    let p0 = model.predict_one(&probe[0]);
    for r in &probe {
        assert_eq!(model.predict_one(r), p0);
    }
    // Average of 20 bootstrap means: close to the sample mean (4 standard errors).
    let se = (variance(&y) / y.len() as f64).sqrt();
    assert!(
        (p0 - mean(&y)).abs() < 4.0 * se,
        "{p0} vs mean {}",
        mean(&y)
    );
    assert_ne!(p0, mean(&y), "bootstrap means are not the plain mean");
}

#[test]
fn min_samples_leaf_bounds_the_number_of_leaves() {
    let (x, y) = nonlinear(400, 19);
    for leaf in [1usize, 10, 40, 100] {
        let params = ForestParams {
            min_samples_leaf: leaf,
            max_depth: 30,
            ..small_params(6)
        };
        let model = fit_rows(&x, &y, &params).unwrap();
        // Each leaf holds >= `leaf` of the 400 bootstrap draws.
        let max_leaves = 400 / leaf;
        let max_nodes = model.n_trees() * (2 * max_leaves - 1);
        assert!(
            model.n_nodes() <= max_nodes,
            "leaf {leaf}: {} nodes",
            model.n_nodes()
        );
        // ... and the constraint is binding enough that trees do split.
        assert!(model.n_nodes() > model.n_trees() * (max_leaves / 4).max(1));
    }
}

#[test]
fn invalid_parameters_name_the_parameter() {
    let (x, y) = nonlinear(50, 20);
    let cases: Vec<(ForestParams, &str)> = vec![
        (
            ForestParams {
                n_trees: 0,
                ..Default::default()
            },
            "n_trees",
        ),
        (
            ForestParams {
                max_depth: 0,
                ..Default::default()
            },
            "max_depth",
        ),
        (
            ForestParams {
                min_samples_leaf: 0,
                ..Default::default()
            },
            "min_samples_leaf",
        ),
        (
            ForestParams {
                max_features: Some(0),
                ..Default::default()
            },
            "max_features",
        ),
        (
            ForestParams {
                max_features: Some(4),
                ..Default::default()
            },
            "max_features",
        ),
        (
            ForestParams {
                sample_fraction: 0.0,
                ..Default::default()
            },
            "sample_fraction",
        ),
        (
            ForestParams {
                sample_fraction: -0.5,
                ..Default::default()
            },
            "sample_fraction",
        ),
        (
            ForestParams {
                sample_fraction: 1.5,
                ..Default::default()
            },
            "sample_fraction",
        ),
        (
            ForestParams {
                sample_fraction: f64::NAN,
                ..Default::default()
            },
            "sample_fraction",
        ),
    ];
    for (params, expected) in cases {
        match fit_rows(&x, &y, &params) {
            Err(e @ ForestError::InvalidParameter { name, .. }) => {
                assert_eq!(name, expected);
                let msg = e.to_string();
                assert!(msg.contains(expected) && msg.contains("allowed"), "{msg}");
            }
            other => panic!("{expected}: expected InvalidParameter, got {other:?}"),
        }
    }
    assert!(ForestParams {
        max_features: Some(3),
        sample_fraction: 0.5,
        ..Default::default()
    }
    .validate()
    .is_ok());
}

#[test]
fn invalid_inputs_give_the_right_errors() {
    let p = small_params(0);
    let empty: Vec<Vec<f64>> = vec![];
    assert!(matches!(
        fit_rows(&empty, &[], &p),
        Err(ForestError::NoSamples)
    ));
    let no_cols: Vec<Vec<f64>> = vec![vec![], vec![]];
    assert!(matches!(
        fit_rows(&no_cols, &[1.0, 2.0], &p),
        Err(ForestError::NoFeatures)
    ));
    let rows = vec![vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 6.0]];
    assert!(matches!(
        fit_rows(&rows, &[1.0, 2.0], &p),
        Err(ForestError::SampleCountMismatch {
            records: 3,
            targets: 2
        })
    ));
    let ragged = vec![vec![1.0, 2.0], vec![3.0], vec![5.0, 6.0]];
    assert!(matches!(
        fit_rows(&ragged, &[1.0, 2.0, 3.0], &p),
        Err(ForestError::FeatureCountMismatch {
            expected: 2,
            found: 1
        })
    ));
    let nan_x = vec![vec![1.0, 2.0], vec![3.0, f64::NAN], vec![5.0, 6.0]];
    assert!(matches!(
        fit_rows(&nan_x, &[1.0, 2.0, 3.0], &p),
        Err(ForestError::NonFinite {
            row: 1,
            column: Some(1)
        })
    ));
    let e = fit_rows(&rows, &[1.0, 2.0, f64::INFINITY], &p).unwrap_err();
    assert!(matches!(
        e,
        ForestError::NonFinite {
            row: 2,
            column: None
        }
    ));
    assert!(e.to_string().contains("target"), "{e}");

    // Through linfa as well.
    let bad = Dataset::new(
        Array2::from_shape_vec((2, 1), vec![1.0, f64::NEG_INFINITY]).unwrap(),
        Array1::from(vec![1.0, 2.0]),
    );
    assert!(matches!(
        p.fit(&bad),
        Err(ForestError::NonFinite {
            row: 1,
            column: Some(0)
        })
    ));

    // Prediction-side checks.
    let model = fit_rows(&rows, &[1.0, 2.0, 3.0], &p).unwrap();
    assert!(matches!(
        model.try_predict_one(&[1.0]),
        Err(ForestError::FeatureCountMismatch {
            expected: 2,
            found: 1
        })
    ));
    assert!(matches!(
        model.try_predict_one(&[1.0, f64::NAN]),
        Err(ForestError::NonFinite {
            row: 0,
            column: Some(1)
        })
    ));
    assert!(matches!(
        model.predict_rows(&[[1.0, 2.0], [f64::NAN, 0.0]]),
        Err(ForestError::NonFinite {
            row: 1,
            column: Some(0)
        })
    ));
    assert_eq!(
        model.try_predict_one(&[1.0, 2.0]).unwrap(),
        model.predict_one(&[1.0, 2.0])
    );
}

#[test]
fn sample_fraction_shrinks_the_bootstrap() {
    let (x, y) = nonlinear(400, 21);
    let params = ForestParams {
        min_samples_leaf: 1,
        max_depth: 30,
        ..small_params(2)
    };
    let full = fit_rows(&x, &y, &params).unwrap();
    let tenth = fit_rows(
        &x,
        &y,
        &ForestParams {
            sample_fraction: 0.1,
            ..params
        },
    )
    .unwrap();
    // 40 draws per tree allow at most 40 leaves (79 nodes).
    assert!(
        tenth.n_nodes() <= tenth.n_trees() * 79,
        "{}",
        tenth.n_nodes()
    );
    assert!(full.n_nodes() > tenth.n_nodes() * 3);
}

#[test]
fn out_of_bag_intervals_hold_the_truth_at_their_coverage_on_new_rows() {
    let (rows, y) = nonlinear(1_500, 21);
    let params = ForestParams {
        n_trees: 60,
        max_depth: 8,
        min_samples_leaf: 10,
        seed: 4,
        ..ForestParams::default()
    };
    let model = fit_rows(&rows, &y, &params).unwrap();
    let levels: Vec<f64> = model.oob_residual_quantiles().iter().map(|q| q.0).collect();
    assert_eq!(levels, tweetoscope_forest::RESIDUAL_LEVELS);
    let (test_rows, test_y) = nonlinear(4_000, 22);
    for (coverage, tolerance) in [(0.5, 0.06), (0.8, 0.06), (0.9, 0.05)] {
        let inside = test_rows
            .iter()
            .zip(&test_y)
            .filter(|(r, t)| {
                let (lo, hi) = model.interval(&r[..], coverage).unwrap().unwrap();
                assert!(lo <= hi);
                (lo..=hi).contains(t)
            })
            .count() as f64
            / test_y.len() as f64;
        assert!(
            (inside - coverage).abs() <= tolerance,
            "{coverage} interval held {inside} of new rows"
        );
    }
    assert_eq!(
        model.interval(&[0.0, 0.0, 0.0], 0.7).unwrap(),
        None,
        "no such level"
    );
    assert!(
        model.interval(&[0.0, 0.0], 0.8).is_err(),
        "wrong row length"
    );
    // The residuals travel with the model.
    let copy = RandomForest::from_json(&model.to_json()).unwrap();
    assert_eq!(copy, model);
}

#[test]
fn a_model_written_before_intervals_still_predicts_without_them() {
    let (rows, y) = nonlinear(200, 5);
    let model = fit_rows(&rows, &y, &small_params(1)).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&model.to_json()).unwrap();
    json.as_object_mut()
        .unwrap()
        .remove("oob_residual_quantiles")
        .expect("written by new models");
    let old = RandomForest::from_json(&json.to_string()).unwrap();
    assert_eq!(old.predict_one(&rows[0]), model.predict_one(&rows[0]));
    assert_eq!(old.interval(&rows[0], 0.8).unwrap(), None);
    json["oob_residual_quantiles"] = serde_json::json!([[0.1, 2.0], [0.9, 1.0]]);
    assert!(
        RandomForest::from_json(&json.to_string()).is_err(),
        "decreasing quantiles"
    );
}
