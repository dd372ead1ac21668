//! Measuring and reporting helpers shared by the benchmarks of this crate (`bench/`,
//! `benches/`): client CPU time, medians, cachegrind's counts, and the sections of
//! `docs/benchmarks.md`.

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

/// Cachegrind's totals for one run (`valgrind --tool=cachegrind --cache-sim=yes`):
/// instructions, first-level instruction- and data-cache misses, last-level misses
/// (instruction and data together).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CacheCounts {
    /// Instructions executed (`I refs`).
    pub instructions: f64,
    /// First-level instruction-cache misses (`I1 misses`).
    pub i1: f64,
    /// First-level data-cache misses, reads and writes (`D1 misses`).
    pub d1: f64,
    /// Last-level misses (`LLi misses` + `LLd misses`).
    pub ll: f64,
}

impl CacheCounts {
    /// Reads the summary cachegrind prints on stderr (`==pid== I   refs:  1,234`);
    /// `None` when a line is missing.
    ///
    /// ```
    /// use authmux_integration_tests::bench::CacheCounts;
    /// let stderr = "==6411== I   refs:      454,362,972\n\
    ///               ==6411== I1  misses:     19,634,812\n\
    ///               ==6411== LLi misses:          8,153\n\
    ///               ==6411== D1  misses:      6,795,452  (  3,435,990 rd   +  3,359,462 wr)\n\
    ///               ==6411== LLd misses:         30,064  (      9,118 rd   +     20,946 wr)\n";
    /// let counts = CacheCounts::parse(stderr).unwrap();
    /// assert_eq!(counts.instructions, 454_362_972.0);
    /// assert_eq!(counts.i1, 19_634_812.0);
    /// assert_eq!(counts.d1, 6_795_452.0);
    /// assert_eq!(counts.ll, 38_217.0);
    /// assert_eq!(CacheCounts::parse("==1== I   refs: 12\n"), None);
    /// ```
    pub fn parse(stderr: &str) -> Option<CacheCounts> {
        let number = |key: &str| -> Option<f64> {
            let line = stderr
                .lines()
                .find_map(|l| l.split_once("== ")?.1.strip_prefix(key))?;
            let digits: String = line
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == ',')
                .filter(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        Some(CacheCounts {
            instructions: number("I   refs:")?,
            i1: number("I1  misses:")?,
            d1: number("D1  misses:")?,
            ll: number("LLi misses:")? + number("LLd misses:")?,
        })
    }

    /// `self - earlier`, over `requests` requests: per request when both ran the same
    /// setup and `self` ran `requests` more requests.
    pub fn per_request(self, earlier: CacheCounts, requests: f64) -> CacheCounts {
        CacheCounts {
            instructions: (self.instructions - earlier.instructions) / requests,
            i1: (self.i1 - earlier.i1) / requests,
            d1: (self.d1 - earlier.d1) / requests,
            ll: (self.ll - earlier.ll) / requests,
        }
    }
}
