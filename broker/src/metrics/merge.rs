//! Merging the shards' expositions into one, and a checker for the Prometheus text format
//! (0.0.4) used by the tests.
//!
//! Every shard registers the same families, so each shard's text has the same `# HELP` /
//! `# TYPE` headers with different samples (they differ by the `shard` label). A valid
//! exposition names each family once with all its samples together, so the merge groups the
//! samples by family, in the order families first appear, under one header each.

use std::collections::{HashMap, HashSet};

use thiserror::Error;

/// One family while merging: its header lines and its samples from every shard.
#[derive(Default)]
struct MergedFamily {
    help: Option<String>,
    kind: Option<String>,
    samples: Vec<String>,
}

/// Merges expositions (one per shard) into one in which every family appears once.
pub fn merge<S: AsRef<str>>(texts: &[S]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut families: HashMap<String, MergedFamily> = HashMap::new();
    for text in texts {
        // Samples before any header (never produced by our encoder) go to the family "".
        let mut current = String::new();
        for line in text.as_ref().lines() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if let Some((keyword, name, rest)) = header(line) {
                if name != current {
                    current = name.to_string();
                }
                let family = families.entry(current.clone()).or_insert_with(|| {
                    order.push(current.clone());
                    MergedFamily::default()
                });
                let slot = if keyword == "HELP" {
                    &mut family.help
                } else {
                    &mut family.kind
                };
                if slot.is_none() {
                    *slot = Some(format!("# {keyword} {name}{rest}"));
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let family = families.entry(current.clone()).or_insert_with(|| {
                order.push(current.clone());
                MergedFamily::default()
            });
            family.samples.push(line.to_string());
        }
    }
    let mut out = String::new();
    for name in &order {
        let Some(family) = families.get(name) else {
            continue;
        };
        for line in family.help.iter().chain(family.kind.iter()) {
            out.push_str(line);
            out.push('\n');
        }
        for sample in &family.samples {
            out.push_str(sample);
            out.push('\n');
        }
    }
    out
}

/// `# HELP name rest` / `# TYPE name rest` -> (keyword, name, rest with its leading space).
fn header(line: &str) -> Option<(&'static str, &str, &str)> {
    let (keyword, after) = if let Some(after) = line.strip_prefix("# HELP ") {
        ("HELP", after)
    } else if let Some(after) = line.strip_prefix("# TYPE ") {
        ("TYPE", after)
    } else {
        return None;
    };
    let end = after.find(' ').unwrap_or(after.len());
    let (name, rest) = after.split_at(end);
    (!name.is_empty()).then_some((keyword, name, rest))
}

/// Why an exposition is not valid.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct ExpositionError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: &'static str,
}

/// Checks the Prometheus text format rules a scraper relies on: each family's HELP and TYPE
/// at most once and before its samples, every sample named after the family it follows
/// (histograms: `_bucket`, `_sum`, `_count`), well-formed labels and values, no series twice.
pub fn check_exposition(text: &str) -> Result<(), ExpositionError> {
    let mut helps: HashSet<&str> = HashSet::new();
    let mut types: HashMap<&str, &str> = HashMap::new();
    let mut families_with_samples: HashSet<&str> = HashSet::new();
    let mut series: HashSet<(String, Labels)> = HashSet::new();
    let mut current: Option<&str> = None;
    for (index, line) in text.lines().enumerate() {
        let fail = |reason| ExpositionError {
            line: index + 1,
            reason,
        };
        if line.is_empty() {
            continue;
        }
        if let Some(after) = line.strip_prefix("# HELP ") {
            let name = after.split(' ').next().unwrap_or("");
            valid_name(name)
                .then_some(())
                .ok_or(fail("bad family name"))?;
            if !helps.insert(name) {
                return Err(fail("second HELP for a family"));
            }
            if families_with_samples.contains(name) {
                return Err(fail("HELP after the family's samples"));
            }
            current = Some(name);
            continue;
        }
        if let Some(after) = line.strip_prefix("# TYPE ") {
            let mut parts = after.split(' ');
            let name = parts.next().unwrap_or("");
            let kind = parts.next().unwrap_or("");
            valid_name(name)
                .then_some(())
                .ok_or(fail("bad family name"))?;
            if !matches!(
                kind,
                "counter" | "gauge" | "histogram" | "summary" | "untyped"
            ) {
                return Err(fail("unknown TYPE"));
            }
            if types.insert(name, kind).is_some() {
                return Err(fail("second TYPE for a family"));
            }
            if families_with_samples.contains(name) {
                return Err(fail("TYPE after the family's samples"));
            }
            current = Some(name);
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, labels, value) = parse_sample(line).ok_or(fail("malformed sample"))?;
        let family = current.ok_or(fail("sample before any family header"))?;
        let kind = types.get(family).copied().unwrap_or("untyped");
        let belongs = name == family
            || match kind {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(family)),
                "summary" => ["_sum", "_count"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(family)),
                _ => false,
            };
        if !belongs {
            return Err(fail("sample does not belong to the family it follows"));
        }
        if value.is_nan() && kind != "gauge" && kind != "untyped" {
            return Err(fail("NaN value"));
        }
        families_with_samples.insert(family);
        if !series.insert((name.to_string(), labels)) {
            return Err(fail("the same series twice"));
        }
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A sample's labels as (name, value) pairs, sorted.
type Labels = Vec<(String, String)>;

/// `name{label="value",...} value [timestamp]` -> (name, sorted labels, value).
fn parse_sample(line: &str) -> Option<(&str, Labels, f64)> {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = line.get(..name_end)?;
    if !valid_name(name) {
        return None;
    }
    let mut rest = line.get(name_end..)?;
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let mut fields = rest.strip_prefix(' ')?.split(' ');
    let value = match fields.next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        other => other.parse::<f64>().ok()?,
    };
    if let Some(timestamp) = fields.next() {
        timestamp.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    labels.sort();
    if labels.windows(2).any(|pair| pair[0].0 == pair[1].0) {
        return None;
    }
    Some((name, labels, value))
}

/// Parses `label="value",...}` (after the `{`); returns what follows the `}`.
fn parse_labels<'a>(mut text: &'a str, labels: &mut Labels) -> Option<&'a str> {
    loop {
        if let Some(after) = text.strip_prefix('}') {
            return Some(after);
        }
        let (label, after) = text.split_once('=')?;
        if !valid_name(label) || label.contains(':') {
            return None;
        }
        let mut chars = after.strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let close = loop {
            let (index, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    escaped @ ('\\' | '"') => value.push(escaped),
                    _ => return None,
                },
                '"' => break index,
                other => value.push(other),
            }
        };
        labels.push((label.to_string(), value));
        // `after` starts with the opening quote: the value ends at 1 + close.
        text = after.get(close + 2..)?;
        if let Some(next) = text.strip_prefix(',') {
            text = next;
        } else if !text.starts_with('}') {
            return None;
        }
    }
}
