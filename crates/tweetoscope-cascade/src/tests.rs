use super::*;
use tweetoscope_messages::Tweet;

fn tweet(id: &str, t: f64, m: f64) -> Tweet {
    Tweet {
        kind: TweetKind::Tweet,
        msg: format!("msg of {id}"),
        t,
        m,
        tweet_id: id.into(),
        info: String::new(),
    }
}

fn retweet(id: &str, t: f64, m: f64) -> Tweet {
    Tweet {
        kind: TweetKind::Retweet,
        ..tweet(id, t, m)
    }
}

fn config(min: usize) -> CollectorConfig {
    CollectorConfig {
        windows: vec![600, 1200],
        terminated: 1800.0,
        terminated_age_ratio: 0.0,
        min_cascade_size: min,
        remembered_finished: 100,
    }
}

/// Feeds `events` to one source and returns everything emitted.
fn feed(c: &mut Collector, source: &str, events: &[Tweet]) -> Vec<Emission> {
    let mut out = Vec::new();
    for e in events {
        c.on_tweet(source, e, &mut out);
    }
    out
}

fn series(out: &[Emission]) -> Vec<(&str, u64, usize)> {
    out.iter()
        .filter_map(|e| match e {
            Emission::Series(s) => Some((s.cid.0.as_str(), s.t_obs, s.tweets.len())),
            _ => None,
        })
        .collect()
}

fn sizes(out: &[Emission]) -> Vec<(&str, u64, u64, f64)> {
    out.iter()
        .filter_map(|e| match e {
            Emission::Size(s) => Some((s.cid.0.as_str(), s.t_obs.unwrap(), s.n_tot, s.t_end)),
            _ => None,
        })
        .collect()
}

/// A cascade `id` starting at `start` with retweets every `step` seconds, `n` events in all.
fn cascade(id: &str, start: f64, n: usize, step: f64) -> Vec<Tweet> {
    (0..n)
        .map(|i| {
            if i == 0 {
                tweet(id, start, 100.0)
            } else {
                retweet(id, start + i as f64 * step, 10.0 + i as f64)
            }
        })
        .collect()
}

#[test]
fn windows_emit_partial_series_when_the_source_clock_reaches_them() {
    let mut c = Collector::new(config(3));
    // 20 events, one every 25 s: the source clock stays below start + 600.
    let out = feed(&mut c, "s", &cascade("a", 1000.0, 20, 25.0));
    assert!(series(&out).is_empty(), "no window reached yet");
    // Another cascade moves the clock to start + 600 exactly: window 600 closes (t − start ≥ T_obs).
    let out = feed(&mut c, "s", &[tweet("b", 1600.0, 1.0)]);
    assert_eq!(series(&out), vec![("a", 600, 20)]);
    let Emission::Series(s) = &out[0] else {
        unreachable!()
    };
    assert_eq!(
        s.tweets[0],
        (0.0, 100.0),
        "times are relative to the first tweet"
    );
    assert_eq!(s.tweets[11], (275.0, 21.0));
    assert_eq!(s.msg, "msg of a");
    // Retweets of a after its 600 s window count only in the 1200 s one.
    let out = feed(
        &mut c,
        "s",
        &[retweet("a", 1700.0, 5.0), retweet("a", 2199.0, 5.0)],
    );
    assert!(series(&out).is_empty());
    let out = feed(&mut c, "s", &[retweet("b", 2200.0, 1.0)]);
    assert_eq!(
        series(&out),
        vec![("a", 1200, 22)],
        "1700 and 2199 are before 1000 + 1200"
    );
}

#[test]
fn termination_emits_one_size_per_emitted_window_and_forgets_the_cascade() {
    let mut c = Collector::new(config(3));
    let mut out = feed(&mut c, "s", &cascade("a", 0.0, 20, 50.0));
    assert_eq!(c.open_cascades(), 1);
    // Last event at 950: idle for exactly 1800 s is not over yet (strictly greater is).
    out.extend(feed(&mut c, "s", &[tweet("z", 2750.0, 1.0)]));
    assert!(sizes(&out).is_empty());
    out.extend(feed(&mut c, "s", &[retweet("z", 2751.0, 1.0)]));
    assert_eq!(
        sizes(&out),
        vec![("a", 600, 20, 950.0), ("a", 1200, 20, 950.0)]
    );
    assert_eq!(series(&out), vec![("a", 600, 12), ("a", 1200, 20)]);
    assert_eq!(c.open_cascades(), 1, "only z is left");
}

#[test]
fn an_old_cascade_must_stay_quiet_for_as_long_as_it_has_lived() {
    let mut c = Collector::new(CollectorConfig {
        terminated_age_ratio: 1.0,
        ..config(3)
    });
    // a lives from 0 to 5000 s (a retweet every 50 s); young from 6000 to 6100 s.
    let mut events = cascade("a", 0.0, 101, 50.0);
    events.extend(cascade("young", 6_000.0, 3, 50.0));
    let mut out = feed(&mut c, "s", &events);
    // young's age (100 s) is under `terminated`: over once the clock passes 6100 + 1800. a has
    // been quiet for 2901 s by then, more than 1800 s but less than its age, 5000 s.
    out.extend(feed(&mut c, "s", &[tweet("z", 7_901.0, 1.0)]));
    assert_eq!(
        sizes(&out),
        vec![("young", 600, 3, 100.0), ("young", 1200, 3, 100.0)]
    );
    // So a retweet of a after a 4000 s lull still counts...
    let late = c.on_tweet("s", &retweet("a", 9_000.0, 1.0), &mut out);
    assert_eq!(late, Outcome::Recorded);
    // ... and a, now 9000 s old, is over once the clock passes 9000 + 9000.
    assert_eq!(c.config().quiet_limit(0.0, 9_000.0), 9_000.0);
    out.clear();
    out.extend(feed(&mut c, "s", &[retweet("z", 18_000.0, 1.0)]));
    assert!(sizes(&out).is_empty(), "{out:?}");
    out.extend(feed(&mut c, "s", &[retweet("z", 18_001.0, 1.0)]));
    assert_eq!(
        sizes(&out),
        vec![("a", 600, 102, 9_000.0), ("a", 1200, 102, 9_000.0)]
    );
}

#[test]
fn a_zero_age_ratio_keeps_the_fixed_quiet_limit() {
    // The cascade a above with ratio 0: over once it has been quiet for 1800 s.
    let mut c = Collector::new(config(3));
    let mut out = feed(&mut c, "s", &cascade("a", 0.0, 101, 50.0));
    out.extend(feed(&mut c, "s", &[tweet("z", 6_801.0, 1.0)]));
    assert_eq!(
        sizes(&out),
        vec![("a", 600, 101, 5_000.0), ("a", 1200, 101, 5_000.0)]
    );
    let late = c.on_tweet("s", &retweet("a", 9_000.0, 1.0), &mut out);
    assert_eq!(
        late,
        Outcome::Orphan,
        "a is over: its late retweet is not counted"
    );
    assert_eq!(c.config().quiet_limit(0.0, 5_000.0), 1_800.0);
}

#[test]
fn minimum_size_applies_per_window() {
    let mut c = Collector::new(config(10));
    // 8 events before 600 s, 14 before 1200 s.
    let mut events = cascade("a", 0.0, 8, 70.0);
    events.extend((0..6).map(|i| retweet("a", 700.0 + i as f64, 1.0)));
    events.extend(cascade("small", 10.0, 4, 1.0));
    let mut out = feed(&mut c, "s", &events);
    c.flush_all(&mut out);
    assert_eq!(series(&out), vec![("a", 1200, 14)]);
    assert_eq!(sizes(&out), vec![("a", 1200, 14, 705.0)]);
    assert_eq!(c.open_cascades(), 0);
}

#[test]
fn out_of_order_duplicate_orphan_and_early_retweets() {
    let mut c = Collector::new(config(1));
    let mut out = Vec::new();
    assert_eq!(
        c.on_tweet("s", &tweet("a", 100.0, 5.0), &mut out),
        Outcome::Started
    );
    assert_eq!(
        c.on_tweet("s", &retweet("a", 300.0, 1.0), &mut out),
        Outcome::Recorded
    );
    // Older than the clock but after the start: kept, in time order.
    assert_eq!(
        c.on_tweet("s", &retweet("a", 200.0, 2.0), &mut out),
        Outcome::Recorded
    );
    assert_eq!(
        c.on_tweet("s", &retweet("a", 300.0, 1.0), &mut out),
        Outcome::Duplicate
    );
    assert_eq!(
        c.on_tweet("s", &retweet("a", 300.0, 7.0), &mut out),
        Outcome::Recorded
    );
    assert_eq!(
        c.on_tweet("s", &tweet("a", 100.0, 5.0), &mut out),
        Outcome::Duplicate
    );
    assert_eq!(
        c.on_tweet("s", &retweet("a", 50.0, 1.0), &mut out),
        Outcome::BeforeStart
    );
    assert_eq!(
        c.on_tweet("s", &retweet("nobody", 310.0, 1.0), &mut out),
        Outcome::Orphan
    );
    // Window 600 closes at 700; a retweet dated 650 arriving after that is late for it.
    assert_eq!(
        c.on_tweet("s", &tweet("b", 750.0, 1.0), &mut out),
        Outcome::Started
    );
    assert_eq!(
        c.on_tweet("s", &retweet("a", 650.0, 3.0), &mut out),
        Outcome::RecordedLate
    );
    c.flush_all(&mut out);
    let Some(Emission::Series(s)) = out
        .iter()
        .find(|e| matches!(e, Emission::Series(s) if s.cid.0 == "a" && s.t_obs == 600))
    else {
        panic!("series of a missing: {out:?}")
    };
    assert_eq!(
        s.tweets,
        vec![(0.0, 5.0), (100.0, 2.0), (200.0, 1.0), (200.0, 7.0)]
    );
    let a_sizes: Vec<_> = sizes(&out).into_iter().filter(|s| s.0 == "a").collect();
    assert_eq!(a_sizes, vec![("a", 600, 5, 550.0), ("a", 1200, 5, 550.0)]);
}

#[test]
fn a_finished_cascade_is_not_restarted_by_a_late_copy() {
    let mut c = Collector::new(config(1));
    let mut out = feed(&mut c, "s", &cascade("a", 0.0, 3, 1.0));
    out.extend(feed(&mut c, "s", &[tweet("b", 5000.0, 1.0)]));
    assert_eq!(sizes(&out).len(), 2);
    let mut more = Vec::new();
    assert_eq!(
        c.on_tweet("s", &tweet("a", 0.0, 100.0), &mut more),
        Outcome::Duplicate
    );
    assert_eq!(
        c.on_tweet("s", &retweet("a", 5001.0, 1.0), &mut more),
        Outcome::Orphan
    );
    assert!(more.is_empty());
}

#[test]
fn the_memory_of_finished_cascades_is_rebuilt_from_their_original_tweets() {
    // Before a restart: "a" (original at position 3) and "b" (position 9) finish; "c" is open.
    let mut before = Collector::new(config(1));
    let mut out = Vec::new();
    for (position, t) in [(3, tweet("a", 0.0, 1.0)), (9, tweet("b", 10.0, 1.0))] {
        before.on_tweet_at("s", &t, position, &mut out);
    }
    before.on_tweet_at("s", &tweet("c", 5000.0, 1.0), 20, &mut out);
    assert_eq!(before.oldest_remembered_position("s"), Some(3));
    assert_eq!(before.oldest_open_position("s"), Some(20));

    // After it: the originals read again from position 3 up to the oldest open one.
    let mut after = Collector::new(config(1));
    assert_eq!(after.oldest_remembered_position("s"), None);
    assert!(after.remember_finished("s", &"a".into(), 3));
    assert!(after.remember_finished("s", &"b".into(), 9));
    assert!(
        !after.remember_finished("s", &"b".into(), 9),
        "already remembered"
    );
    assert_eq!(after.oldest_remembered_position("s"), Some(3));
    let mut more = Vec::new();
    for id in ["a", "b"] {
        assert_eq!(
            after.on_tweet("s", &tweet(id, 6000.0, 1.0), &mut more),
            Outcome::Duplicate,
            "a repeated original of {id}, finished before the restart"
        );
    }
    assert_eq!(after.open_cascades(), 0);
    assert!(more.is_empty());
    // An open cascade is not remembered as finished.
    after.on_tweet_at("s", &tweet("d", 6000.0, 1.0), 30, &mut more);
    assert!(!after.remember_finished("s", &"d".into(), 30));
}

#[test]
fn the_rebuilt_memory_keeps_its_limit_and_forgets_the_oldest() {
    let mut c = Collector::new(CollectorConfig {
        remembered_finished: 2,
        ..config(1)
    });
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        assert!(c.remember_finished("s", &id.into(), i as u64));
    }
    assert_eq!(c.oldest_remembered_position("s"), Some(1), "a is forgotten");
    let mut out = Vec::new();
    assert_eq!(
        c.on_tweet("s", &tweet("a", 0.0, 1.0), &mut out),
        Outcome::Started
    );
    assert_eq!(
        c.on_tweet("s", &tweet("b", 0.0, 1.0), &mut out),
        Outcome::Duplicate
    );
    let mut none = Collector::new(CollectorConfig {
        remembered_finished: 0,
        ..config(1)
    });
    assert!(
        !none.remember_finished("s", &"a".into(), 0),
        "nothing is remembered"
    );
}

#[test]
fn sources_have_independent_clocks() {
    let mut c = Collector::new(config(1));
    let mut out = feed(&mut c, "left", &cascade("a", 0.0, 3, 1.0));
    // The right source is far ahead in its own time: nothing of the left source moves.
    out.extend(feed(&mut c, "right", &cascade("b", 1_000_000.0, 3, 1.0)));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(c.sources(), 2);
    out.extend(feed(&mut c, "left", &[tweet("c", 700.0, 1.0)]));
    assert_eq!(series(&out), vec![("a", 600, 3)]);
}

#[test]
fn end_of_source_flushes_with_everything_observed() {
    let mut c = Collector::new(config(2));
    let mut out = feed(&mut c, "s", &cascade("a", 0.0, 5, 100.0));
    out.extend(feed(&mut c, "t", &cascade("b", 0.0, 5, 100.0)));
    c.on_end_of_source("s", 450.0, &mut out);
    assert_eq!(series(&out), vec![("a", 600, 5), ("a", 1200, 5)]);
    assert_eq!(
        sizes(&out),
        vec![("a", 600, 5, 400.0), ("a", 1200, 5, 400.0)]
    );
    assert_eq!(c.open_cascades(), 1, "source t is untouched");
    c.on_end_of_source("unknown", 1.0, &mut out);
    c.flush_all(&mut out);
    assert_eq!(c.open_cascades(), 0);
    assert_eq!(c.sources(), 0);
    assert_eq!(series(&out).len(), 4);
}

#[test]
fn windows_longer_than_the_cascade_are_emitted_at_its_end() {
    let mut c = Collector::new(CollectorConfig {
        windows: vec![600, 7200],
        ..config(2)
    });
    let mut out = feed(&mut c, "s", &cascade("a", 0.0, 4, 10.0));
    out.extend(feed(&mut c, "s", &[tweet("later", 2000.0, 1.0)]));
    assert_eq!(series(&out), vec![("a", 600, 4), ("a", 7200, 4)]);
    assert_eq!(sizes(&out), vec![("a", 600, 4, 30.0), ("a", 7200, 4, 30.0)]);
}

#[test]
fn memory_is_bounded_by_open_cascades() {
    let mut c = Collector::new(config(1));
    let mut out = Vec::new();
    for i in 0..1000 {
        let start = i as f64 * 100.0;
        c.on_tweet("s", &tweet(&format!("c{i}"), start, 1.0), &mut out);
        c.on_tweet("s", &retweet(&format!("c{i}"), start + 1.0, 1.0), &mut out);
    }
    // Cascades idle for more than 1800 s are gone: at most ~19 remain open at any time.
    assert!(c.open_cascades() <= 20, "{} open", c.open_cascades());
    assert_eq!(sizes(&out).len(), 2 * (1000 - c.open_cascades()));
}

#[test]
fn replaying_from_the_oldest_open_position_rebuilds_the_same_future() {
    // A stream of overlapping cascades on one source, positions = indices.
    let mut events = Vec::new();
    for k in 0..12 {
        let start = k as f64 * 700.0;
        events.extend(cascade(&format!("c{k}"), start, 15, 60.0));
    }
    events.sort_by(|a, b| a.t.total_cmp(&b.t));
    let run = |from: usize, cut: usize| {
        let mut c = Collector::new(config(5));
        let mut out = Vec::new();
        for (i, e) in events.iter().enumerate().skip(from) {
            let mut step = Vec::new();
            c.on_tweet_at("s", e, i as u64, &mut step);
            if i >= cut {
                out.extend(step);
            }
        }
        c.on_end_of_source("s", 1e9, &mut out);
        (c, out)
    };
    let (_, undisturbed) = run(0, 0);
    for crash in [40, 77, 120] {
        // State just after `crash` events: where would a restart resume?
        let mut c = Collector::new(config(5));
        let mut before = Vec::new();
        for (i, e) in events.iter().enumerate().take(crash) {
            c.on_tweet_at("s", e, i as u64, &mut before);
        }
        let resume = c.oldest_open_position("s").map_or(crash, |p| p as usize);
        assert!(resume <= crash);
        // Replaying from there, emitting only what events at or after the crash cause.
        let (_, after) = run(resume, crash);
        before.extend(after);
        assert_eq!(
            before, undisturbed,
            "crash after {crash} events, resume at {resume}"
        );
    }
    let mut c = Collector::new(config(5));
    assert_eq!(c.oldest_open_position("s"), None);
    c.on_tweet_at("s", &tweet("x", 0.0, 1.0), 7, &mut Vec::new());
    c.on_tweet_at("s", &tweet("y", 1.0, 1.0), 9, &mut Vec::new());
    assert_eq!(c.oldest_open_position("s"), Some(7));
    c.forget_source("s");
    assert_eq!((c.open_cascades(), c.oldest_open_position("s")), (0, None));
}

#[test]
fn replaying_out_of_order_event_times_needs_the_clock_put_back() {
    // Event times out of order: a retweet from the future (of a cascade this collector never saw)
    // moves the clock to 1000 before "x" starts at 300, so x's 600 s window is due at once.
    let events = vec![
        retweet("unknown", 1000.0, 1.0),
        tweet("x", 300.0, 50.0),
        retweet("x", 310.0, 5.0),
        tweet("y", 1005.0, 20.0),
        retweet("x", 1100.0, 5.0),
        retweet("y", 1010.0, 5.0),
        tweet("z", 1200.0, 10.0),
        retweet("z", 1900.0, 3.0),
        retweet("y", 2500.0, 5.0),
        retweet("z", 4000.0, 3.0),
    ];
    let run = |from: usize, cut: usize, clock: Option<f64>| {
        let mut c = Collector::new(config(1));
        let mut out = Vec::new();
        for (i, e) in events.iter().enumerate().skip(from) {
            if i == cut {
                if let Some(t) = clock {
                    // What this makes due was emitted before the crash.
                    c.advance_clock("s", t, &mut Vec::new());
                }
            }
            let mut step = Vec::new();
            c.on_tweet_at("s", e, i as u64, &mut step);
            if i >= cut {
                out.extend(step);
            }
        }
        c.on_end_of_source("s", 1e9, &mut out);
        out
    };
    let undisturbed = run(0, 0, None);
    assert_eq!(series(&undisturbed)[0], ("x", 600, 1));
    let mut diverged_without_clock = Vec::new();
    for crash in 1..events.len() {
        let mut c = Collector::new(config(1));
        let mut before = Vec::new();
        for (i, e) in events.iter().enumerate().take(crash) {
            c.on_tweet_at("s", e, i as u64, &mut before);
        }
        let resume = c.oldest_open_position("s").map_or(crash, |p| p as usize);
        let mut restored = before.clone();
        restored.extend(run(resume, crash, c.clock("s")));
        assert_eq!(
            restored, undisturbed,
            "crash after {crash}, resume at {resume}"
        );
        let mut unrestored = before;
        unrestored.extend(run(resume, crash, None));
        if unrestored != undisturbed {
            diverged_without_clock.push(crash);
        }
    }
    // Without the clock put back, x's window comes due again after the crash: emitted twice.
    assert!(
        diverged_without_clock.contains(&2),
        "diverged without the clock: {diverged_without_clock:?}"
    );
}

#[test]
fn advancing_the_clock_emits_what_is_due_and_never_goes_back() {
    let mut c = Collector::new(config(1));
    let mut out = feed(&mut c, "s", &cascade("a", 0.0, 3, 10.0));
    assert!(out.is_empty());
    c.advance_clock("s", 700.0, &mut out);
    assert_eq!(series(&out), vec![("a", 600, 3)]);
    c.advance_clock("s", 100.0, &mut out);
    assert_eq!(c.clock("s"), Some(700.0));
    c.advance_clock("s", 700.0 + 1800.0 + 21.0, &mut out);
    assert_eq!(series(&out), vec![("a", 600, 3), ("a", 1200, 3)]);
    assert_eq!(sizes(&out), vec![("a", 600, 3, 20.0), ("a", 1200, 3, 20.0)]);
    assert_eq!(c.clock("new"), None);
    c.advance_clock("new", 5.0, &mut out);
    assert_eq!(c.clock("new"), Some(5.0));
}

#[test]
fn cascades_end_in_the_order_of_their_last_retweets_not_of_their_starts() {
    let mut c = Collector::new(config(1));
    // Quiet limit 1800 s: `a` ends after 500 + 1800, `b` after 100 + 1800, `c` after 300 + 1800.
    let events = [
        tweet("a", 0.0, 1.0),
        tweet("b", 100.0, 1.0),
        tweet("c", 200.0, 1.0),
        retweet("c", 300.0, 1.0),
        retweet("a", 500.0, 1.0),
    ];
    feed(&mut c, "s", &events);
    // At 2,000 s only `b` is over: `a` and `c` started earlier but were retweeted since.
    let out = feed(&mut c, "s", &[tweet("d", 2_000.0, 1.0)]);
    let ended = |out: &[Emission]| {
        let mut ids: Vec<String> = sizes(out).iter().map(|s| s.0.to_owned()).collect();
        ids.dedup();
        ids
    };
    assert_eq!(ended(&out), ["b"]);
    assert_eq!(c.open_cascades(), 3);
    // One clock jump past both: `c` (2,100) ends before `a` (2,300), whatever their starts.
    let out = feed(&mut c, "s", &[tweet("e", 2_200.0, 1.0)]);
    assert_eq!(ended(&out), ["c"]);
    let out = feed(&mut c, "s", &[tweet("f", 9_000.0, 1.0)]);
    assert_eq!(ended(&out), ["a", "d", "e"]);
    // Their sizes count every retweet.
    assert!(sizes(&out)
        .iter()
        .any(|s| s.0 == "a" && s.2 == 2 && s.3 == 500.0));

    // The same when one jump of the clock ends both: `b` (1,900) before `a` (2,300).
    let mut c = Collector::new(config(1));
    feed(&mut c, "s", &[tweet("a", 0.0, 1.0), tweet("b", 100.0, 1.0)]);
    feed(&mut c, "s", &[retweet("a", 500.0, 1.0)]);
    let out = feed(&mut c, "s", &[tweet("z", 9_000.0, 1.0)]);
    assert_eq!(ended(&out), ["b", "a"]);
}
