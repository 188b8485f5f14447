use super::*;

#[test]
fn tweet_round_trip_and_integer_ids() {
    let raw =
        br#"{"type":"retweet","msg":"hi","t":12.5,"m":300,"tweet_id":42,"info":"x","extra":1}"#;
    let SourceRecord::Tweet(t) = SourceRecord::parse(raw).unwrap() else {
        panic!("expected a tweet")
    };
    assert_eq!(t.kind, TweetKind::Retweet);
    assert_eq!(t.tweet_id, CascadeId::from("42"));
    assert_eq!(t.m, 300.0);
    let again = SourceRecord::parse(&SourceRecord::Tweet(t.clone()).to_payload()).unwrap();
    assert_eq!(again, SourceRecord::Tweet(t));
}

#[test]
fn tweets_topic_refuses_bad_input_with_a_reason() {
    let cases: [(&[u8], &str); 10] = [
        (b"not json", "expected"),
        (br#"{"type":"tweet","t":1,"m":2}"#, "tweet_id"),
        (
            br#"{"type":"retweet","t":1,"tweet_id":1}"#,
            "missing field `m`",
        ),
        (br#"{"type":"end"}"#, "missing field `t`"),
        (
            br#"{"type":"tweet","t":"1","m":2,"tweet_id":1}"#,
            "invalid type",
        ),
        (
            br#"{"type":"like","t":1,"m":2,"tweet_id":1}"#,
            "unknown `type`",
        ),
        (
            br#"{"type":"tweet","t":-1,"m":2,"tweet_id":1}"#,
            "`t` must be >= 0",
        ),
        (br#"{"type":"tweet","t":1,"m":2,"tweet_id":""}"#, "empty"),
        (
            br#"{"type":"tweet","t":1,"m":2,"tweet_id":-3}"#,
            "expected a cascade id",
        ),
        (
            br#"{"type":"tweet","t":1,"m":2,"tweet_id":[1]}"#,
            "expected a cascade id",
        ),
    ];
    for (payload, expected) in cases {
        let err = SourceRecord::parse(payload).unwrap_err();
        assert!(
            err.reason.contains(expected),
            "{:?}: {} lacks {expected:?}",
            String::from_utf8_lossy(payload),
            err.reason
        );
    }
}

#[test]
fn a_tweet_is_read_borrowing_its_texts_unless_they_must_be_made() {
    let plain = br#"{"type":"retweet","msg":"cascade 7","t":1,"m":2,"tweet_id":"7","info":"i"}"#;
    let SourceRecordRef::Tweet(t) = SourceRecordRef::parse(plain).unwrap() else {
        panic!("expected a tweet")
    };
    for (field, text) in [
        ("msg", &t.msg),
        ("tweet_id", &t.tweet_id),
        ("info", &t.info),
    ] {
        assert!(matches!(text, Cow::Borrowed(_)), "{field} copied: {text:?}");
    }
    // An escaped text and an integer id cannot be borrowed: they are made, with the same value
    // the owned parse gives.
    let escaped = br#"{"type":"tweet","msg":"a\"b","t":1,"m":2,"tweet_id":8,"info":"\u00e9"}"#;
    let SourceRecordRef::Tweet(t) = SourceRecordRef::parse(escaped).unwrap() else {
        panic!("expected a tweet")
    };
    assert_eq!(
        (t.msg.as_ref(), t.tweet_id.as_ref(), t.info.as_ref()),
        ("a\"b", "8", "é")
    );
    assert!(matches!(t.tweet_id, Cow::Owned(_)));
    let SourceRecord::Tweet(owned) = SourceRecord::parse(escaped).unwrap() else {
        panic!("expected a tweet")
    };
    assert_eq!(t.into_owned(), owned);
}

#[test]
fn a_borrowed_record_writes_the_payload_of_the_owned_one() {
    let tweet = Tweet {
        kind: TweetKind::Retweet,
        msg: "cascade \"12\"".into(),
        t: 500_000_000.371_9,
        m: 1_234.5,
        tweet_id: CascadeId::from("12"),
        info: "origin".into(),
    };
    let end = EndOfSource {
        kind: EndTag::End,
        t: 77.25,
    };
    for record in [SourceRecord::Tweet(tweet), SourceRecord::End(end)] {
        let mut written = b"before".to_vec();
        record.as_ref().write_payload(&mut written);
        assert_eq!(&written[..6], b"before", "appended, not replaced");
        // The owned types' own serialization: what the payload was before the borrowed form.
        let owned = match &record {
            SourceRecord::Tweet(t) => to_payload(t),
            SourceRecord::End(e) => to_payload(e),
        };
        assert_eq!(&written[6..], owned.as_slice());
        assert_eq!(record.to_payload(), owned);
        assert_eq!(SourceRecord::parse(&written[6..]).unwrap(), record);
    }
}

#[test]
fn a_map_of_cascade_ids_is_searched_with_a_borrowed_id() {
    let ids: std::collections::HashMap<CascadeId, u32> = [(CascadeId::from("42"), 1)].into();
    assert_eq!(ids.get("42"), Some(&1));
    assert_eq!(ids.get("4"), None);
}

#[test]
fn end_of_source_parses() {
    let r = SourceRecord::parse(br#"{"type":"end","t":99}"#).unwrap();
    assert!(matches!(r, SourceRecord::End(EndOfSource { t, .. }) if t == 99.0));
}

#[test]
fn series_matches_the_classic_layout() {
    let s = CascadeSeries::new("tw1".into(), "m".into(), 600, vec![(0.0, 10.0), (5.0, 3.0)]);
    let json: serde_json::Value = serde_json::from_slice(&to_payload(&s)).unwrap();
    assert_eq!(json["type"], "serie");
    assert_eq!(json["T_obs"], 600);
    assert_eq!(json["tweets"], serde_json::json!([[0.0, 10.0], [5.0, 3.0]]));
    assert_eq!(CascadeSeries::parse(&to_payload(&s)).unwrap(), s);
}

#[test]
fn series_validation() {
    let unsorted = br#"{"type":"serie","cid":"a","T_obs":600,"tweets":[[5,1],[1,1]]}"#;
    assert!(CascadeSeries::parse(unsorted)
        .unwrap_err()
        .reason
        .contains("sorted"));
    let empty = br#"{"type":"serie","cid":"a","T_obs":600,"tweets":[]}"#;
    assert!(CascadeSeries::parse(empty)
        .unwrap_err()
        .reason
        .contains("at least one"));
    let zero = br#"{"type":"serie","cid":"a","T_obs":0,"tweets":[[0,1]]}"#;
    assert!(CascadeSeries::parse(zero)
        .unwrap_err()
        .reason
        .contains("T_obs"));
    let wrong_tag = br#"{"type":"series","cid":"a","T_obs":6,"tweets":[[0,1]]}"#;
    assert!(CascadeSeries::parse(wrong_tag).is_err());
}

#[test]
fn properties_take_the_window_from_field_or_key() {
    let size = br#"{"type":"size","cid":"c","n_tot":127,"t_end":4329}"#;
    let (w, p) = CascadeProperty::parse(Some(b"1200"), size).unwrap();
    assert_eq!(w, 1200);
    assert!(matches!(
        p,
        CascadeProperty::Size(CascadeSize {
            n_tot: 127,
            t_obs: Some(1200),
            ..
        })
    ));
    assert!(CascadeProperty::parse(None, size)
        .unwrap_err()
        .reason
        .contains("window"));

    let params = br#"{"type":"parameters","cid":"c","msg":"","n_obs":32,"n_supp":120,"params":[0.01,0.001],"n_star":0.4,"G1":12,"T_obs":600}"#;
    let (w, p) = CascadeProperty::parse(Some(b"not a number"), params).unwrap();
    assert_eq!(w, 600);
    assert_eq!(p.cid().0, "c");
    let bad = br#"{"type":"parameters","cid":"c","n_obs":32,"n_supp":1,"params":[-1,0.001],"n_star":0.4,"G1":12}"#;
    assert!(CascadeProperty::parse(Some(b"600"), bad)
        .unwrap_err()
        .reason
        .contains("params[0]"));
    let power = br#"{"type":"parameters","cid":"c","n_obs":32,"n_supp":1,"params":[0.1,0.5,10,0.4],"kernel":"power-law","n_star":0.4,"G1":12,"T_obs":600}"#;
    let (_, p) = CascadeProperty::parse(None, power).unwrap();
    let CascadeProperty::Parameters(p) = p else {
        panic!()
    };
    assert_eq!((p.kernel, p.time_feature()), (KernelKind::PowerLaw, 0.4));
    let short = br#"{"type":"parameters","cid":"c","n_obs":32,"n_supp":1,"params":[0.1,0.5],"kernel":"power-law","n_star":0.4,"G1":12,"T_obs":600}"#;
    assert!(CascadeProperty::parse(None, short)
        .unwrap_err()
        .reason
        .contains("4 numbers"));
    let unknown = br#"{"type":"guess","cid":"c"}"#;
    assert!(CascadeProperty::parse(Some(b"600"), unknown).is_err());
}

#[test]
fn the_series_shape_is_an_optional_pair_of_extra_fields() {
    // Without the fields (the classic format, older estimators): no shape.
    let classic = br#"{"type":"parameters","cid":"c","n_obs":32,"n_supp":1,"params":[0.01,0.001],"n_star":0.4,"G1":12,"T_obs":600}"#;
    let (_, p) = CascadeProperty::parse(None, classic).unwrap();
    let CascadeProperty::Parameters(p) = p else {
        panic!()
    };
    assert_eq!(p.shape, None);
    // Written flat beside the other fields, and only when known.
    let json = serde_json::to_value(&p).unwrap();
    assert!(json.get("late_share").is_none(), "{json}");
    let shape = SeriesShape {
        late_share: 0.25,
        sqrt_followers: 12.5,
    };
    let shaped = CascadeParameters {
        shape: Some(shape),
        ..p
    };
    let json = serde_json::to_value(&shaped).unwrap();
    assert_eq!(
        (json["late_share"].as_f64(), json["sqrt_followers"].as_f64()),
        (Some(0.25), Some(12.5))
    );
    let payload = serde_json::to_vec(&CascadeProperty::Parameters(shaped.clone())).unwrap();
    let (_, back) = CascadeProperty::parse(None, &payload).unwrap();
    assert_eq!(back, CascadeProperty::Parameters(shaped));
    // Out of range: refused with the field's name.
    let bad_share = br#"{"type":"parameters","cid":"c","n_obs":32,"n_supp":1,"params":[0.01,0.001],"n_star":0.4,"G1":12,"T_obs":600,"late_share":1.5,"sqrt_followers":3}"#;
    assert!(CascadeProperty::parse(None, bad_share)
        .unwrap_err()
        .reason
        .contains("late_share"));
    let bad_reach = br#"{"type":"sample","cid":"c","T_obs":600,"X":[1,0.5,2],"W":1,"late_share":0.5,"sqrt_followers":0.5}"#;
    assert!(Sample::parse(None, bad_reach)
        .unwrap_err()
        .reason
        .contains("sqrt_followers"));
    // Samples: the classic sample has none; one with sizes and shape round-trips.
    let classic = Sample::parse(
        None,
        br#"{"type":"sample","cid":"c","T_obs":600,"X":[1,0.5,2],"W":1}"#,
    )
    .unwrap();
    assert_eq!(classic.shape, None);
    let full = classic.with_sizes(10, 40).with_shape(Some(shape));
    assert_eq!(Sample::parse(None, &to_payload(&full)).unwrap(), full);
}

#[test]
fn samples_stats_alerts_logs() {
    let s = Sample::new("c".into(), 600, [0.001, 0.5, 10.0], 1.2);
    let back = Sample::parse(Some(b"600"), &to_payload(&s)).unwrap();
    assert_eq!(back, s);
    let json: serde_json::Value = serde_json::from_slice(&to_payload(&s)).unwrap();
    assert_eq!(json["X"], serde_json::json!([0.001, 0.5, 10.0]));
    assert!(Sample::parse(
        Some(b"600"),
        br#"{"type":"sample","cid":"c","X":[1,2],"W":1}"#
    )
    .is_err());

    let stat = br#"{"type":"stat","cid":"c","T_obs":600,"ARE":0.093}"#;
    assert_eq!(Stat::parse(stat).unwrap().are, 0.093);
    assert!(Stat::parse(br#"{"type":"stat","cid":"c","T_obs":600,"ARE":-1}"#).is_err());

    let alert = br#"{"type":"alert","cid":"c","msg":"m","T_obs":600,"n_tot":158}"#;
    assert_eq!(Alert::parse(alert).unwrap().n_tot, 158);
    // Prediction intervals are extra fields: absent in the classic format, kept when present,
    // refused when out of order; written only when known.
    assert_eq!(Alert::parse(alert).unwrap().n_low, None);
    let with = br#"{"type":"alert","cid":"c","T_obs":600,"n_tot":158,"n_low":90.5,"n_high":400}"#;
    let a = Alert::parse(with).unwrap();
    assert_eq!((a.n_low, a.n_high), (Some(90.5), Some(400.0)));
    let bad = br#"{"type":"alert","cid":"c","T_obs":600,"n_tot":158,"n_low":500,"n_high":400}"#;
    assert!(Alert::parse(bad).unwrap_err().to_string().contains("n_low"));
    let stat = br#"{"type":"stat","cid":"c","T_obs":600,"ARE":0.1,"n_low":1,"n_high":"x"}"#;
    assert!(Stat::parse(stat).is_err());
    let stat = br#"{"type":"stat","cid":"c","T_obs":600,"ARE":0.1,"n_low":10,"n_high":20}"#;
    assert_eq!(Stat::parse(stat).unwrap().n_high, Some(20.0));
    let plain = Alert::parse(alert).unwrap();
    let json = serde_json::to_string(&plain).unwrap();
    assert!(!json.contains("n_low"), "{json}");

    let log = br#"{"t":1.5,"source":"collector","level":"INFO","message":"hello"}"#;
    assert_eq!(LogRecord::parse(log).unwrap().source, "collector");
    assert!(LogRecord::parse(br#"{"t":1.5,"source":"x"}"#).is_err());
}

#[test]
fn partitions_are_stable_and_spread() {
    assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    let mut counts = [0usize; 4];
    for i in 0..4000 {
        counts[partition_for(&format!("cascade-{i}"), 4) as usize] += 1;
    }
    for c in counts {
        assert!((800..1200).contains(&c), "uneven spread {counts:?}");
    }
    assert_eq!(topics::dead_letter("tweets"), "tweets.dlq");
}
