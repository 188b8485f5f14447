//! Message contracts of the Tweetoscope topics.
//!
//! Every value that travels on a topic has a typed form here, a strict parser that turns a payload
//! into that form (or a [`Malformed`] reason for the dead-letter queue) and a serializer that writes
//! the JSON format of the README's "Message contracts" section, compatible with the classic course
//! contracts. Extra fields are
//! accepted and ignored; a missing or mistyped required field, an unknown `type` or a value outside
//! its domain (negative time, non-finite number, empty series) makes a message malformed.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

mod partitioning;
mod written_tweet;
pub use partitioning::{partition_for, stable_hash};

/// Default topic names.
pub mod topics {
    /// Tweets and retweets from the generator, keyed by source id.
    pub const TWEETS: &str = "tweets";
    /// Partial cascades per observation window, keyed by cascade id.
    pub const CASCADE_SERIES: &str = "cascade_series";
    /// Final sizes (collector) and Hawkes parameters (estimator), keyed by observation window.
    pub const CASCADE_PROPERTIES: &str = "cascade_properties";
    /// Training samples for the learner, keyed by observation window.
    pub const SAMPLES: &str = "samples";
    /// Random-forest models, keyed by observation window (compacted).
    pub const MODELS: &str = "models";
    /// Popularity alerts (predicted final sizes).
    pub const ALERTS: &str = "alerts";
    /// Absolute relative errors of the predictions.
    pub const STATS: &str = "stats";
    /// Structured log records of every stage, keyed by stage name.
    pub const LOGS: &str = "logs";
    /// Suffix of the dead-letter topic of a topic: `tweets` → `tweets.dlq`.
    pub const DLQ_SUFFIX: &str = ".dlq";

    /// Name of the dead-letter topic that keeps the malformed messages of `topic`.
    pub fn dead_letter(topic: &str) -> String {
        format!("{topic}{DLQ_SUFFIX}")
    }
}

/// Why a payload was refused; the message goes unchanged to the dead-letter topic with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed message: {reason}")]
pub struct Malformed {
    /// Human-readable reason, naming the offending field where known.
    pub reason: String,
}

impl Malformed {
    /// A reason built from any displayable value.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, Malformed> {
    serde_json::from_slice(payload).map_err(|e| Malformed::new(e.to_string()))
}

fn finite(name: &str, value: f64) -> Result<f64, Malformed> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(Malformed::new(format!("`{name}` must be a finite number")))
    }
}

fn non_negative(name: &str, value: f64) -> Result<f64, Malformed> {
    if finite(name, value)? < 0.0 {
        Err(Malformed::new(format!(
            "`{name}` must be >= 0, got {value}"
        )))
    } else {
        Ok(value)
    }
}

/// Coverage of the prediction intervals `[n_low, n_high]` carried by alerts and stats: the
/// central 80 % (from the 10th to the 90th percentile of the predicted distribution).
pub const PREDICTION_INTERVAL_COVERAGE: f64 = 0.8;

/// An interval `[n_low, n_high]` must have finite bounds in order; one bound alone is kept.
fn ordered_interval(low: Option<f64>, high: Option<f64>) -> Result<(), Malformed> {
    let finite = |v: Option<f64>| v.is_none_or(f64::is_finite);
    if !finite(low) || !finite(high) {
        return Err(Malformed::new(
            "`n_low` and `n_high` must be finite numbers",
        ));
    }
    match (low, high) {
        (Some(lo), Some(hi)) if lo > hi => Err(Malformed::new(format!(
            "`n_low` ({lo}) must not be above `n_high` ({hi})"
        ))),
        _ => Ok(()),
    }
}

fn positive_window(value: u64) -> Result<u64, Malformed> {
    if value == 0 {
        Err(Malformed::new(
            "`T_obs` must be a positive number of seconds",
        ))
    } else {
        Ok(value)
    }
}

/// Serializes a contract value to its JSON payload.
pub fn to_payload<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("contract types always serialize")
}

/// A cascade id: the id of the original tweet, as text. Accepts a JSON string or integer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct CascadeId(pub String);

impl<'de> Deserialize<'de> for CascadeId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        CascadeIdText::deserialize(deserializer).map(|id| CascadeId(id.0.into_owned()))
    }
}

/// The text of a cascade id as read from a payload: borrowed from it when it is a JSON string
/// without escapes, else made (an escaped string, an integer).
struct CascadeIdText<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CascadeIdText<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Reads the id straight from the text or number (no buffering of the value, as an
        /// untagged enum would do).
        struct IdVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> serde::de::Visitor<'de> for IdVisitor<'a> {
            type Value = CascadeIdText<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a cascade id: a non-empty string or a non-negative integer")
            }

            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                s: &'de str,
            ) -> Result<CascadeIdText<'a>, E> {
                if s.is_empty() {
                    return Err(E::custom("cascade id must not be empty"));
                }
                Ok(CascadeIdText(Cow::Borrowed(s)))
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<CascadeIdText<'a>, E> {
                if s.is_empty() {
                    return Err(E::custom("cascade id must not be empty"));
                }
                Ok(CascadeIdText(Cow::Owned(s.to_owned())))
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<CascadeIdText<'a>, E> {
                Ok(CascadeIdText(Cow::Owned(n.to_string())))
            }
        }

        deserializer.deserialize_any(IdVisitor(std::marker::PhantomData))
    }
}

impl std::borrow::Borrow<str> for CascadeId {
    /// A map keyed by cascade ids is searched with a borrowed id (a [`TweetRef`]'s): the id
    /// hashes and compares as its text.
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CascadeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for CascadeId {
    fn from(s: &str) -> Self {
        CascadeId(s.to_owned())
    }
}

/// Whether a tweet starts a cascade or extends one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TweetKind {
    /// An original tweet: starts the cascade `tweet_id`.
    Tweet,
    /// A retweet of the original tweet `tweet_id`.
    Retweet,
}

/// One tweet or retweet on the `tweets` topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tweet {
    /// Tweet or retweet.
    #[serde(rename = "type")]
    pub kind: TweetKind,
    /// Free text.
    #[serde(default)]
    pub msg: String,
    /// Event time on the source's clock, in seconds.
    pub t: f64,
    /// Magnitude: the follower count of the author.
    pub m: f64,
    /// Id of the original tweet (the cascade id).
    pub tweet_id: CascadeId,
    /// Free information.
    #[serde(default)]
    pub info: String,
}

/// Marks the end of a source's replay: the collector flushes that source's cascades.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndOfSource {
    /// Always `"end"`.
    #[serde(rename = "type")]
    pub kind: EndTag,
    /// Last event time of the source.
    pub t: f64,
}

/// The tag of [`EndOfSource`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndTag {
    /// End of a source's stream.
    End,
}

/// Anything on the `tweets` topic.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceRecord {
    /// A tweet or a retweet.
    Tweet(Tweet),
    /// The source has nothing more to send.
    End(EndOfSource),
}

impl SourceRecord {
    /// Parses a `tweets` payload, in one pass whatever its `type` (see [`SourceRecordRef::parse`]).
    pub fn parse(payload: &[u8]) -> Result<Self, Malformed> {
        SourceRecordRef::parse(payload).map(SourceRecordRef::into_owned)
    }

    /// The JSON payload of this record (written by [`SourceRecordRef::write_payload`]).
    pub fn to_payload(&self) -> Vec<u8> {
        let mut payload = Vec::new();
        self.as_ref().write_payload(&mut payload);
        payload
    }

    /// This record, borrowed.
    pub fn as_ref(&self) -> SourceRecordRef<'_> {
        match self {
            SourceRecord::Tweet(t) => SourceRecordRef::Tweet(t.into()),
            SourceRecord::End(e) => SourceRecordRef::End(e.clone()),
        }
    }
}

/// A [`Tweet`] whose texts are borrowed, from a payload or from their owner: the form in which
/// the collector reads every retweet and the generator writes it, with no copy of its texts.
/// Serializes to the same JSON as the [`Tweet`] it views.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TweetRef<'a> {
    /// Tweet or retweet.
    #[serde(rename = "type")]
    pub kind: TweetKind,
    /// Free text.
    pub msg: Cow<'a, str>,
    /// Event time on the source's clock, in seconds.
    pub t: f64,
    /// Magnitude: the follower count of the author.
    pub m: f64,
    /// Id of the original tweet (the cascade id), never empty.
    pub tweet_id: Cow<'a, str>,
    /// Free information.
    pub info: Cow<'a, str>,
}

impl<'a> From<&'a Tweet> for TweetRef<'a> {
    fn from(tweet: &'a Tweet) -> Self {
        TweetRef {
            kind: tweet.kind,
            msg: Cow::Borrowed(&tweet.msg),
            t: tweet.t,
            m: tweet.m,
            tweet_id: Cow::Borrowed(&tweet.tweet_id.0),
            info: Cow::Borrowed(&tweet.info),
        }
    }
}

impl<'a> From<&'a TweetRef<'_>> for TweetRef<'a> {
    /// The same tweet, borrowing from `tweet` (no copy of its texts).
    fn from(tweet: &'a TweetRef<'_>) -> Self {
        TweetRef {
            kind: tweet.kind,
            msg: Cow::Borrowed(&tweet.msg),
            t: tweet.t,
            m: tweet.m,
            tweet_id: Cow::Borrowed(&tweet.tweet_id),
            info: Cow::Borrowed(&tweet.info),
        }
    }
}

impl TweetRef<'_> {
    /// The owned tweet.
    pub fn into_owned(self) -> Tweet {
        Tweet {
            kind: self.kind,
            msg: self.msg.into_owned(),
            t: self.t,
            m: self.m,
            tweet_id: CascadeId(self.tweet_id.into_owned()),
            info: self.info.into_owned(),
        }
    }
}

/// A record of the `tweets` topic, borrowed (see [`TweetRef`]).
#[derive(Debug, Clone, PartialEq)]
pub enum SourceRecordRef<'a> {
    /// A tweet or a retweet.
    Tweet(TweetRef<'a>),
    /// The source has nothing more to send.
    End(EndOfSource),
}

impl<'a> SourceRecordRef<'a> {
    /// Parses a `tweets` payload, in one pass whatever its `type`, borrowing the texts of a tweet
    /// from `payload` (those without JSON escapes). A tweet written as
    /// [`SourceRecordRef::write_payload`] writes one is read by a scan for its fixed keys (a
    /// fast path that takes a payload only if serde would read the same tweet from it); any
    /// other payload, valid or not, by serde.
    pub fn parse(payload: &'a [u8]) -> Result<Self, Malformed> {
        match written_tweet::read(payload) {
            Some(tweet) => Ok(SourceRecordRef::Tweet(tweet)),
            None => Self::parse_with_serde(payload),
        }
    }

    /// [`SourceRecordRef::parse`] without its fast path.
    pub(crate) fn parse_with_serde(payload: &'a [u8]) -> Result<Self, Malformed> {
        /// Every field a `tweets` record may have; which are required depends on `type`.
        #[derive(Deserialize)]
        struct AnyRecord<'a> {
            #[serde(rename = "type", borrow)]
            kind: Cow<'a, str>,
            #[serde(default, borrow)]
            msg: Cow<'a, str>,
            t: f64,
            m: Option<f64>,
            #[serde(borrow)]
            tweet_id: Option<CascadeIdText<'a>>,
            #[serde(default, borrow)]
            info: Cow<'a, str>,
        }
        let missing = |field: &str| Malformed::new(format!("missing field `{field}`"));
        let record: AnyRecord<'a> = decode(payload)?;
        let kind = match record.kind.as_ref() {
            "tweet" => TweetKind::Tweet,
            "retweet" => TweetKind::Retweet,
            "end" => {
                finite("t", record.t)?;
                return Ok(SourceRecordRef::End(EndOfSource {
                    kind: EndTag::End,
                    t: record.t,
                }));
            }
            other => {
                return Err(Malformed::new(format!(
                    "unknown `type` {other:?} on the tweets topic (expected tweet, retweet or end)"
                )))
            }
        };
        let tweet = TweetRef {
            kind,
            msg: record.msg,
            t: record.t,
            m: record.m.ok_or_else(|| missing("m"))?,
            tweet_id: record.tweet_id.ok_or_else(|| missing("tweet_id"))?.0,
            info: record.info,
        };
        non_negative("t", tweet.t)?;
        non_negative("m", tweet.m)?;
        Ok(SourceRecordRef::Tweet(tweet))
    }

    /// The owned record.
    pub fn into_owned(self) -> SourceRecord {
        match self {
            SourceRecordRef::Tweet(t) => SourceRecord::Tweet(t.into_owned()),
            SourceRecordRef::End(e) => SourceRecord::End(e),
        }
    }

    /// Appends the JSON payload of this record to `out`: a [`TweetRef`] writes the JSON of the
    /// [`Tweet`] it views.
    pub fn write_payload(&self, out: &mut Vec<u8>) {
        let written = match self {
            SourceRecordRef::Tweet(t) => serde_json::to_writer(&mut *out, t),
            SourceRecordRef::End(e) => serde_json::to_writer(&mut *out, e),
        };
        written.expect("contract types always serialize");
    }
}

/// Tag that must read `"serie"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SerieTag {
    /// The only value.
    #[serde(rename = "serie")]
    Serie,
}

/// The partial series of a cascade for one observation window, on `cascade_series`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CascadeSeries {
    /// Always `"serie"`.
    #[serde(rename = "type")]
    pub kind: SerieTag,
    /// Cascade id.
    pub cid: CascadeId,
    /// Text of the original tweet.
    #[serde(default)]
    pub msg: String,
    /// Observation window in seconds.
    #[serde(rename = "T_obs")]
    pub t_obs: u64,
    /// `[time, magnitude]` pairs, times relative to the first tweet, sorted.
    pub tweets: Vec<(f64, f64)>,
}

impl CascadeSeries {
    /// Builds a series message.
    pub fn new(cid: CascadeId, msg: String, t_obs: u64, tweets: Vec<(f64, f64)>) -> Self {
        Self {
            kind: SerieTag::Serie,
            cid,
            msg,
            t_obs,
            tweets,
        }
    }

    /// Parses and validates a `cascade_series` payload.
    pub fn parse(payload: &[u8]) -> Result<Self, Malformed> {
        let s: CascadeSeries = decode(payload)?;
        positive_window(s.t_obs)?;
        if s.tweets.is_empty() {
            return Err(Malformed::new(
                "`tweets` must hold at least one [t, m] pair",
            ));
        }
        let mut previous = f64::NEG_INFINITY;
        for &(t, m) in &s.tweets {
            finite("tweets[].t", t)?;
            non_negative("tweets[].m", m)?;
            if t < previous {
                return Err(Malformed::new("`tweets` times must be sorted"));
            }
            previous = t;
        }
        Ok(s)
    }
}

/// Final size of a cascade, from the collector, on `cascade_properties` keyed by `T_obs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CascadeSize {
    /// Cascade id.
    pub cid: CascadeId,
    /// Observation window this message answers (also the record key).
    #[serde(rename = "T_obs", default, skip_serializing_if = "Option::is_none")]
    pub t_obs: Option<u64>,
    /// Number of tweets in the whole cascade.
    pub n_tot: u64,
    /// Time of the last tweet, relative to the first.
    pub t_end: f64,
}

/// Hawkes parameters of a partial cascade, from the estimator, on `cascade_properties`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CascadeParameters {
    /// Cascade id.
    pub cid: CascadeId,
    /// Text of the original tweet.
    #[serde(default)]
    pub msg: String,
    /// Observation window (also the record key).
    #[serde(rename = "T_obs", default, skip_serializing_if = "Option::is_none")]
    pub t_obs: Option<u64>,
    /// Number of tweets observed in the window.
    pub n_obs: u64,
    /// Expected number of tweets still to come, G1 / (1 − n*), before any correction.
    pub n_supp: f64,
    /// `[p, beta]` for the exponential kernel (the classic format); `[K, beta, c, theta]` for the
    /// power-law kernel, where `beta` is the mark exponent.
    pub params: Vec<f64>,
    /// Kernel the parameters belong to (absent: exponential).
    #[serde(default)]
    pub kernel: KernelKind,
    /// Branching factor.
    pub n_star: f64,
    /// Expected number of direct children still to come from the observed tweets.
    #[serde(rename = "G1")]
    pub g1: f64,
    /// How the window's tweets are spread (extra field; absent from older estimators, whose
    /// parameters are then predicted without the growth model).
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub shape: Option<SeriesShape>,
}

/// What a partial cascade's series says beyond its size, for the growth model: how recent and
/// how far-reaching its tweets are. Sent as two extra JSON fields, `late_share` and
/// `sqrt_followers`, on `parameters` and `samples`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeriesShape {
    /// Share of the window's tweets posted in its second half (`t − t₁ ≥ T_obs / 2`), in [0, 1].
    pub late_share: f64,
    /// Mean square root of the follower counts of the window's tweets (each count at least 1).
    pub sqrt_followers: f64,
}

impl SeriesShape {
    /// Checks the ranges: a share in [0, 1] and a mean of square roots of counts ≥ 1.
    fn check(&self) -> Result<(), Malformed> {
        if !(0.0..=1.0).contains(&self.late_share) {
            return Err(Malformed::new(format!(
                "`late_share` must lie in [0, 1], found {}",
                self.late_share
            )));
        }
        if !(self.sqrt_followers.is_finite() && self.sqrt_followers >= 1.0) {
            return Err(Malformed::new(format!(
                "`sqrt_followers` must be a finite number >= 1, found {}",
                self.sqrt_followers
            )));
        }
        Ok(())
    }
}

/// The time kernel of a fit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KernelKind {
    /// p·m·β·e^(−βτ).
    #[default]
    Exponential,
    /// K·m^β·(τ + c)^−(1+θ).
    PowerLaw,
}

impl KernelKind {
    /// Number of parameters in `params`.
    pub fn arity(self) -> usize {
        match self {
            KernelKind::Exponential => 2,
            KernelKind::PowerLaw => 4,
        }
    }
}

impl CascadeParameters {
    /// The kernel's time-scale feature for the random forest: β for the exponential kernel, θ
    /// for the power law.
    pub fn time_feature(&self) -> f64 {
        match self.kernel {
            KernelKind::Exponential => self.params[1],
            KernelKind::PowerLaw => self.params[3],
        }
    }
}

/// Anything on `cascade_properties`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CascadeProperty {
    /// Final size, from the collector.
    Size(CascadeSize),
    /// Fitted parameters, from the estimator.
    Parameters(CascadeParameters),
}

impl CascadeProperty {
    /// Parses a `cascade_properties` record. The window comes from the `T_obs` field when present,
    /// else from the record key (the classic format keys these messages by `T_obs`).
    pub fn parse(key: Option<&[u8]>, payload: &[u8]) -> Result<(u64, Self), Malformed> {
        let mut property: CascadeProperty = decode(payload)?;
        let from_key = key
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| k.trim().parse::<u64>().ok());
        let slot = match &mut property {
            CascadeProperty::Size(s) => {
                non_negative("t_end", s.t_end)?;
                &mut s.t_obs
            }
            CascadeProperty::Parameters(p) => {
                if p.params.len() != p.kernel.arity() {
                    return Err(Malformed::new(format!(
                        "`params` must hold {} numbers for the {:?} kernel, found {}",
                        p.kernel.arity(),
                        p.kernel,
                        p.params.len()
                    )));
                }
                for (i, v) in p.params.iter().enumerate() {
                    non_negative(&format!("params[{i}]"), *v)?;
                }
                non_negative("n_star", p.n_star)?;
                non_negative("G1", p.g1)?;
                finite("n_supp", p.n_supp)?;
                if let Some(shape) = &p.shape {
                    shape.check()?;
                }
                &mut p.t_obs
            }
        };
        let window = slot.or(from_key).ok_or_else(|| {
            Malformed::new("no observation window: neither a `T_obs` field nor a numeric key")
        })?;
        positive_window(window)?;
        *slot = Some(window);
        Ok((window, property))
    }

    /// Cascade id of either variant.
    pub fn cid(&self) -> &CascadeId {
        match self {
            CascadeProperty::Size(s) => &s.cid,
            CascadeProperty::Parameters(p) => &p.cid,
        }
    }
}

/// Tag that must read `"sample"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleTag {
    /// The only value.
    Sample,
}

/// A training sample for the random forest of one window, on `samples` keyed by `T_obs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Always `"sample"`.
    #[serde(rename = "type")]
    pub kind: SampleTag,
    /// Cascade id.
    pub cid: CascadeId,
    /// Observation window (also the record key).
    #[serde(rename = "T_obs", default, skip_serializing_if = "Option::is_none")]
    pub t_obs: Option<u64>,
    /// Features `[beta, n_star, G1]`.
    #[serde(rename = "X")]
    pub x: [f64; 3],
    /// Target: the correction ω that would have predicted the true size exactly.
    #[serde(rename = "W")]
    pub w: f64,
    /// Tweets observed in the window (extra field; absent in older samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_obs: Option<u64>,
    /// The cascade's final size (extra field; absent in older samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_tot: Option<u64>,
    /// The shape of the series the parameters came from (extra fields; absent in older samples,
    /// which the growth model does not learn from).
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub shape: Option<SeriesShape>,
}

impl Sample {
    /// Builds a sample message.
    pub fn new(cid: CascadeId, t_obs: u64, x: [f64; 3], w: f64) -> Self {
        Self {
            kind: SampleTag::Sample,
            cid,
            t_obs: Some(t_obs),
            x,
            w,
            n_obs: None,
            n_tot: None,
            shape: None,
        }
    }

    /// The sample with the shape of its series.
    pub fn with_shape(self, shape: Option<SeriesShape>) -> Self {
        Self { shape, ..self }
    }

    /// The sample with the observed and final sizes of its cascade.
    pub fn with_sizes(self, n_obs: u64, n_tot: u64) -> Self {
        Self {
            n_obs: Some(n_obs),
            n_tot: Some(n_tot),
            ..self
        }
    }

    /// How much the cascade grew after the window, `n_tot / n_obs`, when the sample says.
    pub fn growth(&self) -> Option<f64> {
        match (self.n_obs, self.n_tot) {
            (Some(observed), Some(total)) if observed > 0 => Some(total as f64 / observed as f64),
            _ => None,
        }
    }

    /// Parses a `samples` record; the window comes from `T_obs` or the key.
    pub fn parse(key: Option<&[u8]>, payload: &[u8]) -> Result<Self, Malformed> {
        let mut s: Sample = decode(payload)?;
        for (i, v) in s.x.iter().enumerate() {
            finite(&format!("X[{i}]"), *v)?;
        }
        finite("W", s.w)?;
        if let Some(shape) = &s.shape {
            shape.check()?;
        }
        let from_key = key
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| k.trim().parse::<u64>().ok());
        let window = s.t_obs.or(from_key).ok_or_else(|| {
            Malformed::new("no observation window: no `T_obs` field and no numeric key")
        })?;
        s.t_obs = Some(positive_window(window)?);
        Ok(s)
    }

    /// The window of a parsed sample.
    pub fn window(&self) -> u64 {
        self.t_obs.unwrap_or_default()
    }
}

/// Tag that must read `"model"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelTag {
    /// The only value.
    Model,
}

/// The features, in order, of the samples and models the pipeline serves: the kernel's time
/// scale (β, or θ for the power law), the branching factor and G1. A model listing other
/// features is refused by the predictor.
pub const SERVED_FEATURES: [&str; 3] = ["beta", "n_star", "G1"];

/// The features, in order, of a model's growth model (see [`GrowthModel`]): `ln n_obs`, the log
/// of the [`SeriesShape::late_share`] (at least half a tweet's worth, `0.5 / n_obs`) and the log
/// of the [`SeriesShape::sqrt_followers`]. A growth model listing other features (such as the
/// growth forests of earlier versions) is refused.
pub const GROWTH_FEATURES: [&str; 3] = ["ln_n_obs", "ln_late_share", "ln_sqrt_followers"];

/// The growth model of a model message: a median regression of the log-growth
/// `ln(n_tot / n_obs)` of a cascade after the window on [`GROWTH_FEATURES`], and how the
/// predictor serves it, as chosen by the learner on its training samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrowthModel {
    /// Names of the features, in order.
    pub features: Vec<String>,
    /// Constant term of the log-growth.
    #[serde(default)]
    pub intercept: f64,
    /// One coefficient per feature.
    #[serde(default)]
    pub coefficients: Vec<f64>,
    /// `true`: the served size is the geometric mean of the ω-corrected Hawkes size and
    /// `n_obs · e^growth`; `false`: `n_obs · e^growth` alone.
    #[serde(default)]
    pub blend: bool,
    /// The 10 % and 90 % quantiles of `ln(n_tot / served size)` over the training samples, each
    /// predicted by models that did not learn from it: the served 80 % interval is the size
    /// times their exponentials (absent: no interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_error_bounds: Option<(f64, f64)>,
}

/// A trained random forest for one window, on the compacted `models` topic keyed by `T_obs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMessage {
    /// Always `"model"`.
    #[serde(rename = "type")]
    pub kind: ModelTag,
    /// Observation window.
    #[serde(rename = "T_obs")]
    pub t_obs: u64,
    /// Increases by one at every retraining of this window's model.
    pub version: u64,
    /// Number of samples the model was trained on.
    pub n_samples: u64,
    /// Names of the features, in order.
    pub features: Vec<String>,
    /// What the forest predicts: ω itself, or ln ω (absent: ω, as in older models).
    #[serde(default)]
    pub target: ModelTarget,
    /// The serialized forest.
    pub forest: serde_json::Value,
    /// The largest growth `n_tot / n_obs` among the samples the model was trained on: a served
    /// prediction stays at most `n_obs` times this (absent in older models: no such bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_growth: Option<f64>,
    /// The growth model (extra field; absent in older models and when no sample carried its
    /// sizes and shape: the ω forest is then served alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growth: Option<GrowthModel>,
}

/// The quantity a model's forest predicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelTarget {
    /// The correction factor ω.
    #[default]
    Omega,
    /// Its logarithm ln ω.
    LnOmega,
}

impl ModelMessage {
    /// Parses a `models` payload.
    pub fn parse(payload: &[u8]) -> Result<Self, Malformed> {
        let m: ModelMessage = decode(payload)?;
        positive_window(m.t_obs)?;
        Ok(m)
    }
}

/// Tag that must read `"alert"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertTag {
    /// The only value.
    Alert,
}

/// A predicted final size, on `alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Always `"alert"`.
    #[serde(rename = "type")]
    pub kind: AlertTag,
    /// Cascade id.
    pub cid: CascadeId,
    /// Text of the original tweet.
    #[serde(default)]
    pub msg: String,
    /// Observation window the prediction was made at.
    #[serde(rename = "T_obs")]
    pub t_obs: u64,
    /// Predicted final size, rounded.
    pub n_tot: u64,
    /// Number of tweets observed when predicting.
    #[serde(default)]
    pub n_obs: u64,
    /// Version of the random forest used (0: Hawkes prediction alone).
    #[serde(default)]
    pub model_version: u64,
    /// Lower bound of the 80 % prediction interval of the final size (absent when no forest
    /// with intervals corrected the prediction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_low: Option<f64>,
    /// Upper bound of the 80 % prediction interval of the final size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_high: Option<f64>,
}

impl Alert {
    /// Parses an `alerts` payload.
    pub fn parse(payload: &[u8]) -> Result<Self, Malformed> {
        let a: Alert = decode(payload)?;
        positive_window(a.t_obs)?;
        ordered_interval(a.n_low, a.n_high)?;
        Ok(a)
    }
}

/// Tag that must read `"stat"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatTag {
    /// The only value.
    Stat,
}

/// The absolute relative error of a prediction, on `stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// Always `"stat"`.
    #[serde(rename = "type")]
    pub kind: StatTag,
    /// Cascade id.
    pub cid: CascadeId,
    /// Observation window.
    #[serde(rename = "T_obs")]
    pub t_obs: u64,
    /// |N̂ − n_tot| / n_tot.
    #[serde(rename = "ARE")]
    pub are: f64,
    /// Predicted final size.
    #[serde(default)]
    pub n_pred: f64,
    /// True final size.
    #[serde(default)]
    pub n_tot: u64,
    /// Relative error of the Hawkes prediction alone (ω = 1).
    #[serde(default)]
    pub are_hawkes: f64,
    /// Version of the random forest used (0: none).
    #[serde(default)]
    pub model_version: u64,
    /// Lower bound of the 80 % prediction interval of the final size (as in the alert).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_low: Option<f64>,
    /// Upper bound of the 80 % prediction interval of the final size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_high: Option<f64>,
}

impl Stat {
    /// Parses a `stats` payload.
    pub fn parse(payload: &[u8]) -> Result<Self, Malformed> {
        let s: Stat = decode(payload)?;
        positive_window(s.t_obs)?;
        ordered_interval(s.n_low, s.n_high)?;
        non_negative("ARE", s.are)?;
        Ok(s)
    }
}

/// A structured log record, on `logs` keyed by stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Unix time in seconds.
    pub t: f64,
    /// Stage that logged it.
    pub source: String,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// The message.
    pub message: String,
    /// Structured fields of the event.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl LogRecord {
    /// Parses a `logs` payload.
    pub fn parse(payload: &[u8]) -> Result<Self, Malformed> {
        let r: LogRecord = decode(payload)?;
        finite("t", r.t)?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests;
