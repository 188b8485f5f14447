//! The Loki push contract: `POST /loki/api/v1/push`, a snappy (block format) compressed protobuf
//! `logproto.PushRequest`. Only the fields the tests read are declared; prost skips the others.

use std::collections::BTreeMap;

/// `logproto.PushRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PushRequest {
    /// One stream per label set.
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `logproto.StreamAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StreamAdapter {
    /// Labels in the Prometheus text form: `{a="x",b="y"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    /// The lines.
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
}

/// `logproto.EntryAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EntryAdapter {
    /// When the line was logged.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    /// The line.
    #[prost(string, tag = "2")]
    pub line: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Timestamp {
    /// Seconds since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds within the second.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// Decompresses (snappy block format) and decodes a push body.
pub(crate) fn decode_push(body: &[u8]) -> Result<PushRequest, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("not snappy (block format): {e}"))?;
    prost::Message::decode(raw.as_slice()).map_err(|e| format!("not a PushRequest: {e}"))
}

/// Parses `{a="x", b="y\"z"}` into its labels.
pub(crate) fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| format!("labels not in braces: {text:?}"))?;
    let mut labels = BTreeMap::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(labels);
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            return Err(format!("value of {name} not quoted in {text:?}"));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some(c) => value.push(c),
                    None => return Err(format!("dangling escape in {text:?}")),
                },
                Some('"') => break,
                Some(c) => value.push(c),
                None => return Err(format!("unterminated value in {text:?}")),
            }
        }
        labels.insert(name.trim().to_owned(), value);
    }
}

#[test]
fn labels_parse_with_escapes() {
    let labels =
        parse_labels(r#"{service="tweetoscope",process="run", msg="a \"b\"",level="info"}"#)
            .unwrap();
    assert_eq!(labels["service"], "tweetoscope");
    assert_eq!(labels["msg"], "a \"b\"");
    assert_eq!(labels["level"], "info");
    assert!(parse_labels("service=x").is_err());
}

#[test]
fn a_push_round_trips() {
    let request = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{level="info"}"#.into(),
            entries: vec![EntryAdapter {
                timestamp: Some(Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 5,
                }),
                line: "hello".into(),
            }],
        }],
    };
    let encoded = prost::Message::encode_to_vec(&request);
    let compressed = snap::raw::Encoder::new().compress_vec(&encoded).unwrap();
    assert_eq!(decode_push(&compressed).unwrap(), request);
    assert!(decode_push(b"not snappy").is_err());
}
