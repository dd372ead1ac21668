//! What commands print on standard output: plain lines, aligned tables, JSON, and
//! human wording for durations and expiry. Write errors (a closed pipe, as in
//! `authmux status | head -1`) are ignored: the exit code still tells the outcome.

use std::io::Write;
use std::time::{Duration, SystemTime};

/// Prints one line on standard output.
pub(crate) fn say(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Prints a value as pretty JSON on standard output.
pub(crate) fn json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    say(&text);
}

/// `1h 2m`, `14m 59s`, `3s`.
pub(crate) fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// `in 14m 59s` or `5s ago`, relative to `now`.
pub(crate) fn relative(at: SystemTime, now: SystemTime) -> String {
    match at.duration_since(now) {
        Ok(ahead) => format!("in {}", duration(ahead)),
        Err(behind) => format!("{} ago", duration(behind.duration())),
    }
}

/// Rows aligned in columns, the first row being the header, with a rule under it.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: &[String]| {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| format!("{cell:<width$}", width = widths[c]))
            .collect();
        format!("  {}", cells.join("  ").trim_end())
    };
    let mut out = Vec::new();
    if let Some((header, body)) = rows.split_first() {
        out.push(line(header));
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push(line(&rule));
        out.extend(body.iter().map(|r| line(r)));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(Duration::from_secs(3)), "3s");
        assert_eq!(duration(Duration::from_secs(899)), "14m 59s");
        assert_eq!(duration(Duration::from_secs(3720)), "1h 2m");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(relative(now + Duration::from_secs(90), now), "in 1m 30s");
        assert_eq!(relative(now - Duration::from_secs(5), now), "5s ago");
    }

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["step".to_owned(), "result".to_owned()],
            vec!["sign in".to_owned(), "ok".to_owned()],
        ];
        assert_eq!(
            table(&rows),
            "  step     result\n  -------  ------\n  sign in  ok"
        );
    }
}
