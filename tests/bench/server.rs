//! The integrations benchmark's server, in a process of its own so that the client's
//! CPU time is the client's alone: a `StreamServer` (`GET /hello`) requiring
//! `Authorization: Bearer <first argument>`. Prints its base URL on one line, then
//! serves until its standard input closes.

#![allow(
    clippy::print_stdout,
    reason = "the base URL goes to the parent on stdout"
)]

use std::io::{Read, Write};

fn main() -> std::io::Result<()> {
    let token = std::env::args()
        .nth(1)
        .expect("usage: authmux-bench-server <token>");
    let server = authmux_testkit::StreamServer::spawn(Some(token), 0)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", server.base_url())?;
    out.flush()?;
    drop(out);
    // Serve until the parent closes our stdin (or dies).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    Ok(())
}
