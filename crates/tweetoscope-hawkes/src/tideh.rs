//! The time-dependent Hawkes process of TiDeH (Kobayashi & Lambiotte, ICWSM 2016): a retweet
//! rate `λ(t) = p(t)·Σ_{t_i<t} d_i·φ(t − t_i)` whose infectious rate follows the day and ages,
//! `p(t) = p₀·[1 − r₀·sin(2π(t + t_start)/T_day + 2π·φ₀)]·e^{−t/τ_m}`, with the memory kernel of
//! SEISMIC (Zhao et al. 2015), `φ(s) = c₀` up to `s₀` then `c₀·(s/s₀)^{−(1+θ)}`, normalised.
//!
//! Only `p₀` is fitted per cascade (in closed form: λ is linear in it); the rhythm, the ageing
//! and the kernel are shared settings ([`TidehParams`], defaults from the paper's fits over its
//! data). The prediction integrates the expected future rate, in which every expected retweet
//! excites like an average observed one, up to the horizon. Because `p(t)` ages, the expected
//! size stays finite whatever `p₀` is. Times are seconds since the original tweet; `t_start` is
//! the time of day of the original tweet as a fraction of a day. No I/O.

use crate::{Cascade, HawkesError};

/// Seconds in a day.
pub const DAY: f64 = 86_400.0;

/// The shared settings of the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TidehParams {
    /// End of the kernel's plateau `s₀`, seconds.
    pub plateau: f64,
    /// Exponent `θ` of the kernel's power-law tail.
    pub theta: f64,
    /// Relative amplitude `r₀` of the daily rhythm (0: none).
    pub rhythm_amplitude: f64,
    /// Phase `φ₀` of the daily rhythm, in days.
    pub rhythm_phase: f64,
    /// Ageing time `τ_m` of the infectious rate, seconds.
    pub ageing: f64,
    /// Time after the original tweet up to which the size is predicted, seconds.
    pub horizon: f64,
    /// Width of the cells the rate is integrated on, seconds.
    pub step: f64,
}

impl Default for TidehParams {
    /// The paper's values: s₀ = 5 min, θ = 0.242, r₀ = 0.424, φ₀ = 0.125 day, τ_m = 2 days;
    /// prediction up to 7 days on 2-minute cells.
    fn default() -> Self {
        Self {
            plateau: 300.0,
            theta: 0.242,
            rhythm_amplitude: 0.424,
            rhythm_phase: 0.125,
            ageing: 2.0 * DAY,
            horizon: 7.0 * DAY,
            step: 300.0,
        }
    }
}

impl TidehParams {
    fn validate(&self) -> Result<(), HawkesError> {
        let positive = [
            ("plateau", self.plateau),
            ("theta", self.theta),
            ("ageing", self.ageing),
            ("horizon", self.horizon),
            ("step", self.step),
        ];
        for (name, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return Err(HawkesError::InvalidArgument { name, value });
            }
        }
        if !(0.0..1.0).contains(&self.rhythm_amplitude) {
            return Err(HawkesError::InvalidArgument {
                name: "rhythm_amplitude",
                value: self.rhythm_amplitude,
            });
        }
        if !self.rhythm_phase.is_finite() {
            return Err(HawkesError::InvalidArgument {
                name: "rhythm_phase",
                value: self.rhythm_phase,
            });
        }
        Ok(())
    }

    /// The kernel's plateau height `c₀`, so that `φ` integrates to 1.
    fn plateau_height(&self) -> f64 {
        1.0 / (self.plateau * (1.0 + 1.0 / self.theta))
    }

    /// The memory kernel `φ(s)`.
    pub fn kernel(&self, s: f64) -> f64 {
        let c0 = self.plateau_height();
        if s < 0.0 {
            0.0
        } else if s <= self.plateau {
            c0
        } else {
            c0 * (s / self.plateau).powf(-(1.0 + self.theta))
        }
    }

    /// `Φ(s) = ∫₀^s φ`, from 0 to 1.
    pub fn kernel_mass(&self, s: f64) -> f64 {
        let c0 = self.plateau_height();
        if s <= 0.0 {
            0.0
        } else if s <= self.plateau {
            c0 * s
        } else {
            c0 * self.plateau * (1.0 + (1.0 - (s / self.plateau).powf(-self.theta)) / self.theta)
        }
    }

    /// `p(t)/p₀` at `t` seconds after an original tweet posted at time of day `t_start` (days).
    pub fn infectious_shape(&self, t: f64, t_start: f64) -> f64 {
        let angle = std::f64::consts::TAU * ((t / DAY + t_start) + self.rhythm_phase);
        (1.0 - self.rhythm_amplitude * angle.sin()) * (-t / self.ageing).exp()
    }
}

/// Future cells after which the observed events' excitation is summed per cell of them.
const NEAR_CELLS: f64 = 12.0;

/// A cascade fitted by [`fit`]: its `p₀` and what it takes to predict.
#[derive(Debug, Clone, PartialEq)]
pub struct TidehFit {
    /// The fitted base infectious rate `p₀`.
    pub p0: f64,
    /// The mark an expected future retweet excites with: the mean observed one.
    pub future_mark: f64,
    /// Observed events (the original tweet included).
    pub n_obs: usize,
}

/// Checks the crate's conventions (those of [`Cascade::new`], times relative to the original
/// tweet) and a finite time of day.
fn check(times: &[f64], marks: &[f64], t_obs: f64, t_start: f64) -> Result<(), HawkesError> {
    Cascade::new(times, marks, t_obs)?;
    if !t_start.is_finite() {
        return Err(HawkesError::InvalidArgument {
            name: "t_start",
            value: t_start,
        });
    }
    Ok(())
}

/// Cells `[a, b)` of width `step` covering `[from, to)` (the last one shorter).
fn cells(from: f64, to: f64, step: f64) -> impl Iterator<Item = (f64, f64)> {
    let count = ((to - from) / step).ceil().max(0.0) as usize;
    (0..count).map(move |k| {
        let a = from + k as f64 * step;
        (a, (a + step).min(to))
    })
}

/// Fits `p₀` by maximum likelihood on the events `(times, marks)` (times since the original
/// tweet, which is the first event; marks: follower counts, below 1 counted as 1) observed up to
/// `t_obs`, for an original tweet posted at time of day `t_start` (fraction of a day).
pub fn fit(
    times: &[f64],
    marks: &[f64],
    t_obs: f64,
    t_start: f64,
    params: &TidehParams,
) -> Result<TidehFit, HawkesError> {
    params.validate()?;
    check(times, marks, t_obs, t_start)?;
    // ∂/∂p₀ of Σ ln λ(t_j) − ∫₀^T λ vanishes at p₀ = (retweets) / ∫₀^T λ/p₀.
    let mut exposure = 0.0;
    for (a, b) in cells(0.0, t_obs, params.step) {
        let shape = params.infectious_shape(0.5 * (a + b), t_start);
        let mut excitation = 0.0;
        for (&t, &m) in times.iter().zip(marks).take_while(|(&t, _)| t < b) {
            let lo = a.max(t);
            excitation += m.max(1.0) * (params.kernel_mass(b - t) - params.kernel_mass(lo - t));
        }
        exposure += shape * excitation;
    }
    let retweets = (times.len() - 1) as f64;
    let p0 = if exposure > 0.0 {
        retweets / exposure
    } else {
        0.0
    };
    let future_mark = if times.len() > 1 {
        marks[1..].iter().map(|m| m.max(1.0)).sum::<f64>() / retweets
    } else {
        marks[0].max(1.0)
    };
    Ok(TidehFit {
        p0,
        future_mark,
        n_obs: times.len(),
    })
}

impl TidehFit {
    /// The expected number of events up to the horizon of `params`, the observed ones included,
    /// given the same observed events as the fit.
    pub fn predicted_size(
        &self,
        times: &[f64],
        marks: &[f64],
        t_obs: f64,
        t_start: f64,
        params: &TidehParams,
    ) -> Result<f64, HawkesError> {
        params.validate()?;
        check(times, marks, t_obs, t_start)?;
        let future: Vec<(f64, f64)> = cells(t_obs, params.horizon, params.step).collect();
        // The kernel's mass between cell centres k − j cells apart, per unit of time.
        let step = params.step;
        let lag_density: Vec<f64> = (0..future.len())
            .map(|lag| {
                let lag = lag as f64;
                (params.kernel_mass((lag + 0.5) * step)
                    - params.kernel_mass((lag - 0.5).max(0.0) * step))
                    / step
            })
            .collect();
        let mut expected = Vec::with_capacity(future.len());
        // Far from the observed events, each cell's worth of them excites as one event of their
        // total mark at their mark-weighted mean time (the kernel hardly bends over a cell there).
        let mut sums = vec![(0.0, 0.0); (t_obs / step).ceil() as usize];
        for (&t, &m) in times.iter().zip(marks) {
            let cell = ((t / step) as usize).min(sums.len() - 1);
            let (mass, moment) = &mut sums[cell];
            *mass += m.max(1.0);
            *moment += m.max(1.0) * t;
        }
        let bins: Vec<(f64, f64)> = sums
            .into_iter()
            .filter(|&(mass, _)| mass > 0.0)
            .map(|(mass, moment)| (moment / mass, mass))
            .collect();
        let near = t_obs + NEAR_CELLS * step;
        let mut total = 0.0;
        for (k, &(a, b)) in future.iter().enumerate() {
            let width = b - a;
            let pull =
                |(t, m): (f64, f64)| m * (params.kernel_mass(b - t) - params.kernel_mass(a - t));
            let excitation = if a < near {
                times
                    .iter()
                    .zip(marks)
                    .map(|(&t, &m)| pull((t, m.max(1.0))))
                    .sum::<f64>()
            } else {
                bins.iter().map(|&bin| pull(bin)).sum::<f64>()
            } / width;
            let mut echo = 0.0;
            for (j, &n) in expected.iter().enumerate().take(k) {
                echo += n * lag_density[k - j];
            }
            let rate = self.p0 * params.infectious_shape(0.5 * (a + b), t_start);
            // The cell's own expected events excite within it too (half the plateau's mass).
            let own = rate * self.future_mark * lag_density[0] * width;
            let n = if own < 1.0 {
                rate * (excitation + self.future_mark * echo) * width / (1.0 - own)
            } else {
                f64::INFINITY
            };
            if !n.is_finite() {
                return Err(HawkesError::Diverges { at: a, p0: self.p0 });
            }
            expected.push(n);
            total += n;
        }
        Ok(self.n_obs as f64 + total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_integrates_to_one_and_its_mass_is_its_integral() {
        let p = TidehParams::default();
        // Far in the tail the mass approaches 1 from below.
        assert!(p.kernel_mass(1e12) > 0.99 && p.kernel_mass(1e12) < 1.0);
        // Numerical integral of φ against Φ at a few points.
        for s in [100.0, 300.0, 1000.0, 20_000.0] {
            let n = 200_000;
            let h = s / n as f64;
            let integral: f64 = (0..n).map(|i| p.kernel((i as f64 + 0.5) * h) * h).sum();
            assert!(
                (integral - p.kernel_mass(s)).abs() < 1e-4,
                "{s}: {integral}"
            );
        }
    }

    #[test]
    fn the_infectious_rate_follows_the_day_and_ages() {
        let p = TidehParams::default();
        let a = p.infectious_shape(0.0, 0.0);
        let a_next_day = p.infectious_shape(DAY, 0.0);
        assert!((a_next_day / a - (-DAY / p.ageing).exp()).abs() < 1e-12);
        let flat = TidehParams {
            rhythm_amplitude: 0.0,
            ..p
        };
        assert!((flat.infectious_shape(3_600.0, 0.3) - (-3_600.0 / p.ageing).exp()).abs() < 1e-12);
        // The rate is lowest where the sine peaks, and half a day later at its highest.
        let lowest = 0.25 - p.rhythm_phase;
        assert!((p.infectious_shape(0.0, lowest) - (1.0 - p.rhythm_amplitude)).abs() < 1e-12);
        let highest = p.infectious_shape(0.0, lowest + 0.5);
        assert!((highest - (1.0 + p.rhythm_amplitude)).abs() < 1e-12);
    }

    /// Without a rhythm or ageing, with one retweeter mark, the model is a Hawkes process of
    /// branching factor p₀·m: the expected size from a single event is 1/(1 − n*).
    #[test]
    fn without_rhythm_or_ageing_the_size_is_the_branching_process_one() {
        let params = TidehParams {
            rhythm_amplitude: 0.0,
            ageing: 1e15,
            horizon: 1e6,
            step: 300.0,
            // A light tail, so that the horizon holds nearly all of the kernel's mass.
            theta: 3.0,
            ..TidehParams::default()
        };
        let n_star: f64 = 0.5;
        let mark = 100.0;
        let fit = TidehFit {
            p0: n_star / mark,
            future_mark: mark,
            n_obs: 1,
        };
        let size = fit
            .predicted_size(&[0.0], &[mark], 1.0, 0.0, &params)
            .expect("finite");
        let expected = 1.0 / (1.0 - n_star);
        assert!(
            (size - expected).abs() < 0.01 * expected,
            "{size} vs {expected}"
        );
    }

    #[test]
    fn the_fitted_rate_explains_the_observed_retweets() {
        let params = TidehParams::default();
        let times = [0.0, 30.0, 90.0, 200.0, 400.0, 550.0];
        let marks = [1000.0, 50.0, 10.0, 300.0, 5.0, 40.0];
        let fit = fit(&times, &marks, 600.0, 0.4, &params).expect("fits");
        assert!(fit.p0 > 0.0);
        // The expected number of retweets on [0, T] under the fitted p₀ equals the observed 5.
        let mut expected = 0.0;
        let n = 60_000;
        let h = 600.0 / n as f64;
        for i in 0..n {
            let t = (i as f64 + 0.5) * h;
            let excitation: f64 = times
                .iter()
                .zip(&marks)
                .filter(|(&ti, _)| ti < t)
                .map(|(&ti, &m)| m * params.kernel(t - ti))
                .sum();
            expected += fit.p0 * params.infectious_shape(t, 0.4) * excitation * h;
        }
        assert!((expected - 5.0).abs() < 0.05, "{expected}");
        assert!((fit.future_mark - 81.0).abs() < 1e-9);
        let size = fit
            .predicted_size(&times, &marks, 600.0, 0.4, &params)
            .expect("finite");
        assert!(size > times.len() as f64, "{size}");
    }

    #[test]
    fn a_tweet_posted_before_the_quiet_hours_is_predicted_smaller() {
        let params = TidehParams::default();
        let times = [0.0, 60.0, 120.0, 300.0, 420.0, 500.0];
        let marks = [500.0; 6];
        let size_at = |t_start: f64| {
            let f = fit(&times, &marks, 600.0, t_start, &params).expect("fits");
            f.predicted_size(&times, &marks, 600.0, t_start, &params)
                .expect("finite")
        };
        // Posted when the rate is at its highest, the same burst says less about the tweet
        // (a lower p₀) and the quiet hours follow; posted at the lowest, the reverse.
        let busy_then_quiet = 0.75 - params.rhythm_phase;
        let quiet_then_busy = busy_then_quiet + 0.5;
        assert!(size_at(busy_then_quiet) < size_at(quiet_then_busy));
    }

    #[test]
    fn bad_input_is_refused() {
        let p = TidehParams::default();
        assert!(fit(&[], &[], 600.0, 0.0, &p).is_err());
        assert!(fit(&[0.0, 700.0], &[1.0, 1.0], 600.0, 0.0, &p).is_err());
        assert!(fit(&[0.0, 10.0], &[1.0], 600.0, 0.0, &p).is_err());
        let bad = TidehParams {
            rhythm_amplitude: 1.5,
            ..p
        };
        assert!(fit(&[0.0], &[1.0], 600.0, 0.0, &bad).is_err());
    }
}
