// Drives the dashboard (GET /) in Debian's headless Chromium against a real
// `courier serve`, and checks through the page what a person would see.
//
//   COURIER_BIN=/path/to/courier node dashboard.test.mjs
//
// COURIER_BIN defaults to ../../target/debug/courier (relative to this folder);
// CHROMIUM to /usr/bin/chromium. Nothing is built or downloaded here. The whole
// run is bounded by 90 s; the exit code is non-zero on any failure. With
// SCREENSHOTS=<dir> it also saves a picture of each view there.

import http from 'node:http';
import { assert, freePort, harness, until, WAIT_MS } from './harness.mjs';

const TOKEN = 'dashboard-test-token';
const h = harness('dashboard');
const { api, log, step } = h;
let receiver = null;
h.onCleanup(() => receiver && receiver.srv.close());

// The webhooks of these servers retry quickly.
const startServer = (name, tokens = '', again = null) =>
  h.startServer(name, { tokens, again, env: { COURIER_WEBHOOKS_SCHEDULE: '300ms,300ms', COURIER_WEBHOOKS_ALLOW_PRIVATE: '127.0.0.1/32,::1/128', COURIER_WEBHOOKS_SECRET_KEY: 'AG997S88LNpAm0Rom4TeLVh0GSchFj+eO/whPOkGJrw=' } });
const stopServer = h.stopServer;
const shot = (page, name) => h.shot(page, name);
const newPage = (label) => h.newPage(label);

// Executions of functions no node runs, so only this test's claims take their tasks.
const dispatch = async (server, fn, args = {}) =>
  (await api(server, 'POST', '/v1/executions', { function: fn, args })).data;
async function claim(server, execution) {
  const { data } = await api(server, 'POST', '/v1/workers/claim', {
    worker_id: 'browser-test', wait: '2s', functions: [execution.function],
  });
  assert(data.length === 1, `expected one claimed task, got ${JSON.stringify(data)}`);
  assert(data[0].execution_id === execution.id, `claimed a task of ${data[0].execution_id}, not of ${execution.id}`);
  return data[0];
}

// A webhook endpoint that answers 500 to its first request and 200 after, and
// 410 Gone at /gone.
async function startReceiver() {
  const port = await freePort();
  const got = [];
  const srv = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      if (req.url === '/gone') {
        res.writeHead(410, { 'content-type': 'text/plain' });
        res.end('gone');
        return;
      }
      got.push({ headers: req.headers, body });
      res.writeHead(got.length === 1 ? 500 : 200, { 'content-type': 'text/plain' });
      res.end(got.length === 1 ? 'try again' : 'ok');
    });
  });
  await new Promise((r) => srv.listen(port, '127.0.0.1', r));
  return { srv, url: `http://127.0.0.1:${port}/hook`, gone: `http://127.0.0.1:${port}/gone`, got };
}

const row = (page, id) => page.locator(`[data-testid="execution-row"][data-id="${id}"]`);
const rowState = (page, id) => row(page, id).locator('[data-testid="execution-state"]');
const expectText = (locator, text, what) =>
  until(what || `"${text}"`, async () => (await locator.textContent({ timeout: 500 })).trim() === text);

// ---------- the checks ----------
async function withoutTokens() {
  receiver = await startReceiver();
  const server = await startServer('open server');
  const hook = (await api(server, 'POST', '/v1/webhooks', {
    url: receiver.url, event_types: ['execution.completed'], description: 'browser test hook',
  })).data;

  const page = await newPage('open');
  await step('the dashboard loads and its event stream goes live', async () => {
    await page.goto(server.base + '/');
    await until('connection status "live"', async () =>
      (await page.getAttribute('[data-testid="conn-status"]', 'data-state')) === 'live');
    await page.evaluate(() => { window.__noReload = true; });
  });

  let first;
  await step('an execution dispatched over the API appears without a reload', async () => {
    first = await dispatch(server, 'external_fn', { n: 1 });
    await row(page, first.id).waitFor({ timeout: WAIT_MS });
    await expectText(rowState(page, first.id), 'pending');
  });

  await step('claiming and completing it turn it running, then completed, live over SSE', async () => {
    const task = await claim(server, first);
    await expectText(rowState(page, first.id), 'running');
    await api(server, 'POST', `/v1/tasks/${task.task_id}/complete`, { lease_token: task.lease_token, result: { ok: true } });
    await expectText(rowState(page, first.id), 'completed');
    assert(await page.evaluate(() => window.__noReload === true) && page.loads === 1, 'the page reloaded');
  });

  await step('its detail shows its steps and events', async () => {
    await row(page, first.id).click();
    const detail = page.locator('[data-testid="execution-detail"]');
    await detail.waitFor({ timeout: WAIT_MS });
    await expectText(detail.locator('[data-testid="detail-id"]'), first.id);
    await expectText(detail.locator('[data-testid="detail-state"]'), 'completed');
    const steps = detail.locator('[data-testid="step-row"]');
    await until('one step row', async () => (await steps.count()) === 1);
    const cells = (await steps.first().locator('td').allTextContents()).map((c) => c.trim());
    assert(JSON.stringify(cells.slice(0, 5)) === JSON.stringify(['0', 'activity', 'external_fn', 'completed', '1']),
      `step row: ${JSON.stringify(cells)}`);
    const types = await until('the execution\'s events', async () => {
      const t = await detail.locator('[data-testid="event-row"]').evaluateAll((rows) => rows.map((r) => r.dataset.type));
      return t.includes('execution.completed') && t;
    });
    for (const t of ['execution.created', 'task.created', 'task.started', 'execution.started', 'task.completed', 'execution.completed']) {
      assert(types.includes(t), `events lack ${t}: ${types}`);
    }
    assert(await detail.locator('[data-testid="cancel-button"]').count() === 0, 'a finished execution offers Cancel');
    assert(!(await detail.textContent()).includes('[object'), 'the detail shows an unrendered object');
    await shot(page, 'execution-detail');
  });

  await step('filtering by state lists only executions in that state', async () => {
    const other = await dispatch(server, 'other_fn');
    await row(page, other.id).waitFor({ timeout: WAIT_MS });
    await page.selectOption('[data-testid="state-filter"]', 'completed');
    await until('the pending one to leave the list', async () => (await row(page, other.id).count()) === 0);
    await row(page, first.id).waitFor({ timeout: WAIT_MS });
    await page.selectOption('[data-testid="state-filter"]', '');
    await row(page, other.id).waitFor({ timeout: WAIT_MS });
    await api(server, 'POST', `/v1/executions/${other.id}/cancel`, {});
    await expectText(rowState(page, other.id), 'cancelled');
  });

  await step('cancel from the page cancels an unfinished execution', async () => {
    const x = await dispatch(server, 'cancel_fn');
    await row(page, x.id).click();
    const detail = page.locator('[data-testid="execution-detail"]');
    await expectText(detail.locator('[data-testid="detail-id"]'), x.id);
    await expectText(detail.locator('[data-testid="detail-state"]'), 'pending');
    const cancel = detail.locator('[data-testid="cancel-button"]');
    await cancel.click(); // arms it
    await expectText(cancel, 'Confirm cancel');
    await cancel.click(); // confirms
    await expectText(detail.locator('[data-testid="detail-state"]'), 'cancelled');
    await expectText(rowState(page, x.id), 'cancelled');
    await shot(page, 'cancelled');
    const { data } = await api(server, 'GET', `/v1/executions/${x.id}`);
    assert(data.execution.state === 'cancelled', `server says ${data.execution.state}`);
    assert(data.steps[0].state === 'cancelled', `its task is ${data.steps[0].state}`);
  });

  let failedTask;
  let failedExecution;
  await step('a dead-lettered execution turns failed and its dead letter is listed', async () => {
    failedExecution = await dispatch(server, 'flaky_fn');
    failedTask = await claim(server, failedExecution);
    await api(server, 'POST', `/v1/tasks/${failedTask.task_id}/fail`, {
      lease_token: failedTask.lease_token, error: 'boom', retryable: false,
    });
    await expectText(rowState(page, failedExecution.id), 'failed');
    const toast = page.locator('.courier-toast', { hasText: 'Execution failed: flaky_fn' });
    await toast.waitFor({ timeout: WAIT_MS });
    assert((await toast.textContent()).includes('boom'), 'the failure toast does not show the error');
    await toast.locator('.courier-toast-close').click();
    await toast.waitFor({ state: 'detached', timeout: WAIT_MS });
    await page.click('[data-testid="tab-dead-letters"]');
    const dl = page.locator(`[data-testid="dead-letter-row"][data-id="${failedTask.task_id}"]`);
    await dl.waitFor({ timeout: WAIT_MS });
    assert((await dl.textContent()).includes('boom'), 'the dead letter does not show its error');
    await shot(page, 'dead-letters');
  });

  await step('Replay on the page re-queues the task and resumes the execution', async () => {
    const dl = page.locator(`[data-testid="dead-letter-row"][data-id="${failedTask.task_id}"]`);
    await dl.locator('[data-testid="replay-button"]').click();
    await until('the dead letter to leave the list', async () => (await dl.count()) === 0);
    const { data } = await api(server, 'GET', `/v1/executions/${failedExecution.id}`);
    assert(data.execution.state === 'running', `execution is ${data.execution.state}`);
    assert(data.steps[0].state === 'pending', `task is ${data.steps[0].state}`);
    await page.click('[data-testid="tab-executions"]');
    await expectText(rowState(page, failedExecution.id), 'running');
  });

  await step('Discard on the page deletes a dead letter', async () => {
    const x = await dispatch(server, 'discard_fn');
    const task = await claim(server, x);
    await api(server, 'POST', `/v1/tasks/${task.task_id}/fail`, { lease_token: task.lease_token, error: 'bad', retryable: false });
    await page.click('[data-testid="tab-dead-letters"]');
    const dl = page.locator(`[data-testid="dead-letter-row"][data-id="${task.task_id}"]`);
    await dl.waitFor({ timeout: WAIT_MS });
    const discard = dl.locator('[data-testid="discard-button"]');
    await discard.click(); // arms it
    await expectText(discard, 'Confirm discard');
    await discard.click(); // confirms
    await until('the dead letter to leave the list', async () => (await dl.count()) === 0);
    const res = await fetch(`${server.base}/v1/dead-letters/${task.task_id}`);
    assert(res.status === 404, `the server still has it (${res.status})`);
  });

  await step('the webhook is listed with its delivery and both attempts', async () => {
    await until('the delivery to succeed on its second attempt', async () => {
      const { data } = await api(server, 'GET', `/v1/webhooks/${hook.id}/deliveries`);
      return data.deliveries.length === 1 && data.deliveries[0].state === 'delivered';
    });
    await page.click('[data-testid="tab-webhooks"]');
    const hookRow = page.locator(`[data-testid="webhook-row"][data-id="${hook.id}"]`);
    await hookRow.waitFor({ timeout: WAIT_MS });
    await expectText(hookRow.locator('[data-testid="webhook-url"]'), receiver.url);
    await expectText(hookRow.locator('[data-testid="webhook-state"]'), 'enabled');
    await hookRow.locator('[data-testid="deliveries-button"]').click();
    const delivery = page.locator(`[data-testid="deliveries-table"][data-webhook="${hook.id}"] [data-testid="delivery-row"]`);
    await delivery.first().waitFor({ timeout: WAIT_MS });
    assert(await delivery.count() === 1, 'expected one delivery');
    await expectText(delivery.locator('[data-testid="delivery-state"]'), 'delivered');
    assert((await delivery.textContent()).includes('execution.completed'), 'the delivery does not name its event');
    const statuses = (await delivery.locator('[data-testid="attempt-status"]').allTextContents()).map((s) => s.trim());
    assert(JSON.stringify(statuses) === '["500","200"]', `attempt statuses: ${statuses}`);
    const attempts = await delivery.locator('[data-testid="attempt-row"]').allTextContents();
    assert(attempts.every((a) => / ms /.test(a)), `attempts lack latency: ${attempts}`);
    assert(await delivery.locator('[data-testid="attempt-error"]').count() === 1, 'the failed attempt shows no error');
    assert(receiver.got.length === 2, `the receiver got ${receiver.got.length} requests`);
    await shot(page, 'webhooks');
  });

  await step('Disable and Enable on the page switch the webhook', async () => {
    const hookRow = page.locator(`[data-testid="webhook-row"][data-id="${hook.id}"]`);
    await hookRow.locator('[data-testid="toggle-webhook"]').click();
    await expectText(hookRow.locator('[data-testid="webhook-state"]'), 'disabled');
    assert((await api(server, 'GET', `/v1/webhooks/${hook.id}`)).data.enabled === false, 'the server still has it enabled');
    await hookRow.locator('[data-testid="toggle-webhook"]').click();
    await expectText(hookRow.locator('[data-testid="webhook-state"]'), 'enabled');
    assert((await api(server, 'GET', `/v1/webhooks/${hook.id}`)).data.enabled === true, 'the server still has it disabled');
  });

  await step('an endpoint that answers 410 Gone is disabled, and a toast says so', async () => {
    const gone = (await api(server, 'POST', '/v1/webhooks', {
      url: receiver.gone, event_types: ['execution.completed'], description: 'gone',
    })).data;
    await page.click('[data-testid="tab-executions"]');
    const x = await dispatch(server, 'external_fn', { n: 'for the gone hook' });
    const task = await claim(server, x);
    await api(server, 'POST', `/v1/tasks/${task.task_id}/complete`, { lease_token: task.lease_token, result: 3 });
    const toast = page.locator('.courier-toast', { hasText: 'Webhook endpoint disabled' });
    await toast.waitFor({ timeout: WAIT_MS });
    assert((await api(server, 'GET', `/v1/webhooks/${gone.id}`)).data.enabled === false, 'the server did not disable it');
  });

  await page.context().close();
}

async function withTokens() {
  const server = await startServer('token server', TOKEN);
  const page = await newPage('token');

  await step('with tokens configured the page asks for one', async () => {
    await page.goto(server.base + '/');
    await page.locator('[data-testid="token-dialog"]').waitFor({ state: 'visible', timeout: WAIT_MS });
    await until('connection status "needs-token"', async () =>
      (await page.getAttribute('[data-testid="conn-status"]', 'data-state')) === 'needs-token');
    await shot(page, 'token-prompt');
  });

  await step('a wrong token is refused and asked again', async () => {
    await page.fill('[data-testid="token-input"]', 'not-the-token');
    await page.click('[data-testid="token-submit"]');
    await expectText(page.locator('[data-testid="token-error"]'), 'That token was refused.');
    await page.locator('[data-testid="token-dialog"]').waitFor({ state: 'visible', timeout: WAIT_MS });
  });

  await step('with the right token the page works, live', async () => {
    await page.fill('[data-testid="token-input"]', TOKEN);
    await page.click('[data-testid="token-submit"]');
    await page.locator('[data-testid="token-dialog"]').waitFor({ state: 'hidden', timeout: WAIT_MS });
    await until('connection status "live"', async () =>
      (await page.getAttribute('[data-testid="conn-status"]', 'data-state')) === 'live');
    const x = await dispatch(server, 'external_fn', { n: 'authed' });
    await row(page, x.id).waitFor({ timeout: WAIT_MS });
    const task = await claim(server, x);
    await api(server, 'POST', `/v1/tasks/${task.task_id}/complete`, { lease_token: task.lease_token, result: 1 });
    await expectText(rowState(page, x.id), 'completed');
    assert(await page.evaluate(() => localStorage.getItem('courier.token')) === TOKEN, 'the token was not stored');
  });

  await step('after a reload the stored token is used without asking', async () => {
    await page.reload();
    await until('connection status "live"', async () =>
      (await page.getAttribute('[data-testid="conn-status"]', 'data-state')) === 'live');
    assert(await page.locator('[data-testid="token-dialog"]').isHidden(), 'the token dialog is shown again');
    await until('the executions list', async () => (await page.locator('[data-testid="execution-row"]').count()) === 1);
  });

  await step('when the server restarts the page shows it, reconnects by itself and goes on live', async () => {
    await stopServer(server);
    await until('connection status to leave "live"', async () =>
      (await page.getAttribute('[data-testid="conn-status"]', 'data-state')) !== 'live');
    const again = await startServer('token server (restarted)', TOKEN, server);
    const x = await dispatch(again, 'external_fn', { n: 'after restart' });
    await until('connection status "live" again', async () =>
      (await page.getAttribute('[data-testid="conn-status"]', 'data-state')) === 'live');
    await row(page, x.id).waitFor({ timeout: WAIT_MS });
    const task = await claim(again, x);
    await api(again, 'POST', `/v1/tasks/${task.task_id}/complete`, { lease_token: task.lease_token, result: 2 });
    await expectText(rowState(page, x.id), 'completed');
    assert(page.loads === 2, 'the page reloaded itself');
  });

  await page.context().close();
}

h.run(async () => {
  await withoutTokens();
  await withTokens();
});
