//! Numbers to text: percentiles, best-of-rounds, and the one markdown table the bench
//! prints. Pure functions, so the arithmetic is unit-tested; must never do I/O.

use std::time::Duration;

/// Nearest-rank percentile of a sorted sample (`p` in 0..=100): the smallest value with at
/// least `p`% of the sample at or below it. `None` for an empty sample.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Which way a measurement improves, so "best of rounds" and the goals know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// Keeps the best value seen over the rounds.
pub fn best(values: &[f64], better: Better) -> Option<f64> {
    let it = values.iter().copied().filter(|v| v.is_finite());
    match better {
        Better::Lower => it.reduce(f64::min),
        Better::Higher => it.reduce(f64::max),
    }
}

/// A value to print: the number (`None`: not measured) and whether the run that produced
/// it had errors (printed with a `!` so it cannot be mistaken for a clean number).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cell {
    pub value: Option<f64>,
    pub errors: bool,
}

impl Cell {
    pub fn of(value: Option<f64>) -> Self {
        Self {
            value,
            errors: false,
        }
    }
}

/// One table row: a label, how many decimals, and one cell per column.
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub decimals: usize,
    pub cells: Vec<Cell>,
    /// For each ratio column after the cells: the indices of its numerator and
    /// denominator, `None` for a row without that ratio.
    pub ratios: Vec<Option<(usize, usize)>>,
}

fn number(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    // Thousands separators for the integer part, as the README's tables have them.
    let (int, frac) = s
        .split_once('.')
        .map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// `a / b` for the ratio column, or `None` when either is missing or `b` is zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

/// A markdown table: `columns` are the headers after the label column, then one column
/// per `ratio_headers`.
pub fn markdown(columns: &[&str], ratio_headers: &[&str], rows: &[Row]) -> String {
    let mut out = String::from("| |");
    for c in columns.iter().chain(ratio_headers) {
        out.push_str(&format!(" {c} |"));
    }
    out.push_str("\n|---|");
    for _ in 0..columns.len() + ratio_headers.len() {
        out.push_str("---|");
    }
    out.push('\n');
    for r in rows {
        out.push_str(&format!("| {} |", r.label));
        for i in 0..columns.len() {
            let c = r.cells.get(i).copied().unwrap_or_default();
            let text = match c.value {
                Some(v) => number(v, r.decimals),
                None => "—".into(),
            };
            let flag = if c.errors { " !" } else { "" };
            out.push_str(&format!(" {text}{flag} |"));
        }
        for i in 0..ratio_headers.len() {
            let q = r.ratios.get(i).copied().flatten().and_then(|(a, b)| {
                ratio(
                    r.cells.get(a).and_then(|c| c.value),
                    r.cells.get(b).and_then(|c| c.value),
                )
            });
            match q {
                Some(q) => out.push_str(&format!(" {q:.2}× |")),
                None => out.push_str(" — |"),
            }
        }
        out.push('\n');
    }
    out
}

/// A goal line: `value` compared with `limit` in the direction `better`.
pub fn goal(name: &str, value: Option<f64>, limit: f64, better: Better) -> String {
    let (op, ok) = match (better, value) {
        (Better::Lower, Some(v)) => ("≤", v <= limit),
        (Better::Higher, Some(v)) => ("≥", v >= limit),
        (Better::Lower, None) => ("≤", false),
        (Better::Higher, None) => ("≥", false),
    };
    match value {
        Some(v) => format!(
            "- {}: {name}: {v:.2} (goal {op} {limit})",
            if ok { "PASS" } else { "FAIL" }
        ),
        None => format!("- n/a: {name}: not measured (goal {op} {limit})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let s = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&s, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&s, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&s, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&s, 0.0), Some(Duration::from_millis(1)));
        // Small samples: p99 of three values is the largest, p50 the middle one.
        let s = ms(&[1, 2, 30]);
        assert_eq!(percentile(&s, 99.0), Some(Duration::from_millis(30)));
        assert_eq!(percentile(&s, 50.0), Some(Duration::from_millis(2)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn best_follows_the_direction_and_skips_nan() {
        assert_eq!(best(&[3.0, f64::NAN, 1.0, 2.0], Better::Lower), Some(1.0));
        assert_eq!(best(&[3.0, 1.0, f64::INFINITY], Better::Higher), Some(3.0));
        assert_eq!(best(&[], Better::Higher), None);
    }

    #[test]
    fn table_has_ratio_missing_cells_and_error_flags() {
        let rows = [
            Row {
                label: "c=64 req/s".into(),
                decimals: 0,
                cells: vec![
                    Cell::of(Some(45027.4)),
                    Cell::of(Some(20000.0)),
                    Cell {
                        value: Some(16000.0),
                        errors: true,
                    },
                ],
                ratios: vec![Some((2, 1)), Some((2, 0))],
            },
            Row {
                label: "100 MB MB/s".into(),
                decimals: 1,
                cells: vec![Cell::of(Some(1.24)), Cell::of(None), Cell::of(Some(3.0))],
                ratios: vec![Some((2, 1)), None],
            },
        ];
        let t = markdown(
            &["direct", "nginx", "gateway"],
            &["gateway / nginx", "gateway / direct"],
            &rows,
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "| | direct | nginx | gateway | gateway / nginx | gateway / direct |"
        );
        assert_eq!(lines[1], "|---|---|---|---|---|---|");
        assert_eq!(
            lines[2],
            "| c=64 req/s | 45,027 | 20,000 | 16,000 ! | 0.80× | 0.36× |"
        );
        assert_eq!(lines[3], "| 100 MB MB/s | 1.2 | — | 3.0 | — | — |");
    }

    #[test]
    fn goals_pass_and_fail_at_the_limit() {
        assert!(goal("p50", Some(1.5), 1.5, Better::Lower).starts_with("- PASS"));
        assert!(goal("p50", Some(1.51), 1.5, Better::Lower).starts_with("- FAIL"));
        assert!(goal("rate", Some(0.79), 0.8, Better::Higher).starts_with("- FAIL"));
        assert!(goal("rate", None, 0.8, Better::Higher).starts_with("- n/a"));
        assert_eq!(number(-1234567.0, 0), "-1,234,567");
    }
}
