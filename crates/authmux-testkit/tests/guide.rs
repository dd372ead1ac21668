//! `docs/writing-an-adapter.md` quotes the worked example verbatim: every Rust block in
//! the guide is a piece of `examples/toy_adapter.rs`, which compiles and passes the
//! conformance suite (it is an example target, a doc test of the crate, and
//! `tests/custom_adapter.rs` includes it).
//! So the guide cannot drift from the API.

const GUIDE: &str = include_str!("../../../docs/writing-an-adapter.md");
const EXAMPLE: &str = include_str!("../examples/toy_adapter.rs");

/// The fenced blocks of `markdown` whose info string is `lang`.
fn blocks<'a>(markdown: &'a str, lang: &str) -> Vec<&'a str> {
    let fence = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut rest = markdown;
    while let Some(start) = rest.find(&fence) {
        let body = &rest[start + fence.len()..];
        let end = body.find("\n```").expect("every block is closed");
        out.push(&body[..end]);
        rest = &body[end + 4..];
    }
    out
}

#[test]
fn every_rust_block_of_the_guide_is_quoted_from_the_worked_example() {
    let rust = blocks(GUIDE, "rust");
    assert!(rust.len() >= 8, "the guide walks through the example");
    for block in rust {
        assert!(
            EXAMPLE.contains(block),
            "this block of docs/writing-an-adapter.md is not in examples/toy_adapter.rs:\n{block}"
        );
    }
    // No block escapes the check under another info string.
    for lang in ["rust,ignore", "rust,no_run", "rs"] {
        assert!(blocks(GUIDE, lang).is_empty(), "a ```{lang} block");
    }
}

#[test]
fn the_guide_s_dependency_list_is_one_line() {
    let toml = blocks(GUIDE, "toml");
    assert_eq!(toml.len(), 1);
    let dependencies: Vec<&str> = toml[0]
        .split("[dev-dependencies]")
        .next()
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('['))
        .collect();
    assert_eq!(dependencies.len(), 1, "{dependencies:?}");
    assert!(dependencies[0].starts_with("authmux-core = "));
    // And the example indeed uses nothing else but the core, std and the test kit.
    for line in EXAMPLE.lines().filter(|l| l.starts_with("use ")) {
        assert!(
            ["use std::", "use authmux_core::", "use authmux_testkit::"]
                .iter()
                .any(|p| line.starts_with(p)),
            "{line}"
        );
    }
}
