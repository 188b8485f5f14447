//! The public NEWS data set format: an index CSV `start_ind,end_ind` (1-based inclusive row ranges
//! into the data file, one cascade a row) and a data CSV `time,magnitude` (time relative to the
//! cascade's first tweet, magnitude = follower count). Both may start with a header line.

use std::path::Path;

use crate::{CascadeEvents, DataError};

/// Row ranges of an index file: one `(start, end)` per cascade, 0-based, end exclusive.
pub fn read_index(path: &Path) -> Result<Vec<(usize, usize)>, DataError> {
    parse_index(&read(path)?, &path.display().to_string())
}

/// Row ranges of index text; `name` names it in errors.
pub fn parse_index(text: &str, name: &str) -> Result<Vec<(usize, usize)>, DataError> {
    let mut ranges = Vec::new();
    for (line_no, fields) in rows(text) {
        let bad = |what: String| DataError::Format {
            path: name.to_owned(),
            line: line_no,
            what,
        };
        let [start, end] = fields[..] else {
            return Err(bad(format!(
                "expected 2 columns `start_ind,end_ind`, found {}",
                fields.len()
            )));
        };
        let parse = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| bad(format!("{s:?} is not a positive row number")))
        };
        let (start, end) = (parse(start)?, parse(end)?);
        if start == 0 || end < start {
            return Err(bad(format!(
                "row range {start}..={end} must be 1-based with start <= end"
            )));
        }
        ranges.push((start - 1, end));
    }
    Ok(ranges)
}

/// Cascade sizes listed by an index file (handy to calibrate synthetic data).
pub fn index_sizes(path: &Path) -> Result<Vec<usize>, DataError> {
    Ok(read_index(path)?.into_iter().map(|(s, e)| e - s).collect())
}

/// The NEWS data set in memory.
#[derive(Debug, Clone)]
pub struct NewsDataset {
    ranges: Vec<(usize, usize)>,
    rows: Vec<(f64, f64)>,
}

impl NewsDataset {
    /// Reads an index and a data file, checking that every range lies inside the data.
    pub fn load(index: &Path, data: &Path) -> Result<Self, DataError> {
        let ranges = read_index(index)?;
        let text = read(data)?;
        let mut data_rows = Vec::new();
        for (line_no, fields) in rows(&text) {
            let bad = |what: String| DataError::Format {
                path: data.display().to_string(),
                line: line_no,
                what,
            };
            let [t, m] = fields[..] else {
                return Err(bad(format!(
                    "expected 2 columns `time,magnitude`, found {}",
                    fields.len()
                )));
            };
            let parse = |s: &str, name: &str| match s.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                _ => Err(bad(format!("{name} {s:?} is not a number >= 0"))),
            };
            data_rows.push((parse(t, "time")?, parse(m, "magnitude")?));
        }
        if let Some((i, &(_, end))) = ranges
            .iter()
            .enumerate()
            .find(|(_, r)| r.1 > data_rows.len())
        {
            return Err(DataError::OutOfRange {
                index: index.display().to_string(),
                cascade: i + 1,
                end,
                data: data.display().to_string(),
                rows: data_rows.len(),
            });
        }
        Ok(Self {
            ranges,
            rows: data_rows,
        })
    }

    /// Number of cascades.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether there is no cascade.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Cascade `i`, times shifted so that its first tweet is at 0 and sorted.
    pub fn cascade(&self, i: usize) -> CascadeEvents {
        let (start, end) = self.ranges[i];
        let mut events = self.rows[start..end].to_vec();
        events.sort_by(|a, b| a.0.total_cmp(&b.0));
        let t0 = events.first().map_or(0.0, |e| e.0);
        for e in &mut events {
            e.0 -= t0;
        }
        CascadeEvents {
            events,
            origin: format!("news cascade {}", i + 1),
            day_phase: None,
        }
    }

    /// All cascades in file order.
    pub fn cascades(&self) -> impl Iterator<Item = CascadeEvents> + '_ {
        (0..self.len()).map(|i| self.cascade(i))
    }
}

fn read(path: &Path) -> Result<String, DataError> {
    crate::files::read_text(path)
}

/// Non-empty CSV rows with their 1-based line numbers, skipping a header line of non-numbers.
fn rows(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .filter(|(i, l)| {
            let is_header = *i == 0 && l.split(',').any(|f| f.trim().parse::<f64>().is_err());
            !is_header
        })
        .map(|(i, l)| (i + 1, l.split(',').collect()))
}
