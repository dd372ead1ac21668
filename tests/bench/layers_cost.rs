//! What the layers add per request without the noise of CPU time: with
//! `AUTHMUX_BENCH_VALGRIND` set to a valgrind binary (`cargo xtask layers-cost` installs
//! Debian's valgrind and sets it), the layers bench runs each client alone under
//! cachegrind instead of timing them.
//!
//! Cachegrind counts every instruction of the client process and simulates its caches
//! (32 KiB, 8-way first-level instruction and data caches, a last-level cache), the same
//! in every run but for where the code and heap lie. Each client runs alone
//! (`AUTHMUX_BENCH_PROFILE`) for 3 rounds and for 6; the difference over the 3 rounds'
//! requests is its count per request, with setup (the server, the clients, the
//! certificates reqwest loads) cancelled. The cost is a rough model of cycles:
//! instructions + 10 x first-level misses + 100 x last-level misses. The control (the
//! static-header hyper-util client measured twice) shows how far two runs of the same
//! client land. Kernel time is not counted: every client here makes the same system
//! calls per request.
//!
//! Writes its section of `docs/benchmarks.md` (between `<!-- layers-cost:begin -->` and
//! `<!-- layers-cost:end -->`).

use std::path::Path;
use std::process::Command;

use authmux_integration_tests::bench::CacheCounts;

use super::{CALLERS, CPU_GOAL, PER_CALLER, Variant, publish};

/// The rounds of the two runs of each client: per request is their difference.
const ROUNDS: [usize; 2] = [3, 6];
/// The cost model's weight of a first-level cache miss, in instructions...
const L1_MISS: f64 = 10.0;
/// ... and of a last-level one.
const LL_MISS: f64 = 100.0;

/// The clients measured, in the order of the report.
const CLIENTS: [Variant; 5] = [
    Variant::BareMiddleware,
    Variant::AuthMiddleware,
    Variant::Hyper,
    Variant::AuthLayer,
    Variant::HyperControl,
];

/// The comparisons: (label, baseline, compared).
const COMPARISONS: [(&str, Variant, Variant); 3] = [
    (
        "`AuthMiddleware` vs the same reqwest-middleware client with a static header",
        Variant::BareMiddleware,
        Variant::AuthMiddleware,
    ),
    (
        "`AuthLayer` vs the same hyper-util client with a static header",
        Variant::Hyper,
        Variant::AuthLayer,
    ),
    (
        "control: the same hyper-util client vs itself",
        Variant::Hyper,
        Variant::HyperControl,
    ),
];

/// The cost model: roughly cycles.
fn cost(c: CacheCounts) -> f64 {
    c.instructions + L1_MISS * (c.i1 + c.d1) + LL_MISS * c.ll
}

/// One client alone for `rounds` rounds under cachegrind.
fn run(valgrind: &Path, variant: Variant, rounds: usize) -> CacheCounts {
    let output = Command::new(valgrind)
        .args([
            "--tool=cachegrind",
            "--cache-sim=yes",
            "--cachegrind-out-file=/dev/null",
        ])
        .arg(std::env::current_exe().expect("this benchmark's path"))
        .arg("--bench")
        .env_remove("AUTHMUX_BENCH_VALGRIND")
        .env("AUTHMUX_BENCH_PROFILE", variant.name())
        .env("AUTHMUX_BENCH_PROFILE_ROUNDS", rounds.to_string())
        .env("AUTHMUX_BENCH_REQUESTS_PER_CALLER", PER_CALLER.to_string())
        .output()
        .expect("valgrind runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} under cachegrind failed:\n{stderr}",
        variant.name()
    );
    CacheCounts::parse(&stderr)
        .unwrap_or_else(|| panic!("no cachegrind summary for {}:\n{stderr}", variant.name()))
}

/// Measures every client (two runs at a time, one per core), prints the report and
/// writes it to `docs/benchmarks.md`.
pub(crate) fn report(valgrind: &Path) {
    let jobs: Vec<(Variant, usize)> = CLIENTS
        .iter()
        .flat_map(|&v| ROUNDS.map(|r| (v, r)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(&(variant, rounds)) = jobs.get(i) else {
                        break;
                    };
                    eprintln!("cachegrind: {} for {rounds} rounds", variant.name());
                    let counts = run(valgrind, variant, rounds);
                    results.lock().unwrap().push((variant, rounds, counts));
                }
            });
        }
    });
    let results = results.into_inner().unwrap();
    let requests = ((ROUNDS[1] - ROUNDS[0]) * CALLERS * PER_CALLER) as f64;
    let per_request = |variant: Variant| {
        let counts = |rounds| {
            results
                .iter()
                .find(|(v, r, _)| *v == variant && *r == rounds)
                .map(|(_, _, c)| *c)
                .expect("every client ran")
        };
        counts(ROUNDS[1]).per_request(counts(ROUNDS[0]), requests)
    };
    let mut rows = String::new();
    for variant in CLIENTS {
        let c = per_request(variant);
        rows.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.0} |\n",
            variant.label(),
            c.instructions,
            c.i1,
            c.d1,
            // A difference of two near-zero counts: no "-0.0".
            c.ll + 0.0,
            cost(c)
        ));
    }
    let mut ratios = String::new();
    for (label, a, b) in COMPARISONS {
        let (a, b) = (per_request(a), per_request(b));
        ratios.push_str(&format!(
            "| {label} | {:.3}x | {:.3}x | {:.3}x | {:.3}x |\n",
            cost(b) / cost(a),
            b.instructions / a.instructions,
            b.i1 / a.i1,
            b.d1 / a.d1,
        ));
    }
    let commit = Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "an unknown commit".to_owned(),
            |o| format!("`{}`", String::from_utf8_lossy(&o.stdout).trim()),
        );
    let section = format!(
        "Written by `cargo xtask layers-cost` (`tests/bench/layers_cost.rs`) on its last \
         run, at {commit}. Each client alone under cachegrind, {CALLERS} concurrent callers \
         of {PER_CALLER} requests a round, counts of {} rounds minus {} rounds, per \
         request: instructions, first-level instruction- and data-cache misses, \
         last-level misses, and the cost model instructions + {L1_MISS} x first-level \
         misses + {LL_MISS} x last-level misses. The same in every run but for where code \
         and heap lie (the control row shows how far two runs of one client land); no \
         kernel time (the same system calls for every client). The issue's goal, CPU \
         time <= {CPU_GOAL}x, is on CPU time, which the `layers` section measures; this is \
         a model of it without the machine's noise.\n\n\
         | client | instructions | I1 misses | D1 misses | LL misses | cost |\n\
         |---|---|---|---|---|---|\n{rows}\n\
         | ratio | cost | instructions | I1 misses | D1 misses |\n|---|---|---|---|---|\n\
         {ratios}",
        ROUNDS[1], ROUNDS[0],
    );
    publish(
        "layers-cost",
        "Integrations by cachegrind (`cargo xtask layers-cost`)",
        &section,
    );
}
