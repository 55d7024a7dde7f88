// External workers and a client for a Courier node's HTTP API.
//
// `Worker` serves activities to a node: it claims their tasks with a
// long-poll, runs each while a timer renews its lease, and completes or fails
// it. `Client` dispatches executions and waits for their results.
// `verifyWebhook` checks a webhook delivery's signature. No dependencies: the
// platform's `fetch` and `crypto`.

import { hostname } from "node:os";
import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";

/** An answer that is not a success: `status`, and the node's `error` and `detail` (status 0: no answer). */
export class CourierError extends Error {
  constructor(status, error, detail) {
    super(`${status}: ${error}${detail === undefined || detail === null ? "" : ` (${JSON.stringify(detail)})`}`);
    this.name = "CourierError";
    this.status = status;
    this.error = error;
    this.detail = detail;
  }
}

/** The awaited execution ended other than completed; `execution` is the node's answer. */
export class ExecutionFailed extends Error {
  constructor(execution) {
    super(`execution ${execution.execution_id} is ${execution.state}: ${JSON.stringify(execution.error)}`);
    this.name = "ExecutionFailed";
    this.execution = execution;
  }
}

/** Thrown by an activity to fail its attempt with a `kind`, `details`, and whether it may be retried. */
export class TaskFailure extends Error {
  constructor(message, { kind = "error", retryable = true, details, retryAfter } = {}) {
    super(message);
    this.name = "TaskFailure";
    this.kind = kind;
    this.retryable = retryable;
    this.details = details;
    this.retryAfter = retryAfter;
  }
}

class Http {
  constructor(url, { token, timeout = 30_000 } = {}) {
    this.url = url.replace(/\/+$/, "");
    this.token = token;
    this.timeout = timeout;
  }

  /** The decoded JSON answer and its status; throws CourierError otherwise. */
  async request(method, path, { body, query, timeout } = {}) {
    let url = this.url + path;
    if (query) {
      const params = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined));
      url += `?${params}`;
    }
    const headers = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let answer;
    try {
      answer = await fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeout ?? this.timeout),
      });
    } catch (e) {
      throw new CourierError(0, `no answer from ${this.url}: ${e.cause?.code ?? e.message}`);
    }
    const text = await answer.text();
    let value = null;
    try {
      value = text ? JSON.parse(text) : null;
    } catch {
      value = text;
    }
    if (!answer.ok) {
      throw new CourierError(answer.status, value?.error ?? answer.statusText, value?.detail);
    }
    return { value, status: answer.status };
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Dispatches executions and waits for their results. */
export class Client {
  constructor(url, options = {}) {
    this.http = new Http(url, options);
  }

  /** Starts an execution of `fn`; its id. `options`: `queue`, `tags`, `priority`, `idempotency_key`, `delay`, `expiry`. */
  async dispatch(fn, args = null, options = {}) {
    const { value } = await this.http.request("POST", "/v1/executions", { body: { function: fn, args, ...options } });
    return value.id;
  }

  /** The execution in detail: `execution` (its record), `steps`, `progress`, `counters`, `values`. */
  async get(id) {
    return (await this.http.request("GET", `/v1/executions/${id}`)).value;
  }

  /** Waits up to `timeout` ms for the execution to end: its result, or ExecutionFailed. */
  async result(id, { timeout = 60_000 } = {}) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`execution ${id} still running after ${timeout} ms`);
      const wait = Math.max(1, Math.min(30, Math.floor(left / 1000)));
      let answer;
      try {
        answer = await this.http.request("GET", `/v1/executions/${id}/result`, {
          query: { wait: `${wait}s` },
          timeout: wait * 1000 + this.http.timeout,
        });
      } catch (e) {
        // Too many waiters on the node, or it is stopping: ask again soon.
        if (e instanceof CourierError && (e.status === 429 || e.status === 503)) {
          await sleep(1000);
          continue;
        }
        throw e;
      }
      if (answer.status === 202) continue;
      if (answer.value.state === "completed") return answer.value.result;
      throw new ExecutionFailed(answer.value);
    }
  }

  /** Cancels the execution and its unfinished tasks. */
  async cancel(id, reason) {
    return (await this.http.request("POST", `/v1/executions/${id}/cancel`, { body: { reason } })).value;
  }

  /** Sends the execution a named signal. */
  async signal(id, name, payload = null) {
    const path = `/v1/executions/${id}/signals/${encodeURIComponent(name)}`;
    return (await this.http.request("POST", path, { body: payload })).value;
  }

  /**
   * Stores `fn`'s settings for every node of the cluster (`retry`, `timeout`, `queue`, `tags`, `priority`,
   * `maxConcurrent` or `max_concurrent`), replacing what was stored; new tasks of the function take them.
   */
  async setFunction(fn, settings = {}) {
    const body = { ...settings };
    if ("maxConcurrent" in body) {
      body.max_concurrent = body.maxConcurrent;
      delete body.maxConcurrent;
    }
    return (await this.http.request("PUT", `/v1/functions/${encodeURIComponent(fn)}`, { body })).value;
  }

  /** What is stored for `fn` and what its new tasks get, or null when nothing is stored and the node does not run it. */
  async function(fn) {
    try {
      return (await this.http.request("GET", `/v1/functions/${encodeURIComponent(fn)}`)).value;
    } catch (e) {
      if (e instanceof CourierError && e.status === 404) return null;
      throw e;
    }
  }

  /** Forgets `fn`'s stored settings; whether there were any. */
  async resetFunction(fn) {
    try {
      await this.http.request("DELETE", `/v1/functions/${encodeURIComponent(fn)}`);
      return true;
    } catch (e) {
      if (e instanceof CourierError && e.status === 404) return false;
      throw e;
    }
  }
}

/** The claimed task an activity runs: `args`, `attempt` (1-based), `checkpointValue`, and calls on its lease. */
export class Task {
  constructor(http, claimed) {
    this.http = http;
    this.id = claimed.task_id;
    this.executionId = claimed.execution_id;
    this.function = claimed.function;
    this.args = claimed.args;
    this.attempt = claimed.attempt;
    this.queue = claimed.queue;
    this.checkpointValue = claimed.checkpoint ?? null;
    this.leaseToken = claimed.lease_token;
  }

  async post(what, body) {
    const path = `/v1/tasks/${this.id}/${what}`;
    return (await this.http.request("POST", path, { body: { ...body, lease_token: this.leaseToken } })).value;
  }

  /** Renews the lease now (the worker also does it on a timer). */
  heartbeat(details) {
    return this.post("heartbeat", { details });
  }

  /** Saves `value` for the next attempt, should this one fail. */
  checkpoint(value) {
    return this.post("checkpoint", { checkpoint: value });
  }

  /** Reports progress: `percent`, `message`, `step`, `status`, `detail`. */
  progress(report) {
    return this.post("progress", report);
  }
}

/** `"30s"`, `"2m"`, `"500ms"`, `"1h"` in milliseconds. */
function millis(duration) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(duration);
  if (!m) throw new Error(`not a duration: ${JSON.stringify(duration)} (e.g. 30s, 2m, 500ms)`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2]];
}

/**
 * Serves activities to a Courier node over HTTP: long-polls
 * `POST /v1/workers/claim` for the registered functions, runs up to
 * `concurrency` tasks at once while a timer heartbeats each lease every third
 * of `lease`, then completes each with its function's value or fails it.
 * `stop()`, SIGTERM or SIGINT stop claiming; `run()` resolves once the running
 * tasks end. A task whose worker dies is claimed again once its lease ends.
 */
export class Worker {
  constructor(url, { token, workerId, queues, concurrency = 1, lease = "30s", wait = "20s", log = console } = {}) {
    this.http = new Http(url, { token });
    this.workerId = workerId ?? `${hostname()}-${process.pid}-${randomUUID().slice(0, 6)}`;
    this.queues = queues;
    this.concurrency = concurrency;
    this.lease = lease;
    this.wait = wait;
    this.log = log;
    this.functions = new Map();
    this.stopping = false;
    this.running = new Set();
    millis(lease);
    millis(wait);
  }

  /** Serves `name` with `fn(args, task)` (sync or async); returns the worker, to chain. */
  activity(name, fn) {
    this.functions.set(name, fn);
    return this;
  }

  /** Stops claiming; `run()` resolves once the tasks running now are done. */
  stop() {
    this.stopping = true;
    this.wake?.();
  }

  /** Claims and runs tasks until stopped. */
  async run({ handleSignals = true } = {}) {
    if (this.functions.size === 0) throw new Error("no activity registered: call worker.activity(name, fn) first");
    const onSignal = () => this.stop();
    if (handleSignals) {
      process.once("SIGTERM", onSignal);
      process.once("SIGINT", onSignal);
    }
    try {
      while (!this.stopping) {
        if (this.running.size >= this.concurrency) {
          // Wait for a place: a task ending (or stop) wakes this.
          await new Promise((resolve) => (this.wake = resolve));
          continue;
        }
        let claimed = [];
        try {
          claimed = await this.claim(this.concurrency - this.running.size);
        } catch (e) {
          this.log.warn?.(`courier worker: claim failed: ${e.message}`);
          await sleep(1000);
        }
        for (const item of claimed) {
          const done = this.execute(new Task(this.http, item)).finally(() => {
            this.running.delete(done);
            this.wake?.();
          });
          this.running.add(done);
        }
      }
      await Promise.allSettled([...this.running]);
    } finally {
      if (handleSignals) {
        process.off("SIGTERM", onSignal);
        process.off("SIGINT", onSignal);
      }
    }
  }

  async claim(max) {
    const body = {
      worker_id: this.workerId,
      functions: [...this.functions.keys()].sort(),
      max,
      lease: this.lease,
      wait: this.wait,
      ...(this.queues ? { queues: this.queues } : {}),
    };
    const { value } = await this.http.request("POST", "/v1/workers/claim", { body, timeout: millis(this.wait) + 30_000 });
    return value ?? [];
  }

  async execute(task) {
    const timer = setInterval(() => {
      task.heartbeat().catch((e) => {
        this.log.warn?.(`courier worker: heartbeat of task ${task.id} failed: ${e.message}`);
        if (e.status === 409) clearInterval(timer);
      });
    }, Math.max(200, millis(this.lease) / 3));
    let outcome;
    try {
      outcome = { result: await this.functions.get(task.function)(task.args, task) };
    } catch (e) {
      outcome = { failure: e instanceof TaskFailure ? e : new TaskFailure(`${e?.name ?? "Error"}: ${e?.message ?? e}`) };
    } finally {
      clearInterval(timer);
    }
    try {
      if ("result" in outcome) {
        await task.post("complete", { result: outcome.result ?? null });
      } else {
        const f = outcome.failure;
        await task.post("fail", {
          error: { kind: f.kind, message: f.message, details: f.details ?? null },
          retryable: f.retryable,
          ...(f.retryAfter ? { retry_after: f.retryAfter } : {}),
        });
      }
    } catch (e) {
      // 409: the lease was lost (it ran out, or the execution was cancelled);
      // the task is someone else's now.
      this.log.warn?.(`courier worker: could not settle task ${task.id}: ${e.message}`);
    }
  }
}

/** The delivery is not signed with this secret, or is too old. */
export class InvalidSignature extends Error {
  constructor(message) {
    super(message);
    this.name = "InvalidSignature";
  }
}

/** A webhook secret's key: the base64-DECODED part after `whsec_`. */
const webhookKey = (secret) => Buffer.from(secret.replace(/^whsec_/, ""), "base64");

const sameText = (a, b) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

/**
 * Checks a delivery's Standard Webhooks signature (`webhook-id`,
 * `webhook-timestamp`, `webhook-signature: v1,<base64>`, several
 * space-separated during a secret rotation) and that its timestamp is within
 * `tolerance` seconds of now; returns the parsed body, or throws
 * InvalidSignature. `headers`: a plain object or a `Headers`; `body`: the raw
 * bytes or text, exactly as received.
 */
export function verifyWebhook(secret, headers, body, { tolerance = 300 } = {}) {
  const get = (name) =>
    typeof headers.get === "function"
      ? headers.get(name)
      : Object.entries(headers).find(([k]) => k.toLowerCase() === name)?.[1];
  const id = get("webhook-id");
  const timestamp = get("webhook-timestamp");
  const signatures = get("webhook-signature");
  if (!id || !/^\d+$/.test(timestamp ?? "") || !signatures) {
    throw new InvalidSignature("missing or malformed webhook-id / webhook-timestamp / webhook-signature");
  }
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > tolerance) {
    throw new InvalidSignature(`timestamp ${timestamp} is more than ${tolerance}s away from now`);
  }
  const raw = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const expected = createHmac("sha256", webhookKey(secret))
    .update(`${id}.${timestamp}.`)
    .update(raw)
    .digest("base64");
  const ok = String(signatures)
    .split(" ")
    .some((s) => s.startsWith("v1,") && sameText(s.slice(3), expected));
  if (!ok) throw new InvalidSignature("no signature matches this secret");
  return JSON.parse(raw.toString("utf8"));
}

/** Checks `X-Webhook-Signature: sha256=<hex HMAC-SHA256 of the body>` (the current secret only). */
export function verifySeedSignature(secret, body, header) {
  const raw = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const expected = `sha256=${createHmac("sha256", webhookKey(secret)).update(raw).digest("hex")}`;
  return typeof header === "string" && sameText(header, expected);
}
