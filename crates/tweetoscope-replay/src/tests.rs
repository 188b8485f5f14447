use super::synthetic::{SyntheticCascades, SyntheticConfig};
use super::*;
use std::collections::HashMap;

fn small(cascades: usize, seed: u64) -> SyntheticConfig {
    SyntheticConfig {
        cascades,
        target_sizes: vec![20, 50, 100],
        seed,
        ..SyntheticConfig::default()
    }
}

fn replay(cascades: usize, seed: u64, sources: usize, live: usize) -> Vec<ReplayEvent> {
    let config = ReplayConfig {
        sources,
        max_live_per_source: live,
        mean_start_delay: 60.0,
        seed,
        first_tweet_id: 100,
    };
    Replay::new(config, SyntheticCascades::new(small(cascades, seed))).collect()
}

#[test]
fn every_cascade_is_replayed_whole_with_monotone_source_clocks() {
    let events = replay(40, 3, 3, 5);
    let expected: usize = SyntheticCascades::new(small(40, 3))
        .map(|c| c.events.len())
        .sum();
    let tweets = events
        .iter()
        .filter(|e| matches!(e.record, SourceRecord::Tweet(_)))
        .count();
    assert_eq!(tweets, expected);
    let mut last_t: HashMap<usize, f64> = HashMap::new();
    let mut ended = vec![false; 3];
    let mut starts = 0;
    let mut previous_elapsed = 0.0;
    for e in &events {
        assert!(e.elapsed >= previous_elapsed, "replay goes forward in time");
        previous_elapsed = e.elapsed;
        assert!(!ended[e.source], "nothing after a source's end marker");
        match &e.record {
            SourceRecord::Tweet(t) => {
                let last = last_t.entry(e.source).or_insert(t.t);
                assert!(t.t >= *last, "source clock went back");
                *last = t.t;
                if t.kind == TweetKind::Tweet {
                    starts += 1;
                }
            }
            SourceRecord::End(end) => {
                assert_eq!(end.t, last_t[&e.source]);
                ended[e.source] = true;
            }
        }
    }
    assert_eq!(starts, 40);
    assert_eq!(ended, vec![true; 3]);
}

#[test]
fn same_seed_same_replay_other_seed_other_replay() {
    assert_eq!(replay(10, 5, 2, 3), replay(10, 5, 2, 3));
    assert_ne!(replay(10, 5, 2, 3), replay(10, 6, 2, 3));
}

#[test]
fn at_most_k_live_cascades_per_source() {
    let events = replay(60, 9, 2, 2);
    // Live cascades: from their first tweet to their last tweet.
    let mut first_last: HashMap<(usize, String), (f64, f64)> = HashMap::new();
    for e in &events {
        if let SourceRecord::Tweet(t) = &e.record {
            let entry = first_last
                .entry((e.source, t.tweet_id.0.clone()))
                .or_insert((e.elapsed, e.elapsed));
            entry.1 = e.elapsed;
        }
    }
    for source in 0..2 {
        let spans: Vec<(f64, f64)> = first_last
            .iter()
            .filter(|((s, _), _)| *s == source)
            .map(|(_, &span)| span)
            .collect();
        for &(start, _) in &spans {
            let live = spans
                .iter()
                .filter(|&&(s, e)| s <= start && start < e)
                .count();
            assert!(live <= 2, "{live} cascades live at once on source {source}");
        }
    }
}

#[test]
fn cascade_ids_are_unique_across_sources() {
    let events = replay(30, 1, 4, 10);
    let mut owner: HashMap<String, usize> = HashMap::new();
    for e in &events {
        if let SourceRecord::Tweet(t) = &e.record {
            assert_eq!(
                *owner.entry(t.tweet_id.0.clone()).or_insert(e.source),
                e.source
            );
        }
    }
    assert_eq!(owner.len(), 30);
    assert!(owner
        .keys()
        .all(|id| (100..130).contains(&id.parse::<u64>().unwrap())));
}

#[test]
fn synthetic_sizes_follow_their_targets_in_expectation() {
    let mut big = Vec::new();
    let mut small_sizes = Vec::new();
    for (target, out) in [(400usize, &mut big), (30usize, &mut small_sizes)] {
        let mut source = SyntheticCascades::new(SyntheticConfig {
            cascades: 300,
            target_sizes: vec![target],
            seed: 11,
            ..SyntheticConfig::default()
        });
        while let Some(c) = source.next_with_truth() {
            assert!(c.events.windows(2).all(|w| w[0].0 <= w[1].0));
            assert_eq!(c.events[0].0, 0.0);
            assert!((c.n_star - c.p * 35.0).abs() < 1e-12);
            out.push(c.events.len() as f64);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (m_big, m_small) = (mean(&big), mean(&small_sizes));
    assert!(
        (250.0..600.0).contains(&m_big),
        "mean size {m_big} for target 400"
    );
    assert!(
        (18.0..45.0).contains(&m_small),
        "mean size {m_small} for target 30"
    );
}

#[test]
fn news_files_load_and_replay() {
    let dir = std::env::temp_dir().join(format!("tweetoscope-news-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let index = dir.join("index.csv");
    let data = dir.join("data.csv");
    std::fs::write(&index, "start_ind,end_ind\n1,3\n4,5\n").unwrap();
    std::fs::write(&data, "time,magnitude\n10,100\n12,5\n11,7\n0,3\n4,2\n").unwrap();
    let set = news::NewsDataset::load(&index, &data).unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(
        set.cascade(0).events,
        vec![(0.0, 100.0), (1.0, 7.0), (2.0, 5.0)]
    );
    assert_eq!(news::index_sizes(&index).unwrap(), vec![3, 2]);
    let events: Vec<_> = Replay::new(ReplayConfig::default(), set.cascades()).collect();
    assert_eq!(
        events.len(),
        5 + 3,
        "5 tweets and one end marker per source"
    );

    std::fs::write(&index, "start_ind,end_ind\n1,3\n4,9\n").unwrap();
    let err = news::NewsDataset::load(&index, &data)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cascade 2 ends at row 9") && err.contains("only 5"),
        "{err}"
    );
    std::fs::write(&data, "1,2\n3,oops\n").unwrap();
    let err = news::NewsDataset::load(&index, &data)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("data.csv:2") && err.contains("magnitude"),
        "{err}"
    );
    std::fs::write(&index, "1,2,3\n").unwrap();
    let err = news::read_index(&index).unwrap_err().to_string();
    assert!(
        err.contains("index.csv:1") && err.contains("2 columns"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_real_news_index_gives_the_documented_sizes() {
    let path = std::path::Path::new(&manifest_dir()).join("../../data/news-index.csv");
    let sizes = news::index_sizes(&path).unwrap();
    assert_eq!(sizes.len(), 20_093);
    assert_eq!(sizes.iter().min(), Some(&50));
    assert_eq!(sizes.iter().max(), Some(&35_999));
}
