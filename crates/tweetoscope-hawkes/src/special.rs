//! Special functions needed by the power-law kernel: `ln Γ` and the digamma function `ψ`, for
//! positive arguments (the crate only evaluates them on `[1, 5]`).

/// Arguments are shifted up to at least this before the asymptotic series is used.
const SHIFT: f64 = 10.0;

/// `ln Γ(x)` for `x > 0`: recurrence up to `x ≥ 10`, then Stirling's series (absolute error
/// below 1e-14 on the range the crate uses).
pub(crate) fn ln_gamma(x: f64) -> f64 {
    debug_assert!(x > 0.0);
    let mut x = x;
    let mut product = 1.0;
    while x < SHIFT {
        product *= x;
        x += 1.0;
    }
    let z2 = 1.0 / (x * x);
    let series = (1.0 / 12.0
        + z2 * (-1.0 / 360.0 + z2 * (1.0 / 1260.0 + z2 * (-1.0 / 1680.0 + z2 / 1188.0))))
        / x;
    (x - 0.5) * x.ln() - x + 0.5 * std::f64::consts::TAU.ln() + series - product.ln()
}

/// Digamma `ψ(x) = d ln Γ(x)/dx` for `x > 0`: recurrence up to `x ≥ 10`, then the asymptotic
/// series.
pub(crate) fn digamma(x: f64) -> f64 {
    debug_assert!(x > 0.0);
    let mut x = x;
    let mut shift = 0.0;
    while x < SHIFT {
        shift += 1.0 / x;
        x += 1.0;
    }
    let z2 = 1.0 / (x * x);
    let series = z2
        * (1.0 / 12.0 - z2 * (1.0 / 120.0 - z2 * (1.0 / 252.0 - z2 * (1.0 / 240.0 - z2 / 132.0))));
    x.ln() - 0.5 / x - series - shift
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches_known_values() {
        // Γ(1) = Γ(2) = 1, Γ(1/2) = √π, Γ(5) = 24, Γ(3.5) = 15√π/8.
        let pi = std::f64::consts::PI;
        let cases = [
            (1.0, 0.0),
            (2.0, 0.0),
            (0.5, 0.5 * pi.ln()),
            (5.0, 24f64.ln()),
            (3.5, (15.0 * pi.sqrt() / 8.0).ln()),
        ];
        for (x, want) in cases {
            let got = ln_gamma(x);
            assert!((got - want).abs() < 1e-13, "ln Γ({x}) = {got}, want {want}");
        }
    }

    #[test]
    fn digamma_matches_known_values_and_the_derivative_of_ln_gamma() {
        // ψ(1) = −γ, ψ(1/2) = −γ − 2 ln 2, ψ(x + 1) = ψ(x) + 1/x.
        let gamma = 0.577_215_664_901_532_9;
        assert!((digamma(1.0) + gamma).abs() < 1e-13);
        assert!((digamma(0.5) + gamma + 2.0 * 2f64.ln()).abs() < 1e-13);
        for x in [1.05, 1.5, 2.7, 4.0] {
            assert!((digamma(x + 1.0) - digamma(x) - 1.0 / x).abs() < 1e-13);
            let h = 1e-5;
            let fd = (ln_gamma(x + h) - ln_gamma(x - h)) / (2.0 * h);
            assert!((fd - digamma(x)).abs() < 1e-8, "x = {x}");
        }
    }
}
