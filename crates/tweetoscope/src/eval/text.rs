//! The evaluation report as text tables, one per window.

use std::fmt::Write as _;

use super::EvalReport;

/// A share as a percentage, `-` when undefined.
fn percent(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{:.0}%", 100.0 * v)
    }
}

impl EvalReport {
    /// The report as text: one table per window, the served method marked with `*`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Evaluation on {}: {} cascades, {:.1} s, {:.0} fits/s",
            self.dataset, self.cascades, self.seconds, self.fits_per_second
        );
        if let Some(test) = &self.test_dataset {
            let _ = writeln!(out, "test data set: {test}");
        }
        let per_fold = if self.folds.is_some() {
            " per fold"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "split: {}; {} training cascades{per_fold}, {} test cascades",
            self.split, self.train_cascades, self.test_cascades
        );
        for w in &self.windows {
            let _ = writeln!(
                out,
                "\nwindow {} s: {} training pairs{per_fold}, {} test pairs, fit failures {:.1}%, \
                 alert size {:.0} tweets",
                w.window,
                w.train_pairs,
                w.test_pairs,
                100.0 * w.fit_failure_share,
                w.alert_size
            );
            let spread_head = if self.folds.is_some() {
                "  fold sd"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "{:<21} {:>10}{spread_head} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>7} {:>7}",
                "method",
                "median ARE",
                "mean ARE",
                "p10",
                "p25",
                "p50",
                "p75",
                "p90",
                "<=10%",
                "<=25%",
                "alert P",
                "alert R"
            );
            for m in &w.methods {
                let [a, b, c, d, e] = m.quantiles;
                let name = format!("{}{}", m.method, if m.served { " *" } else { "" });
                let spread = m.folds.as_ref().map_or_else(String::new, |f| {
                    format!(" {:>8}", error_figure(f.median_are.sd))
                });
                let _ = writeln!(
                    out,
                    "{name:<21} {:>10}{spread} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} \
                     {:>6} {:>6} {:>7} {:>7}",
                    error_figure(m.median_are),
                    error_figure(m.mean_are),
                    error_figure(a),
                    error_figure(b),
                    error_figure(c),
                    error_figure(d),
                    error_figure(e),
                    percent(m.within_10),
                    percent(m.within_25),
                    percent(m.alerts.precision),
                    percent(m.alerts.recall),
                );
            }
            for m in &w.methods {
                if let Some(i) = &m.interval {
                    let _ = writeln!(
                        out,
                        "{:.0}% interval of {}: holds the truth for {} of the test pairs, median \
                         width {:.2} x the prediction; alerts on its lower bound: precision {}, \
                         recall {}; on its upper bound: precision {}, recall {}",
                        100.0 * i.level,
                        m.method,
                        percent(i.coverage),
                        i.median_relative_width,
                        percent(i.lower_bound_alerts.precision),
                        percent(i.lower_bound_alerts.recall),
                        percent(i.upper_bound_alerts.precision),
                        percent(i.upper_bound_alerts.recall)
                    );
                }
            }
            let (blended, with_growth) = w.served_blended;
            if with_growth > 0 {
                let splits = if self.folds.is_some() {
                    "folds"
                } else {
                    "splits"
                };
                let _ = writeln!(
                    out,
                    "served: the growth model alone in {} of {with_growth} {splits}, blended with \
                     the forest-corrected Hawkes size in {blended}",
                    with_growth - blended
                );
            }
            if let Some(r) = &w.recovery {
                let _ = writeln!(
                    out,
                    "parameter recovery (median relative error): p {:.3}, beta {:.3}, n* {:.3}",
                    r.median_rel_error_p, r.median_rel_error_beta, r.median_rel_error_n_star
                );
            }
        }
        let _ = writeln!(
            out,
            "\n* the prediction the pipeline serves. ARE = |predicted - true| / true; alert P/R: \
             precision and recall of \"predicted >= alert size\"."
        );
        out
    }
}

/// An error figure with three decimals, or in scientific notation when it is too large to fit a
/// column (a method whose predictions explode).
fn error_figure(v: f64) -> String {
    if v.abs() < 1e4 {
        format!("{v:.3}")
    } else {
        format!("{v:.1e}")
    }
}
