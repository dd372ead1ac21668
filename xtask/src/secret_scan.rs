//! The secret scan of all test output (`cargo xtask ci`, inside the test step).
//!
//! The test step runs the whole suite once with `RUST_LOG=trace` (the test kit's fakes
//! install a TRACE subscriber writing into each test's captured output) and
//! `AUTHMUX_SECRET_LOG=<file>` (the fakes append every secret they issue or hold:
//! tokens, refresh tokens, codes, reset tokens, their users' passwords; see
//! `authmux_testkit::secret_log`), under nextest's `ci` profile, whose JUnit report
//! keeps the captured output of every test, passing ones included
//! (`.config/nextest.toml`). This module then reads both and fails if any recorded
//! secret appears in any test's output, naming the test (never the secret).
//!
//! Matching: the output is cut into words of letters, digits and `-_.~` (what tokens
//! and codes are made of); a secret made only of those characters leaks when a word,
//! or a word without its leading and trailing dots, is exactly it (so a six-digit code
//! is not found inside a longer number). Secrets with other characters (passwords
//! with spaces) are searched as plain substrings. Secrets shorter than
//! [`MIN_SECRET_LEN`] are ignored.

use std::collections::HashMap;
use std::path::Path;

use crate::Result;

/// Recorded secrets shorter than this are not searched for (too likely by chance).
pub(crate) const MIN_SECRET_LEN: usize = 6;

/// One test's captured output, from the JUnit report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TestOutput {
    /// `<binary> <test name>`, as nextest names the test.
    pub(crate) test: String,
    /// Everything the report holds for the test (stdout, stderr, failure text),
    /// unescaped.
    pub(crate) text: String,
}

/// A secret found in a test's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Leak {
    /// The test whose output holds it.
    pub(crate) test: String,
    /// Its line in the secret log (1-based), so it can be looked up there.
    pub(crate) line: usize,
    /// Its length.
    pub(crate) len: usize,
}

/// What a scan looked at and found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scan {
    /// Secrets searched for.
    pub(crate) secrets: usize,
    /// Tests whose output was read.
    pub(crate) tests: usize,
    /// Bytes of output read.
    pub(crate) bytes: usize,
    /// Every leak, in test order.
    pub(crate) leaks: Vec<Leak>,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~')
}

/// The secrets of a secret log (one per line), with their line numbers; duplicates
/// and short ones dropped.
pub(crate) fn parse_secrets(log: &str) -> Vec<(usize, String)> {
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    for (i, line) in log.lines().enumerate() {
        if line.chars().count() >= MIN_SECRET_LEN && seen.insert(line, ()).is_none() {
            out.push((i + 1, line.to_owned()));
        }
    }
    out
}

/// The leaks of `secrets` in `outputs`.
pub(crate) fn find_leaks(outputs: &[TestOutput], secrets: &[(usize, String)]) -> Vec<Leak> {
    let mut words: HashMap<&str, (usize, usize)> = HashMap::new();
    let mut others = Vec::new();
    for (line, secret) in secrets {
        if secret.chars().all(is_word_char) {
            words.insert(secret.as_str(), (*line, secret.len()));
        } else {
            others.push((*line, secret.as_str()));
        }
    }
    let mut leaks = Vec::new();
    for output in outputs {
        let mut found: Vec<(usize, usize)> = Vec::new();
        for word in output.text.split(|c: char| !is_word_char(c)) {
            for candidate in [word, word.trim_matches('.')] {
                if let Some(hit) = words.get(candidate)
                    && !found.contains(hit)
                {
                    found.push(*hit);
                }
            }
        }
        for (line, secret) in &others {
            if output.text.contains(secret) {
                found.push((*line, secret.len()));
            }
        }
        found.sort_unstable();
        leaks.extend(found.into_iter().map(|(line, len)| Leak {
            test: output.test.clone(),
            line,
            len,
        }));
    }
    leaks
}

/// Undoes XML escaping (`&lt;`, `&amp;`, `&#10;`, `&#x1b;`, ...) and CDATA markers.
fn unescape(text: &str) -> String {
    let text = text.replace("<![CDATA[", "").replace("]]>", "");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';').filter(|end| *end <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|hex| u32::from_str_radix(hex, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse))
                .and_then(std::result::Result::ok)
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The value of attribute `name` in an element's opening tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = tag[start..].find('"')?;
    Some(unescape(&tag[start..start + len]))
}

/// Every test case of a JUnit report with all the text it holds.
pub(crate) fn parse_junit(xml: &str) -> Vec<TestOutput> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(at) = rest.find("<testcase") {
        rest = &rest[at..];
        let Some(tag_end) = rest.find('>') else { break };
        let tag = &rest[..tag_end];
        let name = attribute(tag, "name").unwrap_or_default();
        let class = attribute(tag, "classname").unwrap_or_default();
        let test = if class.is_empty() {
            name
        } else {
            format!("{class} {name}")
        };
        if tag.ends_with('/') {
            out.push(TestOutput {
                test,
                text: String::new(),
            });
            rest = &rest[tag_end..];
            continue;
        }
        let body_end = rest.find("</testcase>").unwrap_or(rest.len());
        let body = &rest[tag_end + 1..body_end];
        out.push(TestOutput {
            test,
            text: unescape(body),
        });
        rest = &rest[body_end..];
    }
    out
}

/// Scans the JUnit report at `junit` for the secrets logged at `secret_log`.
pub(crate) fn scan_files(junit: &Path, secret_log: &Path) -> Result<Scan> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .map_err(|e| format!("secret scan: cannot read {what} {}: {e}", path.display()))
    };
    let secrets = parse_secrets(&read(secret_log, "the secret log")?);
    let outputs = parse_junit(&read(junit, "the JUnit report")?);
    if secrets.is_empty() {
        return Err(format!(
            "secret scan: {} recorded no secret: the fakes did not record (is \
             AUTHMUX_SECRET_LOG reaching the tests?), so the scan would prove nothing",
            secret_log.display()
        ));
    }
    if outputs.is_empty() {
        return Err(format!(
            "secret scan: {} holds no test case",
            junit.display()
        ));
    }
    Ok(Scan {
        secrets: secrets.len(),
        tests: outputs.len(),
        bytes: outputs.iter().map(|o| o.text.len()).sum(),
        leaks: find_leaks(&outputs, &secrets),
    })
}

/// `cargo xtask secret-scan`: scans the report and record of the last run of the `ci`
/// nextest profile with `AUTHMUX_SECRET_LOG=target/secret-scan/secrets.txt` (what
/// `cargo xtask ci` does; by hand, for a subset of the suite).
pub(crate) fn main(args: &[String]) -> Result {
    if let Some(arg) = args.first() {
        return Err(format!(
            "unknown secret-scan argument `{arg}`\n\n{}",
            crate::USAGE
        ));
    }
    let target = crate::ci::target_dir();
    let secret_log = target.join("secret-scan").join("secrets.txt");
    let scan = scan_files(
        &target.join("nextest").join("ci").join("junit.xml"),
        &secret_log,
    )?;
    println!("xtask: {}", verdict(&scan, &secret_log)?);
    Ok(())
}

/// The scan as a step result: `Ok` with a summary line, or the leaks as the error.
pub(crate) fn verdict(scan: &Scan, secret_log: &Path) -> Result<String> {
    let summary = format!(
        "{} recorded secrets searched in the output of {} tests ({:.1} MB at TRACE)",
        scan.secrets,
        scan.tests,
        scan.bytes as f64 / 1e6
    );
    if scan.leaks.is_empty() {
        return Ok(format!("secret scan: no leak: {summary}"));
    }
    let mut message = format!("secret scan: {} leaks in {summary}:", scan.leaks.len());
    for leak in &scan.leaks {
        message.push_str(&format!(
            "\n  test `{}` printed a secret ({} chars; line {} of {})",
            leak.test,
            leak.len,
            leak.line,
            secret_log.display()
        ));
    }
    Err(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLANTED: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";

    fn junit(cases: &[(&str, &str, &str)]) -> String {
        let mut xml = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"nextest-run\">\n\
             <testsuite name=\"authmux-core::manager\" tests=\"2\">\n",
        );
        for (class, name, output) in cases {
            xml.push_str(&format!(
                "<testcase name=\"{name}\" classname=\"{class}\" time=\"0.1\">\
                 <system-out>{output}</system-out><system-err></system-err></testcase>\n"
            ));
        }
        xml.push_str(
            "<testcase name=\"empty\" classname=\"x\" time=\"0\"/>\n</testsuite></testsuites>\n",
        );
        xml
    }

    #[test]
    fn a_planted_secret_fails_the_scan_and_names_the_test() {
        let xml = junit(&[
            (
                "authmux-core::manager",
                "clean",
                "TRACE hyper: sending request\n",
            ),
            (
                "authmux-core::manager",
                "leaky",
                &format!("TRACE authmux: header authorization: Bearer {PLANTED}\n"),
            ),
        ]);
        let dir = std::env::temp_dir().join(format!("xtask-secret-scan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (report, log) = (dir.join("junit.xml"), dir.join("secrets.txt"));
        std::fs::write(&report, xml).unwrap();
        std::fs::write(&log, format!("short\n{PLANTED}\nnever-printed-token-123\n")).unwrap();
        let scan = scan_files(&report, &log).unwrap();
        assert_eq!(scan.tests, 3);
        assert_eq!(scan.secrets, 2, "`short` is under the minimum length");
        assert_eq!(
            scan.leaks,
            vec![Leak {
                test: "authmux-core::manager leaky".into(),
                line: 2,
                len: PLANTED.len()
            }]
        );
        let message = verdict(&scan, &log).unwrap_err();
        assert!(message.contains("authmux-core::manager leaky"), "{message}");
        assert!(
            !message.contains(PLANTED),
            "the report must not print the secret"
        );

        // Without the planted line, the same report passes.
        std::fs::write(&log, "never-printed-token-123\n").unwrap();
        let scan = scan_files(&report, &log).unwrap();
        assert!(verdict(&scan, &log).is_ok());
        // An empty secret log proves nothing: an error, not a pass.
        std::fs::write(&log, "").unwrap();
        assert!(scan_files(&report, &log).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn escaped_output_passwords_and_word_boundaries() {
        let outputs = parse_junit(&junit(&[
            (
                "a",
                "escaped",
                "body: {&quot;password&quot;:&quot;correct horse battery&quot;}",
            ),
            ("a", "code", "code=123456 at 0.5s"),
            ("a", "longer-number", "pid 91234567 took 1234567ns"),
            ("a", "end-of-sentence", "the token is tok-en_12.34."),
            ("a", "cdata", "<![CDATA[Bearer abcdef&lt;]]>"),
        ]));
        assert_eq!(outputs.len(), 6);
        assert!(outputs[0].text.contains("\"correct horse battery\""));
        let secrets =
            parse_secrets("correct horse battery\n123456\n234567\ntok-en_12.34\nabcdef<\n");
        let leaks: Vec<String> = find_leaks(&outputs, &secrets)
            .into_iter()
            .map(|l| format!("{} {}", l.test, l.line))
            .collect();
        assert_eq!(
            leaks,
            vec![
                "a escaped 1",
                "a code 2",
                "a end-of-sentence 4",
                "a cdata 5"
            ]
        );
    }

    #[test]
    fn unescapes_entities() {
        assert_eq!(
            unescape("a &lt;b&gt; &amp;&#10;&#x41; &bogus; & x"),
            "a <b> &\nA &bogus; & x"
        );
    }
}
