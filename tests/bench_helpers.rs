//! Measuring and reporting helpers shared by the benchmarks of this crate (`bench/`,
//! `benches/`): client CPU time, medians, and the sections of `docs/benchmarks.md`.

use std::path::Path;
use std::time::Duration;

/// CPU time this process's threads have used so far: the sum of each thread's on-CPU
/// nanoseconds from `/proc/self/task/*/schedstat` (Linux). A thread that already exited
/// is not counted, so measure across threads that live throughout (a tokio runtime's
/// workers).
pub fn cpu_time() -> Duration {
    let mut total = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) {
                total += stat
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(total)
}

/// User and system time this process has used so far (all its threads, exited ones
/// included), in clock ticks (`/proc/self/stat` fields 14 and 15; 100 per second on
/// Linux). Coarse per call: sum it over many runs.
pub fn user_and_system_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let field = |n: usize| {
        rest.split_whitespace()
            .nth(n)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // `rest` starts at field 3 (the state): utime is field 14, stime field 15.
    (field(11), field(12))
}

/// The median of `values` (the upper one of the two middle values for an even count);
/// `NaN` when there are none.
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Replaces the section between `<!-- <name>:begin -->` and `<!-- <name>:end -->` in
/// the file at `path` with `body`, or appends it under a `## <heading>` when the markers
/// are not there yet, so that each benchmark owns its part of the file.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("write-section-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("benchmarks.md");
/// std::fs::write(&path, "# Benchmarks\n").unwrap();
/// authmux_integration_tests::bench::write_section(&path, "x", "X", "first\n").unwrap();
/// authmux_integration_tests::bench::write_section(&path, "x", "X", "second\n").unwrap();
/// let text = std::fs::read_to_string(&path).unwrap();
/// assert_eq!(text, "# Benchmarks\n\n## X\n\n<!-- x:begin -->\nsecond\n<!-- x:end -->\n");
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn write_section(path: &Path, name: &str, heading: &str, body: &str) -> std::io::Result<()> {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "# Benchmarks\n".to_owned(),
        Err(e) => return Err(e),
    };
    let block = format!("{begin}\n{body}{end}");
    let new = match (text.find(&begin), text.find(&end)) {
        (Some(b), Some(e)) if b < e => format!("{}{block}{}", &text[..b], &text[e + end.len()..]),
        _ => format!("{}\n\n## {heading}\n\n{block}\n", text.trim_end()),
    };
    std::fs::write(path, new)
}
