//! Per-cascade data files: a directory of TiDeH `RT<n>.txt` files or of `t,m` CSV files, one
//! cascade a file, read in the directory's natural order (`RT2` before `RT10`).

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use crate::CascadeEvents;

/// A problem with a data file or directory, naming the file and line.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File name.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A line does not hold what the format says.
    #[error("{path}:{line}: {what}")]
    Format {
        /// File name.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what was expected.
        what: String,
    },
    /// The index points past the end of the data file: the two files do not match.
    #[error("{index}: cascade {cascade} ends at row {end} but {data} has only {rows} data rows")]
    OutOfRange {
        /// Index file name.
        index: String,
        /// 1-based cascade number in the index.
        cascade: usize,
        /// Last row of that cascade.
        end: usize,
        /// Data file name.
        data: String,
        /// Rows in the data file.
        rows: usize,
    },
    /// A data directory holds no file of the expected kind.
    #[error("{dir}: no {expected} file found")]
    EmptyDir {
        /// Directory name.
        dir: String,
        /// What files were looked for, e.g. `RT<n>.txt`.
        expected: &'static str,
    },
}

/// Reads a whole file.
pub(crate) fn read_text(path: &Path) -> Result<String, DataError> {
    std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Compares names so that runs of digits compare by value: `RT2.txt` < `RT10.txt`; names equal
/// in value (`RT02`, `RT2`) fall back to byte order.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    by_value(a, b).then_with(|| a.cmp(b))
}

fn by_value(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.chars().next(), b.chars().next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.len() - a.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                let db = b.len() - b.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                let (na, nb) = (
                    a[..da].trim_start_matches('0'),
                    b[..db].trim_start_matches('0'),
                );
                let by_value = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if by_value != Ordering::Equal {
                    return by_value;
                }
                (a, b) = (&a[da..], &b[db..]);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                (a, b) = (&a[x.len_utf8()..], &b[y.len_utf8()..]);
            }
        }
    }
}

/// Files of `dir` whose name `accept`s, in natural order; an error if there is none.
fn list(
    dir: &Path,
    accept: impl Fn(&str) -> bool,
    expected: &'static str,
) -> Result<Vec<PathBuf>, DataError> {
    let io = |source| DataError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if accept(&name) && entry.path().is_file() {
            files.push((name, entry.path()));
        }
    }
    if files.is_empty() {
        return Err(DataError::EmptyDir {
            dir: dir.display().to_string(),
            expected,
        });
    }
    files.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

/// Sorts events by time and shifts them so that the first is at 0.
fn relative_to_first(mut events: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let t0 = events.first().map_or(0.0, |e| e.0);
    for e in &mut events {
        e.0 -= t0;
    }
    events
}

/// A number `>= 0` or a format error naming the field.
fn non_negative(s: &str, name: &str, bad: &dyn Fn(String) -> DataError) -> Result<f64, DataError> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(bad(format!("{name} {s:?} is not a number >= 0"))),
    }
}

/// The TiDeH format (Kobayashi & Lambiotte, ICWSM 2016): a first line `<retweets> <start
/// time in days>`, then one `<seconds since the tweet> <followers>` line per event, the original
/// tweet first. The retweet count must match the number of event lines minus one.
pub mod tideh {
    use super::*;

    /// Whether `name` is a TiDeH cascade file name, `RT<n>.txt`.
    pub fn is_cascade_file(name: &str) -> bool {
        name.strip_prefix("RT")
            .and_then(|rest| rest.strip_suffix(".txt"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }

    /// Parses one file's text; `name` names it in errors and in the cascade's origin.
    pub fn parse(text: &str, name: &str) -> Result<CascadeEvents, DataError> {
        let bad = |line: usize| {
            move |what: String| DataError::Format {
                path: name.to_owned(),
                line,
                what,
            }
        };
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty());
        let Some((head_no, head)) = lines.next() else {
            return Err(bad(1)(
                "empty file: expected a first line `<retweets> <start time>`".into(),
            ));
        };
        let head_bad = bad(head_no);
        let (retweets, day_phase) = match head.split_whitespace().collect::<Vec<_>>()[..] {
            [count, start] => {
                let count = count.parse::<usize>().map_err(|_| {
                    head_bad(format!(
                        "retweet count {count:?} is not a whole number >= 0"
                    ))
                })?;
                let start = non_negative(start, "start time", &head_bad)?;
                (count, start.fract())
            }
            ref fields => {
                return Err(head_bad(format!(
                    "expected a first line `<retweets> <start time in days>`, found {} fields",
                    fields.len()
                )))
            }
        };
        let mut events = Vec::with_capacity(retweets + 1);
        let mut last_line = head_no;
        for (line_no, line) in lines {
            let line_bad = bad(line_no);
            let [t, m] = line.split_whitespace().collect::<Vec<_>>()[..] else {
                return Err(line_bad(format!(
                    "expected `<seconds since the tweet> <followers>`, found {line:?}"
                )));
            };
            events.push((
                non_negative(t, "time", &line_bad)?,
                non_negative(m, "follower count", &line_bad)?,
            ));
            last_line = line_no;
        }
        if events.len() != retweets + 1 {
            return Err(bad(last_line)(format!(
                "the first line announces {retweets} retweets (so {} event lines with the \
                 original tweet) but the file has {} event lines",
                retweets + 1,
                events.len()
            )));
        }
        Ok(CascadeEvents {
            events: relative_to_first(events),
            origin: format!("tideh {name}"),
            day_phase: Some(day_phase),
        })
    }

    /// Reads one `RT<n>.txt` file.
    pub fn read(path: &Path) -> Result<CascadeEvents, DataError> {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        parse(&read_text(path)?, &name).map_err(|e| with_path(e, path))
    }

    /// Reads every `RT<n>.txt` of `dir`, in numeric order of `n`.
    pub fn read_dir(dir: &Path) -> Result<Vec<CascadeEvents>, DataError> {
        list(dir, is_cascade_file, "RT<n>.txt")?
            .iter()
            .map(|p| read(p))
            .collect()
    }
}

/// One cascade a CSV file `t,m` (the format of `tweetoscope fit`): a header line allowed, blank
/// lines and `#` comments skipped, times in seconds (shifted so that the first tweet is at 0),
/// magnitudes (follower counts) `>= 0`.
pub mod csv {
    use super::*;

    /// Parses one file's text; `name` names it in errors and in the cascade's origin.
    pub fn parse(text: &str, name: &str) -> Result<CascadeEvents, DataError> {
        let mut events = Vec::new();
        let mut seen_data = false;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |what: String| DataError::Format {
                path: name.to_owned(),
                line: i + 1,
                what,
            };
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let numeric = fields.iter().all(|f| f.parse::<f64>().is_ok());
            if !seen_data && !numeric {
                seen_data = true; // a header line
                continue;
            }
            seen_data = true;
            let [t, m] = fields[..] else {
                return Err(bad(format!(
                    "expected 2 columns `t,m`, found {} in {line:?}",
                    fields.len()
                )));
            };
            events.push((
                non_negative(t, "time", &bad)?,
                non_negative(m, "magnitude", &bad)?,
            ));
        }
        if events.is_empty() {
            return Err(DataError::Format {
                path: name.to_owned(),
                line: text.lines().count().max(1),
                what: "no `t,m` row: a cascade needs at least its original tweet".into(),
            });
        }
        Ok(CascadeEvents {
            events: relative_to_first(events),
            origin: format!("csv {name}"),
            day_phase: None,
        })
    }

    /// Reads one CSV file.
    pub fn read(path: &Path) -> Result<CascadeEvents, DataError> {
        parse(&read_text(path)?, &path.display().to_string())
    }

    /// Reads every `*.csv` of `dir`, in natural order of the names.
    pub fn read_dir(dir: &Path) -> Result<Vec<CascadeEvents>, DataError> {
        list(dir, |n| n.ends_with(".csv"), "*.csv")?
            .iter()
            .map(|p| read(p))
            .collect()
    }
}

/// Names the full path of a file in a format error.
fn with_path(e: DataError, path: &Path) -> DataError {
    match e {
        DataError::Format { line, what, .. } => DataError::Format {
            path: path.display().to_string(),
            line,
            what,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh empty directory under the system's temporary directory.
    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tweetoscope-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn format_error(e: DataError) -> (String, usize, String) {
        match e {
            DataError::Format { path, line, what } => (path, line, what),
            other => panic!("expected a format error, got {other}"),
        }
    }

    #[test]
    fn natural_order_compares_numbers_by_value() {
        let mut names = vec![
            "RT10.txt",
            "RT2.txt",
            "RT1.txt",
            "RT02.txt",
            "a.csv",
            "RT100.txt",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            [
                "RT1.txt",
                "RT02.txt",
                "RT2.txt",
                "RT10.txt",
                "RT100.txt",
                "a.csv"
            ]
        );
        assert!(tideh::is_cascade_file("RT7.txt"));
        assert!(!tideh::is_cascade_file("RT.txt"));
        assert!(!tideh::is_cascade_file("RT7.txt.bak"));
        assert!(!tideh::is_cascade_file("README.txt"));
    }

    #[test]
    fn tideh_file_reads_events_relative_to_the_tweet() {
        let c = tideh::parse("2 0.25\n0 90 \n12 433\n\n30.5 7\n", "RT9.txt").unwrap();
        assert_eq!(c.events, vec![(0.0, 90.0), (12.0, 433.0), (30.5, 7.0)]);
        assert_eq!(c.origin, "tideh RT9.txt");
        // The start time's fraction of a day is the time of day of the tweet.
        assert_eq!(c.day_phase, Some(0.25));
        let later = tideh::parse(
            "0 3.75
0 90
",
            "RT1.txt",
        )
        .unwrap();
        assert_eq!(later.day_phase, Some(0.75));
    }

    #[test]
    fn bad_tideh_files_name_the_line_and_what_was_expected() {
        let cases = [
            ("", 1, "empty file"),
            ("2\n0 1\n", 1, "first line"),
            ("x 0.5\n0 1\n", 1, "retweet count"),
            (
                "1 0.5\n0 1\n5\n",
                3,
                "<seconds since the tweet> <followers>",
            ),
            ("1 0.5\n0 1\n5 -3\n", 3, "follower count"),
            ("1 0.5\n0 1\nnan 3\n", 3, "time"),
            ("3 0.5\n0 1\n5 3\n", 3, "announces 3 retweets"),
        ];
        for (text, line, expected) in cases {
            let (path, at, what) = format_error(tideh::parse(text, "RT1.txt").unwrap_err());
            assert_eq!((path.as_str(), at), ("RT1.txt", line), "{text:?}: {what}");
            assert!(what.contains(expected), "{text:?}: {what}");
        }
    }

    #[test]
    fn csv_file_allows_a_header_comments_and_any_order() {
        let c = csv::parse("t,m\n# comment\n100,5\n\n90,3\n120,1\n", "c.csv").unwrap();
        assert_eq!(c.events, vec![(0.0, 3.0), (10.0, 5.0), (30.0, 1.0)]);
        let (_, line, what) = format_error(csv::parse("t,m\n1,2\n3\n", "c.csv").unwrap_err());
        assert_eq!(line, 3);
        assert!(what.contains("2 columns"), "{what}");
        let (_, line, what) = format_error(csv::parse("1,2\n3,abc\n", "c.csv").unwrap_err());
        assert_eq!(line, 2);
        assert!(what.contains("magnitude \"abc\""), "{what}");
        let (_, _, what) = format_error(csv::parse("t,m\n", "c.csv").unwrap_err());
        assert!(what.contains("no `t,m` row"), "{what}");
    }

    #[test]
    fn directories_are_read_in_natural_order_and_errors_name_the_file() {
        let dir = temp_dir("tideh");
        std::fs::write(dir.join("RT10.txt"), "1 0.1\n0 5\n60 7\n").unwrap();
        std::fs::write(dir.join("RT2.txt"), "0 0.2\n0 8\n").unwrap();
        std::fs::write(dir.join("notes.txt"), "not a cascade").unwrap();
        let read = tideh::read_dir(&dir).unwrap();
        let origins: Vec<&str> = read.iter().map(|c| c.origin.as_str()).collect();
        assert_eq!(origins, ["tideh RT2.txt", "tideh RT10.txt"]);
        std::fs::write(dir.join("RT3.txt"), "1 0.1\n0 5\n").unwrap();
        let (path, line, _) = format_error(tideh::read_dir(&dir).unwrap_err());
        assert_eq!(path, dir.join("RT3.txt").display().to_string());
        assert_eq!(line, 2);

        let empty = temp_dir("empty");
        let err = tideh::read_dir(&empty).unwrap_err().to_string();
        assert!(err.contains("no RT<n>.txt file found"), "{err}");
        let err = csv::read_dir(&empty.join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot read"), "{err}");

        let csvs = temp_dir("csv");
        std::fs::write(csvs.join("c10.csv"), "t,m\n0,1\n5,2\n").unwrap();
        std::fs::write(csvs.join("c9.csv"), "0,4\n").unwrap();
        let read = csv::read_dir(&csvs).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].events, vec![(0.0, 4.0)]);
        for d in [dir, empty, csvs] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    #[test]
    fn the_shared_tideh_cascades_read_whole() {
        let dir = Path::new(&crate::manifest_dir()).join("../../../shared/data/tideh");
        let cascades = tideh::read_dir(&dir).unwrap();
        assert_eq!(cascades.len(), 50);
        assert_eq!(cascades[0].origin, "tideh RT1.txt");
        assert_eq!(cascades[1].origin, "tideh RT2.txt");
        // RT1: 4,963 retweets and the original tweet, observed for about 7 days.
        assert_eq!(cascades[0].events.len(), 4_964);
        assert_eq!(cascades[0].events[0], (0.0, 90.0));
        assert_eq!(cascades[0].events.last(), Some(&(598_948.0, 216.0)));
        for c in &cascades {
            assert!(
                c.events.windows(2).all(|w| w[0].0 <= w[1].0),
                "{}",
                c.origin
            );
            assert!(
                (2_000..=17_001).contains(&c.events.len()),
                "{}: {}",
                c.origin,
                c.events.len()
            );
        }
    }
}
