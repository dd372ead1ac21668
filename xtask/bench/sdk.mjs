// The @directus/sdk side of `cargo xtask bench` (xtask/src/bench.rs): the same
// scenarios as the Rust bench binary (tests/bench/peers.rs), which runs this script with
// the Node 22 of the xtask's install and drives it over stdin/stdout, one JSON command
// per line in, one JSON result per line out. The xtask copies this file into the SDK's
// install folder (beside node_modules/@directus/sdk) so that the import below resolves.
//
// Environment: AUTHMUX_DIRECTUS_URL, AUTHMUX_DIRECTUS_ADMIN_EMAIL,
// AUTHMUX_DIRECTUS_ADMIN_PASSWORD (never on the command line), AUTHMUX_BENCH_SDK_LEAD_MS
// (msRefreshBeforeExpires: how long before expiry the SDK refreshes).
//
// Client CPU is process.cpuUsage() (getrusage of this process: user + system, every
// thread); refresh calls are counted at the fetch the SDK is given (globals.fetch).

import { readFile, rename, writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { authentication, createDirectus, readMe, rest } from '@directus/sdk';

const url = process.env.AUTHMUX_DIRECTUS_URL;
const email = process.env.AUTHMUX_DIRECTUS_ADMIN_EMAIL;
const password = process.env.AUTHMUX_DIRECTUS_ADMIN_PASSWORD;
const lead = Number(process.env.AUTHMUX_BENCH_SDK_LEAD_MS ?? '30000');
if (!url || !email || !password) {
  throw new Error('AUTHMUX_DIRECTUS_URL, _ADMIN_EMAIL and _ADMIN_PASSWORD must be set');
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

// Every request a client sends goes through its own counting fetch: its refreshes are
// counted there (`client.counts.refreshes`).
const countingFetch = (counts) => (input, init) => {
  const target = typeof input === 'string' ? input : input.url;
  if (new URL(target).pathname.endsWith('/auth/refresh')) counts.refreshes += 1;
  return fetch(input, init);
};

// The SDK's `storage` option over one JSON file shared by several processes: reads parse
// the file, writes replace it atomically (a temp file renamed over it).
const fileStorage = (path) => ({
  async get() {
    try {
      return JSON.parse(await readFile(path, 'utf8'));
    } catch {
      return null;
    }
  },
  async set(data) {
    const temp = `${path}.${process.pid}.tmp`;
    await writeFile(temp, JSON.stringify(data), { mode: 0o600 });
    await rename(temp, path);
  },
});

// A client as the SDK documents it: json mode, auto refresh on, `lead` ms before expiry.
const client = (storage) => {
  const counts = { refreshes: 0 };
  const auth = { autoRefresh: true, msRefreshBeforeExpires: lead, ...(storage ? { storage } : {}) };
  const c = createDirectus(url, { globals: { fetch: countingFetch(counts) } })
    .with(authentication('json', auth))
    .with(rest());
  return Object.assign(c, { counts });
};

const signedIn = async (storage) => {
  const c = client(storage);
  await c.login({ email, password });
  return c;
};

// One authenticated GET /users/me: the status (0 when no HTTP answer came back).
const me = async (c) => {
  try {
    await c.request(readMe({ fields: ['id'] }));
    return 200;
  } catch (error) {
    return error?.response?.status ?? 0;
  }
};

const tally = (statuses) => {
  const failed = statuses.filter((s) => s !== 200);
  return { requests: statuses.length, failures: failed.length, failed_statuses: failed };
};

const cpuMicros = () => {
  const { user, system } = process.cpuUsage();
  return user + system;
};

let throughputClient = null;
let shared = null;

const commands = {
  async version() {
    const pkg = JSON.parse(
      await readFile(new URL('./node_modules/@directus/sdk/package.json', import.meta.url), 'utf8'),
    );
    return { sdk: pkg.version, node: process.version };
  },

  // Scenario 1: a freshly signed-in client, `warmup` requests, then `n` sequential
  // requests measured.
  async sequential({ n, warmup }) {
    const c = await signedIn();
    for (let i = 0; i < warmup; i += 1) await me(c);
    const before = c.counts.refreshes;
    const cpu = cpuMicros();
    const started = performance.now();
    const statuses = [];
    for (let i = 0; i < n; i += 1) statuses.push(await me(c));
    const wall_ms = performance.now() - started;
    const cpu_us = cpuMicros() - cpu;
    c.stopRefreshing();
    return { cpu_us, wall_ms, refreshes: c.counts.refreshes - before, ...tally(statuses) };
  },

  // Scenario 2: a fresh session, left alone past its expiry (its refresh timer stopped,
  // as after a sleep or a restore), then `n` concurrent requests.
  async storm({ n, wait_ms }) {
    const c = await signedIn();
    c.stopRefreshing();
    await sleep(wait_ms);
    const before = c.counts.refreshes;
    const statuses = await Promise.all(Array.from({ length: n }, () => me(c)));
    return { refreshes: c.counts.refreshes - before, ...tally(statuses) };
  },

  // Scenario 3: `trials` sessions side by side; each makes `refreshes` concurrent
  // explicit refresh() calls, waits past the next expiry, then makes one request.
  async explicit({ trials, refreshes, wait_ms }) {
    const one = async () => {
      const c = await signedIn();
      const results = await Promise.allSettled(Array.from({ length: refreshes }, () => c.refresh()));
      const refresh_calls = c.counts.refreshes;
      await sleep(wait_ms);
      const status = await me(c);
      c.stopRefreshing();
      return {
        refresh_calls,
        refresh_errors: results.filter((r) => r.status === 'rejected').length,
        alive: status === 200,
        status,
      };
    };
    // The trials run side by side (each with its own session and counter): the waits overlap.
    return { trials: await Promise.all(Array.from({ length: trials }, one)) };
  },

  // Scenario 4, the process that signs in: writes the session into the shared file and
  // stops its own refresh timer, so only the workers refresh.
  async share_login({ file }) {
    const c = await signedIn(fileStorage(file));
    c.stopRefreshing();
    return {};
  },

  // Scenario 4, a worker: a client whose storage is the shared file.
  async share_open({ file }) {
    shared = client(fileStorage(file));
    return {};
  },

  // Scenario 4, a worker's request in a trial: waits for the instant `at` (Unix ms).
  // `refreshes` counts every refresh call since the previous trial, the ones the SDK's
  // timers made in the background included.
  async share_call({ at }) {
    await sleep(at - Date.now());
    const status = await me(shared);
    const refreshes = shared.counts.refreshes - (shared.reported ?? 0);
    shared.reported = shared.counts.refreshes;
    return { status, refreshes };
  },

  // Scenario 5: `callers` concurrent loops for `ms` milliseconds.
  async throughput({ callers, ms }) {
    throughputClient ??= await signedIn();
    const cpu = cpuMicros();
    const started = performance.now();
    const deadline = started + ms;
    const statuses = [];
    const loop = async () => {
      while (performance.now() < deadline) statuses.push(await me(throughputClient));
    };
    await Promise.all(Array.from({ length: callers }, loop));
    const wall_ms = performance.now() - started;
    return { cpu_us: cpuMicros() - cpu, wall_ms, ...tally(statuses) };
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const command = JSON.parse(line);
  const run = commands[command.cmd];
  let reply;
  try {
    if (!run) throw new Error(`unknown command ${command.cmd}`);
    reply = { ok: true, ...(await run(command)) };
  } catch (error) {
    reply = { ok: false, error: String(error?.message ?? error) };
  }
  process.stdout.write(`${JSON.stringify(reply)}\n`);
}
// Timers the SDK set (auto refresh) must not keep the process alive after stdin closes.
process.exit(0);
