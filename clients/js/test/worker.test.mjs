// The JavaScript worker and client against a real `courier serve` (COURIER_BIN).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, openSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { createServer } from "node:net";
import { createServer as createHttpServer } from "node:http";
import { fileURLToPath } from "node:url";

import {
  Client,
  CourierError,
  ExecutionFailed,
  InvalidSignature,
  TaskFailure,
  Worker,
  verifySeedSignature,
  verifyWebhook,
} from "../src/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const quiet = { warn() {} };

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

let node;
let url;
let dir;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "courier-js-client-"));
  url = `http://127.0.0.1:${await freePort()}`;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("COURIER_")));
  Object.assign(env, {
    COURIER_STORE_URL: join(dir, "courier.db"),
    COURIER_HTTP_ADDR: url.slice("http://".length),
    // A dead worker's task is claimed again soon after its lease ends.
    COURIER_WORKER_LEASE: "2s",
    COURIER_WORKER_HEARTBEAT: "500ms",
    COURIER_LOG_LEVEL: "warn",
    // The webhook receiver of these tests listens on loopback.
    COURIER_WEBHOOKS_ALLOW_PRIVATE: "127.0.0.1/32",
    COURIER_WEBHOOKS_SECRET_KEY: "AG997S88LNpAm0Rom4TeLVh0GSchFj+eO/whPOkGJrw=",
    COURIER_WEBHOOKS_POLL: "200ms",
  });
  const bin = process.env.COURIER_BIN ?? join(here, "..", "..", "..", "target", "debug", "courier");
  const log = openSync(join(dir, "courier.log"), "w");
  node = spawn(bin, ["serve"], { env, stdio: ["ignore", log, log] });
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(`${url}/readyz`)).ok) break;
    } catch {}
    if (Date.now() > deadline || node.exitCode !== null) throw new Error(`courier serve did not start; see ${dir}`);
    await sleep(100);
  }
});

after(() => node?.kill("SIGTERM"));

test("a worker runs activities and the client awaits their results", async () => {
  const client = new Client(url);
  const seen = [];
  const worker = new Worker(url, { lease: "3s", wait: "2s", concurrency: 4, log: quiet }).activity(
    "js.add",
    async (args, task) => {
      seen.push(task.attempt);
      await task.progress({ percent: 50, message: "adding" });
      return args.a + args.b;
    },
  );
  const running = worker.run({ handleSignals: false });
  const ids = await Promise.all([...Array(8).keys()].map((n) => client.dispatch("js.add", { a: n, b: 1 })));
  const results = await Promise.all(ids.map((id) => client.result(id, { timeout: 30_000 })));
  assert.deepEqual(results, [...Array(8).keys()].map((n) => n + 1));
  assert.deepEqual(seen, Array(8).fill(1));
  worker.stop();
  await running;
});

test("function settings cap and route new tasks", async () => {
  const client = new Client(url);
  assert.equal(await client.function("js.capped"), null);
  const view = await client.setFunction("js.capped", { queue: "js-capped", maxConcurrent: 1, retry: { max_attempts: 2 } });
  assert.deepEqual([view.revision, view.applied.queue, view.applied.max_concurrent], [1, "js-capped", 1]);
  let running = 0;
  let peak = 0;
  const worker = new Worker(url, { queues: ["js-capped"], lease: "3s", wait: "1s", concurrency: 4, log: quiet }).activity(
    "js.capped",
    async (n) => {
      running += 1;
      peak = Math.max(peak, running);
      await sleep(200);
      running -= 1;
      return n;
    },
  );
  const serving = worker.run({ handleSignals: false });
  const ids = await Promise.all([0, 1, 2, 3].map((n) => client.dispatch("js.capped", n)));
  assert.deepEqual(await Promise.all(ids.map((id) => client.result(id, { timeout: 30_000 }))), [0, 1, 2, 3]);
  assert.equal(peak, 1, "max_concurrent 1 holds with four slots free");
  worker.stop();
  await serving;
  assert.equal(await client.resetFunction("js.capped"), true);
  assert.equal(await client.resetFunction("js.capped"), false);
});

test("failures retry unless they say not to", async () => {
  const client = new Client(url);
  let flakyAttempts = 0;
  const worker = new Worker(url, { lease: "3s", wait: "2s", concurrency: 2, log: quiet })
    .activity("js.flaky", async (args, task) => {
      flakyAttempts += 1;
      if (task.attempt === 1) {
        await task.checkpoint({ gotTo: 7 });
        throw new Error("first attempt fails");
      }
      return { resumedFrom: task.checkpointValue };
    })
    .activity("js.hopeless", () => {
      throw new TaskFailure("never works", { kind: "invalid", retryable: false, details: { why: "test" } });
    });
  const running = worker.run({ handleSignals: false });
  // The default policy retries a failed attempt (after about a second).
  const flaky = await client.dispatch("js.flaky");
  assert.deepEqual(await client.result(flaky, { timeout: 30_000 }), { resumedFrom: { gotTo: 7 } });
  assert.equal(flakyAttempts, 2);
  const hopeless = await client.dispatch("js.hopeless");
  await assert.rejects(client.result(hopeless, { timeout: 30_000 }), (e) => {
    assert.ok(e instanceof ExecutionFailed);
    assert.equal(e.execution.state, "failed");
    assert.equal(e.execution.error.kind, "invalid");
    return true;
  });
  const detail = await client.get(hopeless);
  assert.equal(detail.steps[0].attempt, 1, "not retried");
  worker.stop();
  await running;
});

test("a task whose worker is killed runs on another", async () => {
  const client = new Client(url);
  const started = join(dir, "started");
  // A worker in its own process that hangs in the task: killed mid-task.
  const script = `
    import { writeFileSync } from "node:fs";
    import { Worker } from ${JSON.stringify(join(here, "..", "src", "index.js"))};
    new Worker(${JSON.stringify(url)}, { workerId: "doomed", lease: "2s", wait: "2s" })
      .activity("js.killed", () => { writeFileSync(${JSON.stringify(started)}, ""); return new Promise(() => {}); })
      .run();
  `;
  const doomed = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: "inherit" });
  try {
    const id = await client.dispatch("js.killed", { n: 1 });
    const deadline = Date.now() + 30_000;
    while (!existsSync(started)) {
      assert.ok(Date.now() < deadline, "the doomed worker never started the task");
      await sleep(50);
    }
    doomed.kill("SIGKILL");
    const worker = new Worker(url, { workerId: "survivor", lease: "2s", wait: "2s", log: quiet }).activity(
      "js.killed",
      (args, task) => ({ attempt: task.attempt, n: args.n }),
    );
    const running = worker.run({ handleSignals: false });
    assert.deepEqual(await client.result(id, { timeout: 60_000 }), { attempt: 2, n: 1 });
    worker.stop();
    await running;
  } finally {
    doomed.kill("SIGKILL");
  }
});

test("errors are typed", async () => {
  const client = new Client(url);
  await assert.rejects(client.dispatch("courier.reserved"), (e) => e instanceof CourierError && e.status === 400);
  await assert.rejects(
    client.get("00000000-0000-0000-0000-000000000000"),
    (e) => e instanceof CourierError && e.status === 404,
  );
  await assert.rejects(new Client("http://127.0.0.1:1").dispatch("x"), (e) => e instanceof CourierError && e.status === 0);
});

test("a real delivery verifies with its secret and with no other", async () => {
  const received = [];
  const receiver = createHttpServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(204).end();
    });
  });
  await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  const client = new Client(url);
  try {
    const { value: hook } = await client.http.request("POST", "/v1/webhooks", {
      body: { url: `http://127.0.0.1:${receiver.address().port}/hook`, event_types: ["execution.created"] },
    });
    const id = await client.dispatch("js.webhooked", { n: 1 });
    const deadline = Date.now() + 30_000;
    while (received.length === 0) {
      assert.ok(Date.now() < deadline, "no delivery");
      await sleep(50);
    }
    const { headers, body } = received[0];
    const event = verifyWebhook(hook.secret, headers, body);
    assert.equal(event.type, "execution.created");
    assert.equal(event.execution_id, id);
    assert.ok(verifySeedSignature(hook.secret, body, headers["x-webhook-signature"]));
    const other = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY";
    assert.throws(() => verifyWebhook(other, headers, body), InvalidSignature);
    assert.throws(() => verifyWebhook(hook.secret, headers, Buffer.concat([body, Buffer.from(" ")])), InvalidSignature);
    assert.throws(() => verifyWebhook(hook.secret, headers, body, { tolerance: -1 }), InvalidSignature);
    assert.ok(!verifySeedSignature(other, body, headers["x-webhook-signature"]));
  } finally {
    receiver.close();
  }
});
