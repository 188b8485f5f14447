//! The provisioned Grafana files: data sources, dashboards, the queries of their panels and
//! variables, and the metric names a PromQL expression uses.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use super::servers::repo_root;

/// A provisioned data source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DataSource {
    /// Display name.
    pub name: String,
    /// Plugin type (prometheus, loki).
    pub kind: String,
    /// The uid dashboards refer to.
    pub uid: String,
    /// Where Grafana reaches it.
    pub url: String,
}

/// The data sources of grafana/provisioning/datasources/*.yml. A small reader for the flat
/// `datasources:` list these files use (keys of each `- name:` item, at the item's indentation):
/// no YAML crate is in the workspace.
pub(crate) fn provisioned_datasources() -> Vec<DataSource> {
    let dir = repo_root().join("grafana/provisioning/datasources");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read datasources");
        let mut item_indent = None;
        let mut current: Option<DataSource> = None;
        for line in text.lines() {
            let content = line.split(" #").next().unwrap_or("").trim_end();
            if content.trim_start().starts_with('#') || content.trim().is_empty() {
                continue;
            }
            let indent = content.len() - content.trim_start().len();
            let mut body = content.trim_start();
            let mut key_indent = indent;
            if let Some(rest) = body.strip_prefix("- ") {
                if rest.starts_with("name:") {
                    out.extend(current.take());
                    current = Some(DataSource {
                        name: String::new(),
                        kind: String::new(),
                        uid: String::new(),
                        url: String::new(),
                    });
                    item_indent = Some(indent + 2);
                }
                body = rest;
                key_indent = indent + 2;
            }
            let (Some(ds), Some(want)) = (current.as_mut(), item_indent) else {
                continue;
            };
            if key_indent < want {
                out.extend(current.take());
                item_indent = None;
                continue;
            }
            if key_indent != want {
                continue;
            }
            let Some((key, value)) = body.split_once(':') else {
                continue;
            };
            let value = value.trim().trim_matches('"').trim_matches('\'').to_owned();
            match key.trim() {
                "name" => ds.name = value,
                "type" => ds.kind = value,
                "uid" => ds.uid = value,
                "url" => ds.url = value,
                _ => {}
            }
        }
        out.extend(current);
    }
    out
}

/// One dashboard file.
pub(crate) struct Dashboard {
    /// File name.
    pub file: String,
    /// Its parsed JSON.
    pub json: Value,
}

impl Dashboard {
    /// The dashboard uid.
    pub(crate) fn uid(&self) -> &str {
        self.json["uid"].as_str().unwrap_or("")
    }
}

/// Every grafana/dashboards/*.json, parsed (panics naming the file on invalid JSON).
pub(crate) fn dashboards() -> Vec<Dashboard> {
    let dir = repo_root().join("grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read dashboard");
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
            Dashboard {
                file: path
                    .file_name()
                    .expect("file name")
                    .to_string_lossy()
                    .into_owned(),
                json,
            }
        })
        .collect()
}

/// Every panel, rows' nested panels included, in file order.
pub(crate) fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// What a query belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueryKind {
    /// A panel target.
    Target,
    /// A query variable: `label_values(<expr>, <label>)`.
    Variable {
        /// The label whose values the variable lists.
        label: String,
    },
}

/// A query of a dashboard.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    /// `<dashboard uid>: <panel title> [<refId>]` or `<dashboard uid>: $<variable>`.
    pub id: String,
    /// Target or variable.
    pub kind: QueryKind,
    /// Data source (type, uid) it runs on.
    pub datasource: (String, String),
    /// The expression (PromQL or LogQL) with Grafana variables left in; for a variable, the
    /// series selector of its `label_values`.
    pub expr: String,
}

fn datasource_of(value: &Value) -> Option<(String, String)> {
    Some((
        value["type"].as_str()?.to_owned(),
        value["uid"].as_str()?.to_owned(),
    ))
}

/// The data source a dashboard's reference (`{"type": …, "uid": …}`) runs on. A uid `${name}` or
/// `$name` names a data source variable of the dashboard (`"type": "datasource"`, its `query` the
/// plugin type): it resolves to the provisioned data source of that type, the one Grafana selects
/// by default. None for a variable that does not exist or is of another type.
pub(crate) fn resolve_datasource(dashboard: &Value, reference: &Value) -> Option<(String, String)> {
    let (kind, uid) = datasource_of(reference)?;
    let Some(name) = uid.strip_prefix('$') else {
        return Some((kind, uid));
    };
    let name = name.trim_start_matches('{').trim_end_matches('}');
    let variable = dashboard["templating"]["list"]
        .as_array()?
        .iter()
        .find(|v| v["type"] == "datasource" && v["name"] == name)?;
    if variable["query"].as_str()? != kind {
        return None;
    }
    let provisioned = provisioned_datasources();
    let source = provisioned.iter().find(|d| d.kind == kind)?;
    Some((kind, source.uid.clone()))
}

/// Splits `label_values(<expr>, <label>)` into its parts.
pub(crate) fn label_values_parts(definition: &str) -> Option<(String, String)> {
    let inner = definition
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (expr, label) = inner.rsplit_once(',')?;
    Some((expr.trim().to_owned(), label.trim().to_owned()))
}

/// Every query of a dashboard: panel targets and query variables.
pub(crate) fn queries(dashboard: &Dashboard) -> Vec<Query> {
    let uid = dashboard.uid();
    let mut out = Vec::new();
    let resolve = |reference: &Value| resolve_datasource(&dashboard.json, reference);
    for panel in panels(&dashboard.json) {
        let panel_ds = resolve(&panel["datasource"]);
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let Some(expr) = target["expr"].as_str() else {
                continue;
            };
            let datasource = resolve(&target["datasource"])
                .or_else(|| panel_ds.clone())
                .unwrap_or_default();
            out.push(Query {
                id: format!(
                    "{uid}: {title} [{}]",
                    target["refId"].as_str().unwrap_or("?")
                ),
                kind: QueryKind::Target,
                datasource,
                expr: expr.to_owned(),
            });
        }
    }
    for variable in dashboard.json["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let name = variable["name"].as_str().unwrap_or("?");
        let definition = match &variable["query"] {
            Value::String(s) => s.clone(),
            Value::Object(o) => match (o.get("query"), o.get("label"), o.get("stream")) {
                (Some(Value::String(q)), _, _) => q.clone(),
                (_, Some(Value::String(label)), stream) => format!(
                    "label_values({}, {label})",
                    stream.and_then(Value::as_str).unwrap_or("")
                ),
                _ => variable["definition"].as_str().unwrap_or("").to_owned(),
            },
            _ => variable["definition"].as_str().unwrap_or("").to_owned(),
        };
        let (expr, label) = label_values_parts(&definition).unwrap_or_else(|| {
            panic!("{uid}: ${name}: expected a label_values(<selector>, <label>) query, got {definition:?}")
        });
        out.push(Query {
            id: format!("{uid}: ${name}"),
            kind: QueryKind::Variable { label },
            datasource: resolve(&variable["datasource"]).unwrap_or_default(),
            expr,
        });
    }
    out
}

/// The concrete values the tests give the dashboards' variables. A variable missing here makes
/// [`substitute`] panic: add it when a dashboard gains one.
pub(crate) const VARIABLE_VALUES: &[(&str, &str)] = &[
    ("__rate_interval", "1m"),
    ("__interval", "15s"),
    ("__range", "10m"),
    ("job", "tweetoscope"),
    ("instance", ".*"),
    ("stage", "collector"),
    ("window", "600"),
    ("process", "run"),
    ("level", "info"),
    ("search", ""),
];

/// Replaces `$name`, `${name}` and `${name:format}` by [`VARIABLE_VALUES`].
pub(crate) fn substitute(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in {expr:?}"));
            let name = braced[..end].split(':').next().unwrap_or("");
            (name, end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        let value = VARIABLE_VALUES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| {
                panic!(
                    "no test value for the variable ${name} of {expr:?}: add it to VARIABLE_VALUES"
                )
            });
        out.push_str(value);
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "atan2",
    "inf",
    "nan",
    // Aggregation operators, which may be followed by `by (...)` instead of their `(`.
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression selects: identifiers that are neither functions nor
/// keywords, outside strings, label matchers, ranges and label lists.
pub(crate) fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_string = |i: usize| -> usize {
        let quote = chars[i];
        let mut j = i + 1;
        while j < chars.len() && chars[j] != quote {
            if chars[j] == '\\' && quote != '`' {
                j += 1;
            }
            j += 1;
        }
        j + 1
    };
    let skip_group = |i: usize, open: char, close: char| -> usize {
        let mut depth = 0;
        let mut j = i;
        while j < chars.len() {
            match chars[j] {
                '"' | '\'' | '`' => {
                    j = skip_string(j);
                    continue;
                }
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return j + 1;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(i),
            '{' => i = skip_group(i, '{', '}'),
            '[' => i = skip_group(i, '[', ']'),
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                while i < chars.len() {
                    let d = chars[i];
                    if (d == 'e' || d == 'E') && matches!(chars.get(i + 1), Some('+' | '-')) {
                        i += 2;
                    } else if d.is_ascii_alphanumeric() || d == '.' || d == '_' {
                        i += 1;
                    } else {
                        break;
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let lower = word.to_ascii_lowercase();
                if LABEL_LISTS.contains(&lower.as_str()) {
                    if chars.get(j) == Some(&'(') {
                        i = skip_group(j, '(', ')');
                    }
                } else if chars.get(j) == Some(&'(') || KEYWORDS.contains(&lower.as_str()) {
                    // A function, an aggregation or a keyword.
                } else {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn metric_names_skips_functions_labels_strings_and_numbers() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (stage, le) (rate(a_bucket{stage=~"x|y", le!="1e3"}[5m])))
           / on (stage) group_left (topic) b_total offset 10m > 1e-3 and bool c:d:e unless sum(f) without (g) * 60"#,
    );
    let expected: BTreeSet<String> = ["a_bucket", "b_total", "c:d:e", "f"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(names, expected);
    assert_eq!(
        substitute(r#"rate(x{stage=~"$stage", w="${window}"}[$__rate_interval])"#),
        r#"rate(x{stage=~"collector", w="600"}[1m])"#
    );
    assert_eq!(
        label_values_parts("label_values(up{job=\"a,b\"}, stage)"),
        Some(("up{job=\"a,b\"}".into(), "stage".into()))
    );
}
