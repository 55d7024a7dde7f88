// What every browser test needs: real `courier serve` processes on free loopback
// ports, Debian's headless Chromium through playwright-core, named steps, and a
// bound on the whole run. A test file builds on `harness(name)` and ends with
// `run(main)`, which cleans up and exits non-zero on any failure.
//
// COURIER_BIN defaults to ../../target/debug/courier (relative to this folder);
// CHROMIUM to /usr/bin/chromium. SCREENSHOTS=<dir> saves the pictures a test takes.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.COURIER_BIN
  ? path.resolve(process.env.COURIER_BIN)
  : path.resolve(HERE, '../../target/debug/courier');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const SCREENSHOTS = process.env.SCREENSHOTS ? path.resolve(process.env.SCREENSHOTS) : null;
export const WAIT_MS = 15_000; // for any one thing to show up on a page

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function assert(cond, message) {
  if (!cond) throw new Error(message);
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Polls `fn` until it returns something truthy (and returns that), or throws after `ms`. */
export async function until(what, fn, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await sleep(100);
  }
}

/**
 * One browser test run: `name` labels its output, `overallMs` bounds it, and
 * `ignoreConsole` matches console errors a test expects (a refused request).
 */
export function harness(name, { overallMs = 90_000, ignoreConsole = /status of 401/ } = {}) {
  const started = Date.now();
  const servers = [];
  const tempDirs = [];
  const cleanups = [];
  const pageErrors = [];
  const h = { browser: null, pageErrors, passed: 0, failed: 0 };

  h.log = (...args) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s]`, ...args);

  /**
   * Starts `courier serve` on a free port with a new SQLite store, or (given
   * `again`) on the port and store of a server stopped before. `env` adds settings.
   */
  h.startServer = async (label, { tokens = '', env = {}, again = null } = {}) => {
    const dir = again ? again.dir : fs.mkdtempSync(path.join(os.tmpdir(), 'courier-browser-'));
    if (!again) tempDirs.push(dir);
    const port = again ? again.port : await freePort();
    const childEnv = {
      ...process.env,
      COURIER_HTTP_ADDR: `127.0.0.1:${port}`,
      COURIER_STORE_URL: path.join(dir, 'courier.db'),
      COURIER_API_TOKENS: tokens,
      COURIER_LOG: process.env.COURIER_LOG || 'warn',
      // No load balancer to tell: a stopped server closes its streams at once
      // (stopServer kills what has not exited after 5 s).
      COURIER_HTTP_DRAIN_PERIOD: '200ms',
      ...(again ? again.env : env),
    };
    delete childEnv.COURIER_CONFIG;
    const child = spawn(BIN, ['serve'], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    const server = {
      name: label, child, dir, port, env: again ? again.env : env,
      base: `http://127.0.0.1:${port}`, token: tokens.split(',')[0] || '', output: '',
    };
    child.stdout.on('data', (d) => { server.output += d; });
    child.stderr.on('data', (d) => { server.output += d; });
    child.on('exit', (code, signal) => { server.exited = { code, signal }; });
    servers.push(server);
    await until(`${label} to answer /healthz`, async () => {
      if (server.exited) throw new Error(`server exited ${JSON.stringify(server.exited)}:\n${server.output}`);
      return (await fetch(`${server.base}/healthz`)).ok;
    }, 20_000);
    h.log(`${label}: courier serve on ${server.base}`);
    return server;
  };

  h.stopServer = async (server) => {
    if (server.exited) return;
    const gone = new Promise((resolve) => server.child.once('exit', resolve));
    server.child.kill('SIGTERM');
    const stopped = await Promise.race([gone.then(() => true), sleep(5000).then(() => false)]);
    if (!stopped) {
      server.child.kill('SIGKILL');
      await gone;
    }
  };

  /** The API as a client other than the page; throws on a non-2xx answer. */
  h.api = async (server, method, urlPath, body) => {
    const headers = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (server.token) headers.authorization = `Bearer ${server.token}`;
    const res = await fetch(server.base + urlPath, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (!res.ok) throw new Error(`${method} ${urlPath}: ${res.status} ${text}`);
    return { status: res.status, data };
  };

  h.step = async (label, fn) => {
    const t0 = Date.now();
    try {
      await fn();
      h.passed += 1;
      h.log(`ok   ${label} (${Date.now() - t0} ms)`);
    } catch (e) {
      h.failed += 1;
      h.log(`FAIL ${label}: ${e.stack || e}`);
      throw e;
    }
  };

  /** A page in a context of its own (its own cookies), or in `context` when given. */
  h.newPage = async (label, { context = null, contextOptions = {} } = {}) => {
    const ctx = context || (await h.browser.newContext(contextOptions));
    const page = await ctx.newPage();
    page.on('pageerror', (e) => pageErrors.push(`${label}: page error: ${e.stack || e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && !(ignoreConsole && ignoreConsole.test(m.text()))) {
        pageErrors.push(`${label}: console: ${m.text()}`);
      }
    });
    page.loads = 0;
    page.on('load', () => { page.loads += 1; });
    return page;
  };

  /** Saves a picture under SCREENSHOTS (or `dir`); answers its path, or null. */
  h.shot = async (page, label, dir = SCREENSHOTS) => {
    if (!dir) return null;
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `${label}.png`);
    await page.screenshot({ path: file, fullPage: true, animations: 'disabled' });
    return file;
  };

  h.onCleanup = (fn) => cleanups.push(fn);

  async function cleanup() {
    if (h.browser) await h.browser.close().catch(() => {});
    h.browser = null;
    for (const s of servers) await h.stopServer(s).catch(() => {});
    for (const fn of cleanups) await Promise.resolve().then(fn).catch(() => {});
    for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
  }

  process.on('exit', () => {
    for (const s of servers) if (!s.exited) s.child.kill('SIGKILL');
  });

  /** Launches Chromium, runs `main`, cleans up, and exits with the verdict. */
  h.run = async (main) => {
    const overall = setTimeout(async () => {
      h.log(`FAIL: ${name} did not finish within ${overallMs / 1000} s`);
      for (const s of servers) console.log(`--- ${s.name} output ---\n${s.output.slice(-4000)}`);
      await Promise.race([cleanup(), sleep(5000)]);
      process.exit(2);
    }, overallMs);
    let code = 0;
    try {
      assert(fs.existsSync(BIN), `no server binary at ${BIN} (set COURIER_BIN, or cargo build -p courier-cli)`);
      assert(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (apt-get install chromium)`);
      h.browser = await chromium.launch({
        executablePath: CHROMIUM,
        // Playwright starts Chromium with a new, empty temporary --user-data-dir of its own.
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
          '--no-first-run', '--disable-component-update', '--disable-sync'],
        timeout: 30_000,
      });
      h.log(`chromium ${h.browser.version()}`);
      await main();
      await h.step('no page raised an error', async () => assert(pageErrors.length === 0, pageErrors.join('\n')));
    } catch (e) {
      code = 1;
      if (!h.failed) h.log(`FAIL: ${e.stack || e}`);
      if (pageErrors.length) console.log(`--- page errors ---\n${pageErrors.join('\n')}`);
      const pages = h.browser ? h.browser.contexts().flatMap((c) => c.pages()) : [];
      for (const [i, page] of pages.entries()) {
        const file = path.join(os.tmpdir(), `courier-${name}-failure-${i}.png`);
        await page.screenshot({ path: file, fullPage: true }).then(() => console.log(`screenshot: ${file}`), () => {});
      }
      for (const s of servers) console.log(`--- ${s.name} output (last 4000 chars) ---\n${s.output.slice(-4000)}`);
    }
    await cleanup();
    clearTimeout(overall);
    console.log(`${h.passed} passed, ${code ? Math.max(h.failed, 1) : 0} failed`);
    h.log(code ? `${name} browser test FAILED` : `${name} browser test passed`);
    process.exit(code);
  };

  return h;
}
