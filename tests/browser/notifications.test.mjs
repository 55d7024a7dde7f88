// Drives the browser notifications client (GET /notifications.js and .mjs) in
// Debian's headless Chromium against a real `courier serve`, from an app page on
// another origin, and checks what a person would see: toasts, their timing and
// limits, dismissal across tabs, group replacement, reconnects and tokens.
//
//   COURIER_BIN=/path/to/courier node notifications.test.mjs
//
// Bounded by 150 s; non-zero exit on any failure. The demo page's screenshot is
// saved as notifications-demo.png under SCREENSHOTS, or target/browser-artefacts.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { minify } from 'terser';
import { assert, freePort, harness, SCREENSHOTS, sleep, until, WAIT_MS } from './harness.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLIENT_DIR = path.resolve(HERE, '../../clients/browser-notifications');
const ARTEFACTS = SCREENSHOTS || path.resolve(HERE, '../../target/browser-artefacts');
const SIZE_BUDGET = 12 * 1024;
const SECRET = 'browser-test-token-secret';

// The client logs nothing on purpose; Chromium logs refused requests (a 401 a
// test provokes, a stream cut by a restart) by itself.
const h = harness('notifications', { overallMs: 150_000, ignoreConsole: /status of 401|net::ERR_|Failed to load resource/ });
const { api, log, step } = h;

let courier = null; // the server under test (restarted on the same port)
let site = null; // the app's own origin

// ---------- the app on another origin ----------
async function startSite(port) {
  const srv = http.createServer(async (req, res) => {
    const url = new URL(req.url, `http://127.0.0.1:${port}`);
    const q = (k) => url.searchParams.get(k) || '';
    const page = (body) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>App</title></head>
<body><main><h1>An app on another origin</h1><p>Its notifications come from Courier.</p></main>${body}</body></html>`);
    };
    try {
      if (url.pathname === '/app.html') {
        page(`<script src="${courier.base}/notifications.js"></script>`);
      } else if (url.pathname === '/auto.html') {
        page(`<script src="${courier.base}/notifications.js" data-courier-auto data-token="${q('token')}"></script>`);
      } else if (url.pathname === '/module.html') {
        page(`<script type="module">
import { notifications } from "${courier.base}/notifications.mjs";
window.viaModule = notifications({ token: ${JSON.stringify(q('token'))} });
</script>`);
      } else if (url.pathname === '/token') {
        // What an app's backend does for its signed-in user.
        const { data } = await api(courier, 'POST', '/v1/notifications/tokens', {
          session_id: q('session'), user_id: q('user') || undefined, ttl: q('ttl') || '10m',
        });
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(data.token);
      } else {
        res.writeHead(404);
        res.end();
      }
    } catch (e) {
      res.writeHead(500);
      res.end(String(e));
    }
  });
  await new Promise((r) => srv.listen(port, '127.0.0.1', r));
  h.onCleanup(() => srv.close());
  return { srv, base: `http://127.0.0.1:${port}` };
}

const mint = async (session, user, ttl = '10m') =>
  (await api(courier, 'POST', '/v1/notifications/tokens', { session_id: session, user_id: user, ttl })).data.token;
const send = async (body) => (await api(courier, 'POST', '/v1/notifications', { type: 'generic', ...body })).data;
const toUser = (user, mode, title, extra = {}) =>
  send({ target: 'user', user_id: user, mode, payload: { title, message: `${mode} for ${user}` }, ...extra });

/**
 * Opens the app page and a client for `user` on `session` whose tokens come
 * from the app's backend; records statuses and events in `window.seen`.
 */
async function openApp(label, { user, session, context = null, contextOptions = {}, settings = null, clock = false }) {
  const page = await h.newPage(label, { context, contextOptions });
  if (clock) await page.clock.install();
  await page.goto(`${site.base}/app.html`);
  await page.evaluate(({ url, user, session, settings }) => {
    window.seen = { statuses: [], events: [], providerCalls: 0 };
    document.addEventListener('courier:notification-status', (e) => window.seen.statuses.push(e.detail.status));
    document.addEventListener('courier:notification', (e) => window.seen.events.push(e.detail));
    window.client = Courier.notifications({
      url,
      tokenProvider: () => {
        window.seen.providerCalls += 1;
        return fetch(`/token?user=${user}&session=${session}`).then((r) => r.text());
      },
    });
    if (settings) window.client.configure(settings);
  }, { url: courier.base, user, session, settings });
  await waitStatus(page, 'connected');
  await until(`${label} to finish its replay`, () => page.evaluate(() => window.client.viewer !== null));
  return page;
}

const waitStatus = (page, status) =>
  until(`status "${status}"`, () => page.evaluate((s) => window.client.status === s, status));
const titles = (page) => page.locator('.courier-toast .courier-toast-title').allTextContents();
const toast = (page, title) => page.locator('.courier-toast', { has: page.locator('.courier-toast-title', { hasText: title }) });
const sameList = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// ---------- the checks ----------
async function served() {
  await step('both builds are served as checked in, with ETag, caching and CORS for the app origin', async () => {
    for (const [file, route] of [['notifications.js', '/notifications.js'], ['notifications.mjs', '/notifications.mjs']]) {
      const res = await fetch(courier.base + route, { headers: { origin: site.base } });
      assert(res.status === 200, `${route}: ${res.status}`);
      assert(/^text\/javascript/.test(res.headers.get('content-type')), `${route}: ${res.headers.get('content-type')}`);
      assert(res.headers.get('access-control-allow-origin') === site.base, `${route}: no CORS for ${site.base}`);
      assert(/max-age=\d+/.test(res.headers.get('cache-control') || ''), `${route}: cache-control ${res.headers.get('cache-control')}`);
      const etag = res.headers.get('etag');
      assert(etag, `${route}: no ETag`);
      assert(await res.text() === fs.readFileSync(path.join(CLIENT_DIR, file), 'utf8'), `${route} differs from ${file}`);
      const again = await fetch(courier.base + route, { headers: { 'if-none-match': etag } });
      assert(again.status === 304, `${route} with If-None-Match: ${again.status}`);
    }
  });

  await step(`the minified client is within its ${SIZE_BUDGET} byte budget`, async () => {
    const source = fs.readFileSync(path.join(CLIENT_DIR, 'notifications.js'), 'utf8');
    const { code } = await minify(source, { compress: true, mangle: true });
    log(`notifications.js: ${source.length} bytes, ${code.length} minified`);
    assert(code.length <= SIZE_BUDGET, `minified client is ${code.length} bytes`);
  });
}

async function startingUp() {
  await step('a script tag with data-courier-auto starts a client at once and exposes it', async () => {
    const token = await mint('auto-session', 'auto-user');
    const page = await h.newPage('auto');
    await page.goto(`${site.base}/auto.html?token=${token}`);
    await until('window.courierNotifications to connect', () =>
      page.evaluate(() => window.courierNotifications && window.courierNotifications.status === 'connected'));
    await until('its viewer', () => page.evaluate(() => window.courierNotifications.viewer));
    const viewer = await page.evaluate(() => window.courierNotifications.viewer);
    assert(viewer.session_id === 'auto-session' && viewer.user_id === 'auto-user', `viewer ${JSON.stringify(viewer)}`);
    await toUser('auto-user', 'queued', 'Auto hello');
    await toast(page, 'Auto hello').waitFor({ timeout: WAIT_MS });
    await page.context().close();
  });

  await step('the ES module build works from another origin', async () => {
    const token = await mint('module-session', 'module-user');
    const page = await h.newPage('module');
    await page.goto(`${site.base}/module.html?token=${token}`);
    await until('the module client to connect', () =>
      page.evaluate(() => window.viaModule && window.viaModule.status === 'connected'));
    await toUser('module-user', 'queued', 'Module hello');
    await toast(page, 'Module hello').waitFor({ timeout: WAIT_MS });
    assert(await page.evaluate(() => typeof window.Courier.notifications) === 'function', 'no global either');
    await page.context().close();
  });
}

async function toasts() {
  await step('each mode shows a toast; ephemeral clears after 5 s, timeseries after 8 s, queued stays', async () => {
    const page = await openApp('modes', { user: 'mia', session: 'mia-1', clock: true });
    // Time stands still in the page from here on, and moves only when the test says.
    await page.clock.pauseAt((await page.evaluate(() => Date.now())) + 1000);
    await toUser('mia', 'queued', 'Queued one');
    await toUser('mia', 'timeseries', 'Timeseries one');
    await toUser('mia', 'ephemeral', 'Ephemeral one');
    await until('three toasts', async () => (await titles(page)).length === 3);
    assert(await toast(page, 'Queued one').locator('.courier-toast-close').count() === 1, 'queued has no close button');
    assert(await toast(page, 'Timeseries one').locator('.courier-toast-close').count() === 0, 'timeseries has one');
    assert(await toast(page, 'Ephemeral one').locator('.courier-toast-close').count() === 0, 'ephemeral has one');
    await page.clock.runFor(4_900);
    assert(sameList(await titles(page), ['Queued one', 'Timeseries one', 'Ephemeral one']), `after 4.9 s: ${await titles(page)}`);
    await page.clock.runFor(200);
    assert(sameList(await titles(page), ['Queued one', 'Timeseries one']), `after 5.1 s: ${await titles(page)}`);
    await page.clock.runFor(2_800);
    assert(sameList(await titles(page), ['Queued one', 'Timeseries one']), 'timeseries cleared before 8 s');
    await page.clock.runFor(200);
    assert(sameList(await titles(page), ['Queued one']), `after 8.1 s: ${await titles(page)}`);
    await page.clock.runFor(60_000);
    assert(sameList(await titles(page), ['Queued one']), 'the queued toast cleared by itself');
    await page.context().close();
  });

  await step('at most 3 toasts on a desktop, the rest wait in order and follow when one closes', async () => {
    const page = await openApp('desktop', { user: 'dee', session: 'dee-1', contextOptions: { viewport: { width: 1280, height: 800 } } });
    for (let i = 1; i <= 5; i++) await toUser('dee', 'queued', `Desk ${i}`);
    await until('three visible', async () => sameList(await titles(page), ['Desk 1', 'Desk 2', 'Desk 3']));
    await sleep(300);
    assert((await titles(page)).length === 3, 'more than three visible');
    await toast(page, 'Desk 2').locator('.courier-toast-close').click();
    await until('Desk 4 to follow', async () => sameList(await titles(page), ['Desk 1', 'Desk 3', 'Desk 4']));
    await page.context().close();
  });

  await step('at most 2 toasts below 768 px', async () => {
    const page = await openApp('mobile', { user: 'moe', session: 'moe-1', contextOptions: { viewport: { width: 390, height: 800 }, isMobile: true } });
    for (let i = 1; i <= 4; i++) await toUser('moe', 'queued', `Phone ${i}`);
    await until('two visible', async () => sameList(await titles(page), ['Phone 1', 'Phone 2']));
    await sleep(300);
    assert((await titles(page)).length === 2, 'more than two visible');
    await page.context().close();
  });

  await step('preventDefault on courier:notification suppresses the toast but the app gets the envelope', async () => {
    const page = await openApp('custom', { user: 'cy', session: 'cy-1' });
    await page.evaluate(() => document.addEventListener('courier:notification', (e) => {
      if (e.detail.payload && e.detail.payload.custom) e.preventDefault();
    }));
    await toUser('cy', 'queued', 'Handled by the app', { payload: { title: 'Handled by the app', custom: true } });
    await toUser('cy', 'queued', 'Plain toast');
    await toast(page, 'Plain toast').waitFor({ timeout: WAIT_MS });
    assert(await toast(page, 'Handled by the app').count() === 0, 'the suppressed toast is shown');
    const got = await page.evaluate(() => window.seen.events.map((e) => e.payload.title));
    assert(got.includes('Handled by the app'), `events: ${got}`);
    await send({ target: 'user', user_id: 'cy', type: 'order_shipped', payload: { order: 7 } });
    await until('the custom type event', () => page.evaluate(() => window.seen.events.some((e) => e.type === 'order_shipped')));
    assert(await page.locator('.courier-toast').count() === 1, 'a non-generic type rendered a toast');
    await page.context().close();
  });

  await step('markup in a notification is shown as text and never runs', async () => {
    const page = await openApp('xss', { user: 'xavier', session: 'x-1' });
    const evil = '<img src=x onerror="window.__pwned=1">';
    await send({ target: 'user', user_id: 'xavier', payload: { title: evil, message: `<script>window.__pwned=2</script>${evil}` } });
    const t = page.locator('.courier-toast');
    await t.waitFor({ timeout: WAIT_MS });
    await sleep(300);
    assert(await t.locator('.courier-toast-title').textContent() === evil, 'the title is not the literal text');
    assert(await t.locator('img, script').count() === 0, 'markup became elements');
    assert(await page.evaluate(() => window.__pwned === undefined), 'the payload ran');
    await page.context().close();
  });

  await step('toasts are announced politely, close buttons are reachable by keyboard, reduced motion is respected', async () => {
    const page = await openApp('a11y', { user: 'ada', session: 'ada-1', contextOptions: { reducedMotion: 'reduce' } });
    await toUser('ada', 'queued', 'Keyboard me');
    const t = toast(page, 'Keyboard me');
    await t.waitFor({ timeout: WAIT_MS });
    assert(await page.locator('.courier-toasts').getAttribute('aria-live') === 'polite', 'no polite live region');
    assert(await t.evaluate((el) => getComputedStyle(el).animationName) === 'none', 'it animates under reduced motion');
    let focused = false;
    for (let i = 0; i < 10 && !focused; i++) {
      await page.keyboard.press('Tab');
      focused = await page.evaluate(() => document.activeElement && document.activeElement.classList.contains('courier-toast-close'));
    }
    assert(focused, 'Tab never reached the close button');
    await page.keyboard.press('Enter');
    await t.waitFor({ state: 'detached', timeout: WAIT_MS });
    await page.context().close();
  });
}

async function dismissal() {
  await step('closing a queued toast dismisses it on the server: it stays gone after a reload', async () => {
    const page = await openApp('close', { user: 'cleo', session: 'cleo-1' });
    const kept = await toUser('cleo', 'queued', 'Keep me');
    const closed = await toUser('cleo', 'queued', 'Close me');
    await until('both toasts', async () => (await titles(page)).length === 2);
    const answered = page.waitForResponse((r) => r.url().endsWith(`/notifications/${closed.id}`) && r.request().method() === 'DELETE');
    await toast(page, 'Close me').locator('.courier-toast-close').click();
    await toast(page, 'Close me').waitFor({ state: 'detached', timeout: WAIT_MS });
    const res = await answered;
    assert(res.status() === 200, `DELETE /notifications/{id} answered ${res.status()}`);
    await page.reload();
    await page.evaluate((url) => {
      window.client = Courier.notifications({ url, tokenProvider: () => fetch('/token?user=cleo&session=cleo-1').then((r) => r.text()) });
    }, courier.base);
    await toast(page, 'Keep me').waitFor({ timeout: WAIT_MS });
    await until('the replay to finish', () => page.evaluate(() => window.client.viewer !== null));
    assert(sameList(await titles(page), ['Keep me']), `after the reload: ${await titles(page)} (kept ${kept.id})`);
    await page.context().close();
  });

  await step('two tabs of one user: dismissed in one, gone from the other', async () => {
    const first = await openApp('tab 1', { user: 'tess', session: 'tess-tab-1' });
    const second = await openApp('tab 2', { user: 'tess', session: 'tess-tab-2' });
    await toUser('tess', 'queued', 'On both tabs');
    await toast(first, 'On both tabs').waitFor({ timeout: WAIT_MS });
    await toast(second, 'On both tabs').waitFor({ timeout: WAIT_MS });
    await toast(first, 'On both tabs').locator('.courier-toast-close').click();
    await toast(second, 'On both tabs').waitFor({ state: 'detached', timeout: WAIT_MS });
    await first.context().close();
    await second.context().close();
  });

  await step('a newer notification of a group replaces the older toast in place', async () => {
    const page = await openApp('group', { user: 'gus', session: 'gus-1' });
    await toUser('gus', 'queued', 'Before');
    await toUser('gus', 'queued', 'Upload 10%', { group: 'upload' });
    await toUser('gus', 'queued', 'After');
    await until('three toasts', async () => sameList(await titles(page), ['Before', 'Upload 10%', 'After']));
    await toUser('gus', 'queued', 'Upload 100%', { group: 'upload' });
    await until('the group toast to change in place', async () => sameList(await titles(page), ['Before', 'Upload 100%', 'After']));
    await sleep(300); // the older one's dismissal has arrived and removed nothing else
    assert(sameList(await titles(page), ['Before', 'Upload 100%', 'After']), `after the dismissal: ${await titles(page)}`);
    await page.context().close();
  });
}

async function connection() {
  await step('blur suspends the stream, focus resumes it and replays what came meanwhile', async () => {
    const page = await openApp('focus', { user: 'fay', session: 'fay-1' });
    await page.evaluate(() => window.dispatchEvent(new Event('blur')));
    await waitStatus(page, 'suspended');
    await toUser('fay', 'queued', 'While away');
    await sleep(500);
    assert(await toast(page, 'While away').count() === 0, 'a suspended page got a live notification');
    await page.evaluate(() => window.dispatchEvent(new Event('focus')));
    await waitStatus(page, 'connected');
    await toast(page, 'While away').waitFor({ timeout: WAIT_MS });
    await page.evaluate(() => window.client.configure({ persistConnection: true }));
    await page.evaluate(() => window.dispatchEvent(new Event('blur')));
    await sleep(300);
    assert(await page.evaluate(() => window.client.status) === 'connected', 'persistConnection still suspends on blur');
    await page.context().close();
  });

  await step('with persistConnection, a tab hidden for more than 30 s reconnects when it is shown again', async () => {
    const page = await openApp('hidden', { user: 'hal', session: 'hal-1', clock: true, settings: { persistConnection: true } });
    const setHidden = (hidden) => page.evaluate((value) => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => value });
      document.dispatchEvent(new Event('visibilitychange'));
    }, hidden);
    await page.evaluate(() => { window.seen.statuses = []; });
    await setHidden(true);
    await page.clock.fastForward(10_000);
    await setHidden(false);
    await sleep(300);
    assert(sameList(await page.evaluate(() => window.seen.statuses), []), 'a short absence reconnected');
    await setHidden(true);
    await page.clock.fastForward(31_000);
    assert(await page.evaluate(() => window.client.status) === 'connected', 'hidden with persistConnection disconnected');
    await setHidden(false);
    await until('a fresh connection', async () =>
      sameList(await page.evaluate(() => window.seen.statuses), ['connecting', 'connected']));
    await toUser('hal', 'queued', 'After the absence');
    await toast(page, 'After the absence').waitFor({ timeout: WAIT_MS });
    await page.context().close();
  });

  await step('an expired token is refreshed through tokenProvider', async () => {
    const page = await h.newPage('token refresh');
    await page.goto(`${site.base}/app.html`);
    const expired = await mint('tom-1', 'tom', '1s');
    await sleep(2_100); // a token that has expired
    await page.evaluate(({ url, expired }) => {
      window.seen = { statuses: [], providerCalls: 0 };
      document.addEventListener('courier:notification-status', (e) => window.seen.statuses.push(e.detail.status));
      window.client = Courier.notifications({
        url,
        token: expired,
        tokenProvider: () => {
          window.seen.providerCalls += 1;
          // The first answer is stale too: the stream refuses it (401) and the client asks again.
          if (window.seen.providerCalls === 1) return expired;
          return fetch('/token?user=tom&session=tom-1&ttl=10m').then((r) => r.text());
        },
      });
    }, { url: courier.base, expired });
    await waitStatus(page, 'connected');
    const calls = await page.evaluate(() => window.seen.providerCalls);
    assert(calls === 2, `tokenProvider was called ${calls} times`);
    await toUser('tom', 'queued', 'Fresh token');
    await toast(page, 'Fresh token').waitFor({ timeout: WAIT_MS });
    await page.context().close();
  });

  await step('across a server restart: connected → reconnecting → connected, queued ones replayed without duplicates', async () => {
    const page = await openApp('restart', { user: 'rex', session: 'rex-1' });
    const one = await toUser('rex', 'queued', 'Rex one');
    await toUser('rex', 'queued', 'Rex two');
    await until('two toasts', async () => (await titles(page)).length === 2);
    await page.evaluate(() => { window.seen.statuses = []; });
    await h.stopServer(courier);
    await waitStatus(page, 'reconnecting');
    courier = await h.startServer('notifications server (restarted)', { again: courier });
    // Whether the page is back yet or not: dismissed on another device, and a new one.
    const other = await mint('rex-phone', 'rex');
    const res = await fetch(`${courier.base}/notifications/${one.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${other}` } });
    assert(res.status === 200, `dismiss on the phone: ${res.status}`);
    await toUser('rex', 'queued', 'Rex three');
    await waitStatus(page, 'connected');
    await until('the page to show two and three', async () => sameList(await titles(page), ['Rex two', 'Rex three']));
    await sleep(500);
    assert(sameList(await titles(page), ['Rex two', 'Rex three']), `after settling: ${await titles(page)}`);
    const statuses = await page.evaluate(() => window.seen.statuses);
    assert(statuses[0] === 'reconnecting' && statuses[statuses.length - 1] === 'connected'
      && statuses.every((s) => s === 'reconnecting' || s === 'connected'), `statuses: ${statuses}`);
    await page.context().close();
  });
}

async function demo() {
  await step('the demo page, linked from the dashboard, sends to itself and shows three toasts', async () => {
    const page = await h.newPage('demo', { contextOptions: { viewport: { width: 1100, height: 760 } } });
    await page.goto(`${courier.base}/`);
    await page.locator('[data-testid="demo-link"]').click();
    await page.waitForURL(/\/notifications\/demo$/);
    await until('the demo to connect', async () => (await page.getAttribute('[data-testid="status"]', 'data-status')) === 'connected');
    await until('its viewer', async () => /User demo/.test(await page.textContent('[data-testid="who"]')));
    const kinds = [['user', 'queued', 'Build finished', 'courier-cli 0.1.0 is ready to download.'],
      ['session', 'timeseries', 'Deploy started', 'Rolling out to 3 nodes.'],
      ['user', 'queued', 'New comment', 'Ada replied to your post.']];
    for (const [target, mode, title, message] of kinds) {
      await page.selectOption('[data-testid="target"]', target);
      await page.selectOption('[data-testid="mode"]', mode);
      await page.fill('[data-testid="title"]', title);
      await page.fill('[data-testid="message"]', message);
      await page.click('[data-testid="send-button"]');
      await toast(page, title).waitFor({ timeout: WAIT_MS });
    }
    assert((await titles(page)).length === 3, `toasts: ${await titles(page)}`);
    const file = await h.shot(page, 'notifications-demo', ARTEFACTS);
    log(`demo screenshot: ${file}`);
    await page.context().close();
  });
}

h.run(async () => {
  const sitePort = await freePort();
  const siteOrigin = `http://127.0.0.1:${sitePort}`;
  courier = await h.startServer('notifications server', {
    env: { COURIER_NOTIFICATIONS_TOKEN_SECRET: SECRET, COURIER_HTTP_CORS_ORIGINS: siteOrigin },
  });
  site = await startSite(sitePort);
  await served();
  await startingUp();
  await toasts();
  await dismissal();
  await connection();
  await demo();
});
