//! The Markdown section of `authmux-peers-bench`: its tables, ratios and goals, from
//! the JSON report (the same figures `target/bench/peers.json` holds).

use serde_json::Value;

use super::median;

/// The row of `scenario` for `client`.
fn find<'a>(report: &'a Value, scenario: &str, client: &str) -> &'a Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["scenario"] == scenario && r["client"] == client)
        .unwrap_or_else(|| panic!("no result for {scenario} / {client}"))
}

fn numbers(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

fn sum(value: &Value) -> f64 {
    numbers(value).iter().sum()
}

fn list(values: impl IntoIterator<Item = u64>) -> String {
    values
        .into_iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn field(trials: &Value, name: &str) -> Vec<u64> {
    trials
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t[name].as_u64().unwrap_or(0))
        .collect()
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// Median of per-round ratios with the lowest and highest, as `1.02x [0.98, 1.10]`.
fn ratio(values: &Value) -> (f64, String) {
    let all = numbers(values);
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let m = median(all);
    (m, format!("{m:.3}x [{lo:.3}, {hi:.3}]"))
}

/// Scenario 2's verdict: every trial 1 refresh call and no failed request.
fn storm_ok(row: &Value) -> bool {
    let trials = &row["trials"];
    field(trials, "refreshes").iter().all(|r| *r == 1)
        && field(trials, "failures").iter().all(|f| *f == 0)
}

/// Scenario 3's verdict: every trial 1 refresh call for the concurrent refreshes, and
/// the session alive after the next expiry.
fn explicit_ok(row: &Value) -> bool {
    let trials = &row["trials"];
    field(trials, "refresh_calls").iter().all(|r| *r == 1)
        && trials
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["alive"] == true)
}

fn explicit_cell(row: &Value) -> String {
    let trials = &row["trials"];
    let alive = trials
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["alive"] == true)
        .count();
    format!(
        "refresh calls per trial: {}; alive after the next expiry: {alive} of {}",
        list(field(trials, "refresh_calls")),
        trials.as_array().unwrap().len()
    )
}

fn storm_cell(row: &Value) -> String {
    let trials = &row["trials"];
    format!(
        "refresh calls per trial: {}; failed requests: {} of {} each",
        list(field(trials, "refreshes")),
        list(field(trials, "failures")),
        row["requests_per_trial"]
    )
}

fn shared_cell(row: &Value) -> String {
    format!(
        "refresh calls per trial (background ones included): {}; failed requests: {} of {}",
        list(field(&row["trials"], "refreshes")),
        row["failures"],
        row["requests"]
    )
}

fn sequential_cell(row: &Value) -> String {
    let n = row["requests_per_rep"].as_f64().unwrap();
    let cpu = row["median_cpu_us"].as_f64().unwrap();
    format!(
        "{:.1} ms CPU ({:.0} µs/request), {:.0} ms wall; {} refresh calls, {} failed in all reps",
        cpu / 1e3,
        cpu / n,
        row["median_wall_ms"].as_f64().unwrap(),
        sum(&row["refreshes_per_rep"]),
        sum(&row["failures_per_rep"]),
    )
}

fn throughput_cell(row: &Value) -> String {
    format!(
        "{:.0} req/s, {:.0} µs CPU/request; {} failed",
        row["median_requests_per_s"].as_f64().unwrap(),
        row["median_cpu_us_per_request"].as_f64().unwrap(),
        sum(&row["failures_per_round"]),
    )
}

/// The section, from the report `main` builds.
pub(super) fn section(report: &Value) -> String {
    let versions = &report["versions"];
    let machine = &report["machine"];
    let load = |name: &str| {
        numbers(&machine[name])
            .iter()
            .map(|l| format!("{l:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let s1 = |client| find(report, "1 sequential", client);
    let s5 = |client| find(report, "5 throughput", client);
    let (a1, p1, k1) = (s1("authmux"), s1("plain reqwest"), s1("@directus/sdk"));
    let n = a1["requests_per_rep"].clone();
    let reps = numbers(&a1["cpu_us_per_rep"]).len();
    let mut text = format!(
        "Written by `cargo xtask bench` (`xtask/src/bench.rs`, `tests/bench/peers.rs`, \
         `xtask/bench/sdk.mjs`) on {date}; the raw figures are in `{json}`. \
         One real Directus {directus} (access tokens live {ttl} s), the same for every client, \
         in one run: authmux at `{commit}` ({profile} build, {rustc}); @directus/sdk {sdk} on \
         Node {node} (json mode, auto refresh on, `msRefreshBeforeExpires` {lead} ms: the lead \
         authmux takes for such a token, where the SDK's default of 30 s would refresh a {ttl} s \
         token on every request); plain reqwest with the bearer header kept by hand and \
         refreshed by hand on a 401. Client CPU is the client process's own (all its threads: \
         `/proc/self/task/*/schedstat` for Rust, `process.cpuUsage()` for Node); Directus runs \
         in its own process and is not counted. Machine: {cpu}, {cores} cores shared with other \
         work (load average {load_before} at the start, {load_after} at the end), so absolute \
         figures are noisy: compare the ratios, each taken between clients measured \
         alternately in the same run. The run took {elapsed:.0} s.\n\n",
        date = report["date"].as_str().unwrap_or("?"),
        json = report["json"].as_str().unwrap_or("?"),
        directus = versions["directus"].as_str().unwrap_or("?"),
        ttl = report["directus_access_ttl_s"],
        commit = versions["authmux"].as_str().unwrap_or("?"),
        profile = report["profile"].as_str().unwrap_or("?"),
        rustc = versions["rustc"].as_str().unwrap_or("?"),
        sdk = versions["sdk"].as_str().unwrap_or("?"),
        node = versions["node"].as_str().unwrap_or("?"),
        lead = report["sdk_ms_refresh_before_expires"],
        cpu = machine["cpu"].as_str().unwrap_or("?"),
        cores = machine["cores"],
        load_before = load("load_average_before"),
        load_after = load("load_average_after"),
        elapsed = report["elapsed_s"].as_f64().unwrap_or(0.0),
    );

    let s2 = |client| find(report, "2 storm", client);
    let s3 = |client| find(report, "3 explicit refreshes", client);
    let s4 = |client| find(report, "4 shared session", client);
    text.push_str("| scenario | authmux | @directus/sdk | plain reqwest |\n|---|---|---|---|\n");
    text.push_str(&format!(
        "| 1. {n} sequential `GET /users/me`, each rep on a freshly signed-in client, median of {reps} reps | {} | {} | {} |\n",
        sequential_cell(a1),
        sequential_cell(k1),
        sequential_cell(p1)
    ));
    text.push_str(&format!(
        "| 2. a fresh session left past its expiry, then {} concurrent requests | {} | {} | n/a (no refresh logic to test) |\n",
        s2("authmux")["requests_per_trial"],
        storm_cell(s2("authmux")),
        storm_cell(s2("@directus/sdk"))
    ));
    text.push_str(&format!(
        "| 3. 5 concurrent explicit refreshes, then the next expiry, then a request | {} | {} | n/a |\n",
        explicit_cell(s3("authmux")),
        explicit_cell(s3("@directus/sdk"))
    ));
    text.push_str(&format!(
        "| 4. {} processes sharing one stored session (authmux `FileStore`, the SDK's `storage` over one file), after each expiry one request each at the same instant | {} | {} | n/a |\n",
        s4("authmux")["processes"],
        shared_cell(s4("authmux")),
        shared_cell(s4("@directus/sdk"))
    ));
    text.push_str(&format!(
        "| 5. {} concurrent callers, {} rounds of {} ms (medians) | `send`: {}; `AuthMiddleware`: {} | {} | {} |\n\n",
        s5("authmux send")["callers"],
        numbers(&s5("authmux send")["cpu_us_per_round"]).len(),
        s5("authmux send")["round_ms"],
        throughput_cell(s5("authmux send")),
        throughput_cell(s5("AuthMiddleware")),
        throughput_cell(s5("@directus/sdk")),
        throughput_cell(s5("plain reqwest")),
    ));

    text.push_str("| ratio (median of the per-rep or per-round ratios [lowest, highest]) | value | goal |\n|---|---|---|\n");
    let goal_rows: [(&str, &Value, bool); 6] = [
        (
            "scenario 1: authmux / plain reqwest, client CPU",
            &a1["cpu_ratio_to_plain_reqwest_per_rep"],
            true,
        ),
        (
            "scenario 1: authmux / @directus/sdk, client CPU",
            &a1["cpu_ratio_to_sdk_per_rep"],
            false,
        ),
        (
            "scenario 5: authmux `send` / plain reqwest, CPU per request",
            &s5("authmux send")["cpu_ratio_to_plain_reqwest_per_round"],
            true,
        ),
        (
            "scenario 5: `AuthMiddleware` / plain reqwest, CPU per request",
            &s5("AuthMiddleware")["cpu_ratio_to_plain_reqwest_per_round"],
            true,
        ),
        (
            "scenario 5: authmux `send` / @directus/sdk, CPU per request",
            &s5("authmux send")["cpu_ratio_to_sdk_per_round"],
            false,
        ),
        (
            "scenario 5: `AuthMiddleware` / @directus/sdk, CPU per request",
            &s5("AuthMiddleware")["cpu_ratio_to_sdk_per_round"],
            false,
        ),
    ];
    for (label, values, against_plain) in goal_rows {
        let (m, shown) = ratio(values);
        let goal = if against_plain {
            format!("<= 1.05x: {}", verdict(m <= 1.05))
        } else {
            format!(
                "<= 1/8 (0.125x): {} (1/{:.1})",
                verdict(m <= 0.125),
                1.0 / m
            )
        };
        text.push_str(&format!("| {label} | {shown} | {goal} |\n"));
    }
    let (_, control) = ratio(&s1("plain reqwest (control)")["cpu_ratio_to_plain_reqwest_per_rep"]);
    text.push_str(&format!(
        "| control, scenario 1: a second plain reqwest client / plain reqwest, client CPU (the noise floor) | {control} | |\n"
    ));
    let (_, control) =
        ratio(&s5("plain reqwest (control)")["cpu_ratio_to_plain_reqwest_per_round"]);
    text.push_str(&format!(
        "| control, scenario 5: a second plain reqwest client / plain reqwest, CPU per request (the noise floor) | {control} | |\n"
    ));
    let (_, tput) = ratio(&s5("authmux send")["throughput_ratio_to_plain_reqwest_per_round"]);
    text.push_str(&format!(
        "| scenario 5: authmux `send` / plain reqwest, throughput | {tput} | (no goal: the server bounds it) |\n"
    ));
    let (_, tput) = ratio(&s5("AuthMiddleware")["throughput_ratio_to_plain_reqwest_per_round"]);
    text.push_str(&format!(
        "| scenario 5: `AuthMiddleware` / plain reqwest, throughput | {tput} | (no goal) |\n\n"
    ));

    text.push_str(
        "| goal: 1 refresh call and 0 failures | authmux | @directus/sdk |\n|---|---|---|\n",
    );
    text.push_str(&format!(
        "| scenario 2 (every trial) | {} | {} |\n",
        verdict(storm_ok(s2("authmux"))),
        verdict(storm_ok(s2("@directus/sdk")))
    ));
    text.push_str(&format!(
        "| scenario 3 (every trial: 1 refresh call for the 5 refreshes, session alive after the next expiry) | {} | {} |\n",
        verdict(explicit_ok(s3("authmux"))),
        verdict(explicit_ok(s3("@directus/sdk")))
    ));
    text.push_str(&format!(
        "| scenario 4 (every expiry: 1 refresh call among the processes, no failed request) | {} | {} |\n",
        verdict(storm_ok(s4("authmux"))),
        verdict(storm_ok(s4("@directus/sdk")))
    ));
    text
}
