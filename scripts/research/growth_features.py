#!/usr/bin/env python3
"""Candidate features for the growth model, measured on the TiDeH cascades.

The learner's growth model is a median (least absolute deviations) regression of
ln(n_tot / n_obs) on features of the series observed in a window (README, "Model"). This script
refits that line with other feature sets and scores each by the median ARE of held-out cascades,
over contiguous 5- and 10-fold splits (as `tweetoscope eval --folds`) and over repeated random
5-fold partitions, which say how much a figure owes to one way of cutting 50 cascades. It is a
research aid, not part of the product: `tweetoscope eval` gives the figures of what is served.

    python3 scripts/research/growth_features.py [--data-dir ../shared/data/tideh] [--reps 20]

Needs numpy and scipy (`pip install numpy scipy`).
"""

import argparse
import math
import pathlib

import numpy as np
from scipy.optimize import linprog

WINDOWS = (600, 3600, 21600)
DAY = 86400.0
# SEISMIC's memory kernel (Zhao et al. 2015): a plateau of 5 minutes, then a power-law tail.
SEISMIC_PLATEAU, SEISMIC_TAIL = 300.0, 0.242
# TiDeH's daily rhythm (Kobayashi & Lambiotte 2016): amplitude and phase of the infectious rate.
TIDEH_AMPLITUDE, TIDEH_PHASE = 0.424, 0.125


def read_cascades(data_dir):
    """(events sorted by time as an (n, 2) array of time and followers, start day) per file."""
    cascades = []
    paths = sorted(pathlib.Path(data_dir).glob("RT*.txt"), key=lambda p: int(p.stem[2:]))
    for path in paths:
        with open(path) as f:
            start_day = float(f.readline().split()[1])
            events = np.array([[float(v) for v in line.split()[:2]] for line in f if line.strip()])
        cascades.append((events[np.argsort(events[:, 0], kind="stable")], start_day))
    return cascades


def least_absolute_deviations(x, y):
    """Intercept and coefficients minimising the sum of |y - a - x b| (a linear programme)."""
    n, k = x.shape
    design = np.hstack([np.ones((n, 1)), x])
    cost = np.concatenate([np.zeros(k + 1), np.ones(2 * n)])
    equalities = np.hstack([design, np.eye(n), -np.eye(n)])
    bounds = [(None, None)] * (k + 1) + [(0, None)] * (2 * n)
    result = linprog(cost, A_eq=equalities, b_eq=y, bounds=bounds, method="highs")
    return result.x[: k + 1]


def seismic_cdf(age):
    """Share of the SEISMIC kernel's mass within `age` seconds."""
    age = np.maximum(age, 0.0)
    total = SEISMIC_PLATEAU * (1.0 + 1.0 / SEISMIC_TAIL)
    tail = (SEISMIC_PLATEAU / SEISMIC_TAIL) * (
        1.0 - (np.maximum(age, SEISMIC_PLATEAU) / SEISMIC_PLATEAU) ** -SEISMIC_TAIL
    )
    return np.where(age <= SEISMIC_PLATEAU, age / total, (SEISMIC_PLATEAU + tail) / total)


def served(observed, window, start_day):
    """The served features: ln n_obs, ln late share, ln mean sqrt(followers)."""
    n = len(observed)
    age = observed[:, 0] - observed[0, 0]
    late = np.count_nonzero(age >= window / 2) / n
    reach = max(np.mean(np.sqrt(np.maximum(observed[:, 1], 1.0))), 1.0)
    return [math.log(n), math.log(max(late, 0.5 / n)), math.log(reach)]


def exposure_ahead(exponent):
    """ln of the followers' exposure still ahead over the exposure already spent, under the
    SEISMIC kernel, followers weighted by m^exponent."""

    def feature(observed, window, start_day):
        age = window - (observed[:, 0] - observed[0, 0])
        weight = np.maximum(observed[:, 1], 1.0) ** exponent
        spent = seismic_cdf(age)
        return [math.log((weight * (1 - spent)).sum() / (weight * spent).sum())]

    return feature


def daily_activity(observed, window, start_day):
    """ln of TiDeH's mean daily-rhythm factor over the window."""
    t = np.linspace(0.0, window, 200) / DAY + start_day + TIDEH_PHASE
    return [math.log(np.mean(1.0 - TIDEH_AMPLITUDE * np.sin(2 * np.pi * t)))]


def time_of_day(observed, window, start_day):
    """The start's time of day on the unit circle."""
    return [math.sin(2 * np.pi * start_day), math.cos(2 * np.pi * start_day)]


def combine(*parts):
    return lambda observed, window, start_day: [
        v for part in parts for v in part(observed, window, start_day)
    ]


def pick(indices):
    return lambda observed, window, start_day: [
        served(observed, window, start_day)[i] for i in indices
    ]




def growth_line(x, growth, n_obs, n_tot, train, test):
    """The growth model: ln(n_tot / n_obs) by median regression on the features."""
    line = least_absolute_deviations(x[train], growth[train])
    return n_obs[test] * np.exp(line[0] + x[test] @ line[1:])


def log_linear(x, growth, n_obs, n_tot, train, test):
    """Baseline: ln n_tot = a + b ln n_obs by least squares (Szabo & Huberman)."""
    design = np.vstack([np.ones(len(train)), np.log(n_obs[train])]).T
    a, b = np.linalg.lstsq(design, np.log(n_tot[train]), rcond=None)[0]
    return np.exp(a + b * np.log(n_obs[test]))


def median_ratio(x, growth, n_obs, n_tot, train, test):
    """Baseline: n_obs times the median growth of the training cascades."""
    return n_obs[test] * np.median(n_tot[train] / n_obs[train])


def held_out_median_are(method, x, growth, n_obs, n_tot, blocks):
    """Median ARE of the cascades of each block predicted by `method` fitted on the others."""
    are = np.zeros(len(growth))
    for test in blocks:
        train = np.setdiff1d(np.arange(len(growth)), test)
        predicted = method(x, growth, n_obs, n_tot, train, test)
        are[test] = np.abs(predicted - n_tot[test]) / n_tot[test]
    return float(np.median(are))


CANDIDATES = {
    "baseline: log-linear": (log_linear, pick([0])),
    "baseline: median ratio": (median_ratio, pick([0])),
    "served (ln n, late share, reach)": served,
    "ln n alone": pick([0]),
    "ln n, late share": pick([0, 1]),
    "ln n, reach": pick([0, 2]),
    "exposure ahead m^0.5, ln n": combine(pick([0]), exposure_ahead(0.5)),
    "served + exposure ahead m^0.5": combine(served, exposure_ahead(0.5)),
    "served + exposure ahead m^1": combine(served, exposure_ahead(1.0)),
    "served + daily activity": combine(served, daily_activity),
    "served + time of day": combine(served, time_of_day),
}


def contiguous(n, folds):
    return [np.arange(f * n // folds, (f + 1) * n // folds) for f in range(folds)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default="../shared/data/tideh")
    parser.add_argument("--reps", type=int, default=20, help="random 5-fold partitions")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cascades = read_cascades(args.data_dir)
    n = len(cascades)
    print(f"{n} cascades; median ARE of held-out cascades: contiguous 5 folds / 10 folds / "
          f"mean (sd) over {args.reps} random 5-fold partitions")
    print(f"{'features':36}" + "".join(f"{w:>28} s" for w in WINDOWS))
    for name, candidate in CANDIDATES.items():
        method, features = candidate if isinstance(candidate, tuple) else (growth_line, candidate)
        cells = []
        for window in WINDOWS:
            rows, n_obs, n_tot = [], [], []
            for events, start_day in cascades:
                observed = events[events[:, 0] - events[0, 0] <= window]
                rows.append(features(observed, window, start_day))
                n_obs.append(len(observed))
                n_tot.append(len(events))
            x, n_obs, n_tot = np.array(rows), np.array(n_obs, float), np.array(n_tot, float)
            growth = np.log(n_tot / n_obs)
            rng = np.random.default_rng(args.seed)
            scores = [
                held_out_median_are(method, x, growth, n_obs, n_tot, blocks)
                for blocks in [contiguous(n, 5), contiguous(n, 10)]
                + [np.array_split(rng.permutation(n), 5) for _ in range(args.reps)]
            ]
            five, ten, random = scores[0], scores[1], scores[2:]
            cells.append(f"{five:.3f} / {ten:.3f} / {np.mean(random):.3f} ({np.std(random):.3f})")
        print(f"{name:36}" + "".join(f"{c:>30}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
