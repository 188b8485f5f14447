//! The fast path of [`SourceRecordRef::parse`](crate::SourceRecordRef::parse): a `tweets` payload
//! in the exact form [`SourceRecordRef::write_payload`](crate::SourceRecordRef::write_payload)
//! gives a tweet (the generator's, every replay's) is read by a scan for its fixed keys instead of
//! serde's field matching. Anything else, valid or not, is left to serde: a payload is taken here
//! only if serde would read the same tweet from it.

use std::borrow::Cow;

use crate::{non_negative, TweetKind, TweetRef};

/// The tweet of `payload` if it is written exactly as this crate writes one: the fields in the
/// order of [`TweetRef`], no whitespace, texts without escapes or control characters, a textual
/// and non-empty `tweet_id`, finite and non-negative `t` and `m`, nothing after the object.
/// `None` otherwise (and for any payload serde would refuse).
pub(crate) fn read(payload: &[u8]) -> Option<TweetRef<'_>> {
    let mut rest = Scan(payload);
    rest.expect(b"{\"type\":\"")?;
    let kind = match rest.text()? {
        "tweet" => TweetKind::Tweet,
        "retweet" => TweetKind::Retweet,
        _ => return None,
    };
    rest.expect(b",\"msg\":\"")?;
    let msg = rest.text()?;
    rest.expect(b",\"t\":")?;
    let t = rest.number()?;
    rest.expect(b",\"m\":")?;
    let m = rest.number()?;
    rest.expect(b",\"tweet_id\":\"")?;
    let tweet_id = rest.text()?;
    rest.expect(b",\"info\":\"")?;
    let info = rest.text()?;
    rest.expect(b"}")?;
    if !rest.0.is_empty() || tweet_id.is_empty() {
        return None;
    }
    // The checks of the serde path: a time or magnitude it refuses is left to it.
    non_negative("t", t).ok()?;
    non_negative("m", m).ok()?;
    Some(TweetRef {
        kind,
        msg: Cow::Borrowed(msg),
        t,
        m,
        tweet_id: Cow::Borrowed(tweet_id),
        info: Cow::Borrowed(info),
    })
}

/// What is left of the payload.
struct Scan<'a>(&'a [u8]);

impl<'a> Scan<'a> {
    /// Consumes `prefix`.
    fn expect(&mut self, prefix: &[u8]) -> Option<()> {
        self.0 = self.0.strip_prefix(prefix)?;
        Some(())
    }

    /// Consumes a string's content and its closing quote (the opening one is part of the
    /// expected prefix): UTF-8 without escapes or control characters, which JSON needs escaped.
    fn text(&mut self) -> Option<&'a str> {
        let end = self
            .0
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if self.0[end] != b'"' {
            return None;
        }
        let text = std::str::from_utf8(&self.0[..end]).ok()?;
        self.0 = &self.0[end + 1..];
        Some(text)
    }

    /// Consumes a JSON number (up to the next `,` or `}`), read as the nearest `f64`, as serde
    /// reads it.
    fn number(&mut self) -> Option<f64> {
        let end = self.0.iter().position(|&b| b == b',' || b == b'}')?;
        let digits = &self.0[..end];
        if !is_json_number(digits) {
            return None;
        }
        let value = std::str::from_utf8(digits).ok()?.parse::<f64>().ok()?;
        self.0 = &self.0[end..];
        Some(value)
    }
}

/// Whether `s` is a number in JSON's grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
/// (Rust's float parser also takes `inf`, `+1`, `1.` or `.5`, which JSON does not).
fn is_json_number(s: &[u8]) -> bool {
    let digits_from = |mut i: usize| {
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = usize::from(s.first() == Some(&b'-'));
    match s.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits_from(i + 1),
        _ => return false,
    }
    if s.get(i) == Some(&b'.') {
        let after = digits_from(i + 1);
        if after == i + 1 {
            return false;
        }
        i = after;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let after = digits_from(i);
        if after == i {
            return false;
        }
        i = after;
    }
    i == s.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SourceRecordRef;

    /// The tweet serde reads from `payload`, if any.
    fn by_serde(payload: &[u8]) -> Option<TweetRef<'_>> {
        match SourceRecordRef::parse_with_serde(payload) {
            Ok(SourceRecordRef::Tweet(t)) => Some(t),
            _ => None,
        }
    }

    #[test]
    fn json_numbers_are_told_from_what_rust_alone_would_parse() {
        for good in [
            "0",
            "-0",
            "12",
            "12.5",
            "0.001",
            "1e9",
            "1E+9",
            "2.5e-3",
            "-7.25",
            "1.7976931348623157e308",
        ] {
            assert!(is_json_number(good.as_bytes()), "{good}");
        }
        for bad in [
            "", "-", "01", "1.", ".5", "+1", "1e", "1e+", "inf", "NaN", "infinity", "1_0", "0x10",
            "1.5.2", " 1", "1 ",
        ] {
            assert!(!is_json_number(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn a_written_tweet_is_read_as_serde_reads_it() {
        // Texts with every kind of character the writer may escape or not, and numbers of every
        // form the writer gives (integers written as floats, exponents, the extremes).
        let texts = [
            "",
            "cascade 7",
            "quote \" inside",
            "back\\slash",
            "tab\there",
            "new\nline",
            "é 漢字 🎉",
            "\u{7f}\u{1}",
            "/slash/",
            "{\"json\":1}",
        ];
        let numbers = [
            0.0,
            -0.0,
            1.0,
            12.5,
            1e-7,
            3.0e-320,
            500_000_000.371_9,
            1e21,
            1.5e300,
            f64::MAX,
            -1.0,
        ];
        let mut taken = 0;
        let combinations = texts.iter().flat_map(|msg| {
            texts.iter().flat_map(move |id| {
                [texts[id.len() % texts.len()], "origin"]
                    .into_iter()
                    .map(move |info| (*msg, *id, info))
            })
        });
        for (i, (msg, id, info)) in combinations.enumerate() {
            for (j, &t) in numbers.iter().enumerate() {
                let m = numbers[(i + j) % numbers.len()];
                for kind in [TweetKind::Tweet, TweetKind::Retweet] {
                    let tweet = TweetRef {
                        kind,
                        msg: Cow::Borrowed(msg),
                        t,
                        m,
                        tweet_id: Cow::Borrowed(id),
                        info: Cow::Borrowed(info),
                    };
                    let mut payload = Vec::new();
                    SourceRecordRef::Tweet(tweet).write_payload(&mut payload);
                    let fast = read(&payload);
                    let slow = by_serde(&payload);
                    // Taken unless a text needs escapes, the id is empty or a number negative.
                    let needs_escape =
                        |s: &str| s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
                    let eligible = ![msg, id, info].iter().any(|s| needs_escape(s))
                        && !id.is_empty()
                        && t >= 0.0
                        && m >= 0.0;
                    assert_eq!(
                        fast.is_some(),
                        eligible,
                        "{}",
                        String::from_utf8_lossy(&payload)
                    );
                    if let Some(fast) = fast {
                        taken += 1;
                        let slow = slow.expect("serde reads what the fast path reads");
                        assert_eq!(fast, slow, "{}", String::from_utf8_lossy(&payload));
                        assert_eq!(fast.t.to_bits(), slow.t.to_bits());
                        assert_eq!(fast.m.to_bits(), slow.m.to_bits());
                    }
                }
            }
        }
        assert!(taken >= 200, "the fast path took {taken} tweets only");
    }

    #[test]
    fn any_other_form_is_left_to_serde() {
        let written = br#"{"type":"retweet","msg":"m","t":1.5,"m":20.0,"tweet_id":"7","info":"i"}"#;
        assert!(read(written).is_some());
        let others: [&[u8]; 17] = [
            br#"{ "type":"retweet","msg":"m","t":1.5,"m":20.0,"tweet_id":"7","info":"i"}"#,
            br#"{"type":"retweet","msg":"m","t":1.5,"m":20.0,"tweet_id":"7","info":"i"} "#,
            br#"{"msg":"m","type":"retweet","t":1.5,"m":20.0,"tweet_id":"7","info":"i"}"#,
            br#"{"type":"retweet","msg":"m","t":1.5,"m":20.0,"tweet_id":7,"info":"i"}"#,
            br#"{"type":"retweet","msg":"m","t":1.5,"m":20.0,"tweet_id":"7","info":"i","x":1}"#,
            br#"{"type":"retweet","msg":"m","t":1.5,"m":20.0,"tweet_id":"7"}"#,
            br#"{"type":"retweet","msg":"\u0041","t":1.5,"m":20.0,"tweet_id":"7","info":"i"}"#,
            br#"{"type":"end","msg":"m","t":1.5,"m":20.0,"tweet_id":"7","info":"i"}"#,
            br#"{"type":"like","msg":"m","t":1.5,"m":20.0,"tweet_id":"7","info":"i"}"#,
            br#"{"type":"retweet","msg":"m","t":-1.5,"m":20.0,"tweet_id":"7","info":"i"}"#,
            br#"{"type":"retweet","msg":"m","t":1.,"m":20.0,"tweet_id":"7","info":"i"}"#,
            br#"{"type":"retweet","msg":"m","t":inf,"m":20.0,"tweet_id":"7","info":"i"}"#,
            br#"{"type":"retweet","msg":"m","t":1e999,"m":20.0,"tweet_id":"7","info":"i"}"#,
            br#"{"type":"retweet","msg":"m","t":1.5,"m":20.0,"tweet_id":"","info":"i"}"#,
            br#"{"type":"retweet","msg":"m","t":1.5,"m":20.0,"tweet_id":"7","info":"i"}}"#,
            b"{\"type\":\"retweet\",\"msg\":\"\xff\",\"t\":1.5,\"m\":20.0,\"tweet_id\":\"7\",\"info\":\"i\"}",
            b"{\"type\":\"retweet\",\"msg\":\"a\tb\",\"t\":1.5,\"m\":20.0,\"tweet_id\":\"7\",\"info\":\"i\"}",
        ];
        for payload in others {
            assert!(
                read(payload).is_none(),
                "{}",
                String::from_utf8_lossy(payload)
            );
            // The public parse gives exactly what serde gives.
            assert_eq!(
                SourceRecordRef::parse(payload),
                SourceRecordRef::parse_with_serde(payload),
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
    }
}
