// Pigeon's web dashboard in a real browser: Debian's chromium driven headless by
// playwright-core (no browser is downloaded), with amqplib on the side as the application a
// user watches. Scenarios: log in as guest; see a queue an AMQP client declared; publish and
// get a message through the UI (the message stays in the queue), then move it to another queue;
// import a definitions file;
// close a connection (the amqplib connection sees it closed with 320 CONNECTION_FORCED);
// a stream (x-queue-type: stream) is listed as one, its page shows its offsets and size and no
// get, move or purge; a super stream made through the API (PUT /api/stream/super-streams)
// shows its exchange and partitions; one added and deleted through the UI.
//
//   PIGEON_HTTP_URL=http://127.0.0.1:15672 AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f \
//     node --test dashboard.test.js
//
// SCREENSHOTS=dir also saves screenshots of the main pages there (light, and dark).
// CHROMIUM=/path/to/chromium overrides /usr/bin/chromium.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const amqp = require('amqplib');
const mqtt = require('mqtt');
const { chromium } = require('playwright-core');

const BASE = process.env.PIGEON_HTTP_URL || 'http://127.0.0.1:15672';
const AMQP_URL = process.env.AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/%2f';
// Without it the MQTT scenario is skipped.
const MQTT_URL = process.env.MQTT_URL || '';
const SHOTS = process.env.SCREENSHOTS || '';
const WAIT = 15_000;
const id = crypto.randomBytes(4).toString('hex');

let context;
let page;
let userDir;
const connections = [];
const mqttClients = [];

function mqttClient(clientId, options = {}) {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(MQTT_URL, { clientId, username: 'guest', password: 'guest', reconnectPeriod: 0, connectTimeout: WAIT, ...options });
    mqttClients.push(c);
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}

async function apiGet(p) {
  return fetch(`${BASE}${p}`, { headers: { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}` } });
}

async function apiPut(p, body) {
  return fetch(`${BASE}${p}`, { method: 'PUT', body: JSON.stringify(body), headers: {
    authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}`, 'content-type': 'application/json' } });
}

// The value of the figure labelled `label` on a queue's page.
function stat(label) {
  return page.locator('.stat', { has: page.locator('.stat-label', { hasText: new RegExp(`^${label}$`) }) }).locator('.stat-value');
}

// The value of the `dt` labelled `label` in a card's facts.
function fact(card, label) {
  return card.locator('dt', { hasText: new RegExp(`^${label}$`) }).locator('xpath=following-sibling::dd[1]');
}
// Console errors other than failed requests (a 401 for the wrong password, a 404 for an
// endpoint the broker lacks): a Content-Security-Policy violation, a script error.
const consoleErrors = [];

async function amqpConnection(name) {
  const conn = await amqp.connect(AMQP_URL, { clientProperties: { connection_name: name } });
  conn.errors = [];
  conn.on('error', (e) => conn.errors.push(e));
  connections.push(conn);
  return conn;
}

async function shot(name) {
  if (!SHOTS) return;
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.waitForTimeout(300);
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false });
}

// Follows a link of the app's navigation (no reload: the charts keep their history).
async function nav(name) {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true }).click();
  await page.getByRole('heading', { name, level: 1 }).waitFor();
}

async function go(p) {
  await page.goto(`${BASE}${p}`);
  await page.locator('main h1').first().waitFor({ timeout: WAIT });
}

before(async () => {
  userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pigeon-chromium-'));
  if (SHOTS) fs.mkdirSync(SHOTS, { recursive: true });
  context = await chromium.launchPersistentContext(userDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1440, height: 900 },
    colorScheme: 'light',
    acceptDownloads: true,
  });
  context.setDefaultTimeout(WAIT);
  page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (e) => consoleErrors.push(`the page threw: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(m.text());
  });
});

after(async () => {
  for (const c of connections) await c.close().catch(() => {});
  for (const c of mqttClients) await c.endAsync(true).catch(() => {});
  if (context) await context.close();
  if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
});

test('a wrong password is refused, then guest logs in', async () => {
  await page.goto(`${BASE}/`);
  await page.getByLabel('Username').fill('guest');
  await page.getByLabel('Password').fill('not-the-password');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').getByText('Wrong username or password').waitFor();
  await page.getByLabel('Password').fill('guest');
  await shot('login');
  await page.getByLabel('Password').press('Enter');
  await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
  await page.getByText('Signed in as').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('pigeon.auth') !== null), true);
  // A reload keeps the session (sessionStorage), as RabbitMQ's UI keeps its cookie.
  await page.reload();
  await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
});

test('a queue an AMQP client declared is listed, searchable, and has its page', async () => {
  const conn = await amqpConnection(`browser-declare-${id}`);
  const ch = await conn.createChannel();
  const queue = `browser-orders-${id}`;
  await ch.assertQueue(queue, { durable: true });
  await ch.assertQueue(`browser-other-${id}`, { durable: false });
  await go('/queues');
  await page.getByLabel('Filter Queues by name').fill(`orders-${id}`);
  // The API filtered: one queue shown, out of more.
  await page.getByText(/^1 \(of \d+\)/).waitFor();
  const row = page.getByRole('link', { name: queue, exact: true });
  await row.waitFor();
  assert.equal(await page.getByRole('link', { name: `browser-other-${id}` }).count(), 0);
  await row.click();
  await page.getByRole('heading', { name: queue, level: 1 }).waitFor();
  assert.match(page.url(), new RegExp(`/queues/%2F/${queue}$`));

  // A queue added through the UI (with arguments) is one amqplib finds.
  await go('/queues');
  await page.getByRole('button', { name: 'Add queue' }).click();
  const dialog = page.getByRole('dialog', { name: 'Add queue' });
  await dialog.getByLabel('Name').fill(`browser-added-${id}`);
  await dialog.getByLabel('Arguments (JSON)').fill('{"x-max-length": 10}');
  await dialog.getByRole('button', { name: 'Add queue' }).click();
  await page.getByRole('status').getByText('Queue added').waitFor();
  const check = await conn.createChannel();
  await check.checkQueue(`browser-added-${id}`);
  await check.close();
});

test('a message published and got through the UI stays in the queue', async () => {
  const queue = `browser-orders-${id}`;
  await go(`/queues/%2F/${queue}`);
  const publish = page.locator('section', { has: page.getByRole('heading', { name: 'Publish message' }) });
  await publish.getByLabel('Payload', { exact: true }).fill(`hello from the browser ${id}`);
  await publish.getByRole('button', { name: 'Publish message' }).click();
  await page.getByRole('status').getByText('Message published').first().waitFor();

  const get = page.locator('section', { has: page.getByRole('heading', { name: 'Get messages' }) });
  await get.getByRole('button', { name: 'Get messages' }).click();
  await get.getByText(`hello from the browser ${id}`).waitFor();

  // ack_requeue_true (the default) gave it back: amqplib still finds it.
  const conn = await amqpConnection(`browser-check-${id}`);
  const ch = await conn.createChannel();
  const msg = await ch.get(queue, { noAck: false });
  assert.ok(msg, 'the message is still in the queue');
  assert.equal(msg.content.toString(), `hello from the browser ${id}`);
  assert.equal(msg.fields.redelivered, true);
  ch.nack(msg, false, true);
  await ch.close();

  // Move it to another queue: it leaves this one and arrives there, whole.
  const other = `browser-other-${id}`;
  const move = page.locator('section', { has: page.getByRole('heading', { name: 'Move messages' }) });
  await move.getByLabel('Destination queue').fill(other);
  await move.getByRole('button', { name: 'Move messages' }).click();
  await page.getByRole('status').getByText(`1 message moved to ${other}`).waitFor();
  const check = await conn.createChannel();
  assert.equal((await check.checkQueue(queue)).messageCount, 0);
  const moved = await check.get(other, { noAck: true });
  assert.equal(moved && moved.content.toString(), `hello from the browser ${id}`);
  await check.close();
});

test('a definitions file imported through the UI declares what it names', async () => {
  const queue = `browser-imported-${id}`;
  const exchange = `browser-events-${id}`;
  const file = path.join(userDir, 'definitions.json');
  fs.writeFileSync(file, JSON.stringify({
    queues: [{ name: queue, vhost: '/', durable: true, auto_delete: false, arguments: {} }],
    exchanges: [{ name: exchange, vhost: '/', type: 'topic', durable: true, auto_delete: false, internal: false, arguments: {} }],
    bindings: [{ source: exchange, vhost: '/', destination: queue, destination_type: 'queue', routing_key: 'order.#', arguments: {} }],
  }));
  await go('/definitions');
  await page.getByLabel('Definitions file').setInputFiles(file);
  await page.getByText('1 queue · 1 exchange · 1 binding').waitFor();
  await page.getByRole('button', { name: 'Upload definitions' }).click();
  await page.getByText('Imported.').waitFor();

  const conn = await amqpConnection(`browser-import-${id}`);
  const ch = await conn.createConfirmChannel();
  await ch.checkQueue(queue);
  ch.publish(exchange, 'order.created', Buffer.from('routed'));
  await ch.waitForConfirms();
  const got = await ch.get(queue, { noAck: true });
  assert.equal(got && got.content.toString(), 'routed', 'the imported binding routes');

  // Export answers a file too.
  const download = page.waitForEvent('download');
  await page.getByRole('button', { name: 'Download definitions' }).click();
  const file2 = await (await download).path();
  const exported = JSON.parse(fs.readFileSync(file2, 'utf8'));
  assert.ok(exported.queues.some((q) => q.name === queue));
  await shot('definitions');
});

test('closing a connection in the UI closes the amqplib connection', async () => {
  const name = `browser-victim-${id}`;
  const conn = await amqpConnection(name);
  const closed = new Promise((resolve) => conn.on('close', resolve));
  await conn.createChannel();
  await go('/connections');
  const row = page.locator('tr', { hasText: name });
  await row.waitFor();
  await shot('connections');
  await row.getByRole('button', { name: /^Close connection/ }).click();
  const dialog = page.getByRole('dialog', { name: 'Close connection' });
  await dialog.getByLabel('Reason').fill(`closed by the browser test ${id}`);
  await dialog.getByRole('button', { name: 'Close connection' }).click();
  const err = await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the connection did not close')), WAIT))]);
  assert.ok(err, 'closed with an error');
  assert.match(String(err.message), /320|CONNECTION_FORCED/);
  assert.match(String(err.message), new RegExp(`closed by the browser test ${id}`));
  await row.waitFor({ state: 'detached' });
});

test('MQTT sessions and retained messages are listed, or an empty state without the endpoints', { skip: !MQTT_URL }, async () => {
  const clientId = `browser-mqtt-${id}`;
  const topic = `browser/${id}/temperature`;
  const c = await mqttClient(clientId, { protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 600 } });
  await c.subscribeAsync(`browser/${id}/#`, { qos: 1 });
  await c.publishAsync(topic, '21.5', { qos: 1, retain: true });
  const has = (await apiGet('/api/mqtt/sessions')).status === 200;
  await go('/mqtt');
  if (!has) {
    await page.getByText('No sessions to show').waitFor();
    return;
  }
  await page.getByText(clientId).waitFor();
  // The search boxes filter sessions by client id and retained messages by topic (the API's `name`).
  const sessionSearch = page.getByLabel('Filter MQTT sessions by client id');
  await sessionSearch.fill(`${clientId}-nobody`);
  await page.getByText('No match').waitFor();
  await sessionSearch.fill(clientId);
  await page.locator('tr', { hasText: clientId }).waitFor();
  const retainedSearch = page.getByLabel('Filter Retained messages by topic');
  await retainedSearch.fill(topic);
  const retainedTable = page.locator('.paged', { has: retainedSearch });
  // The message's row, not any row with the topic in it: once the filtered list is empty, its
  // empty state quotes the search ("Nothing is called like “<topic>”"), a row with the topic too.
  const retained = retainedTable.locator('tr[data-key]', { hasText: topic });
  await retained.getByText('21.5').waitFor();
  await retained.getByRole('button', { name: `Delete retained message of ${topic}` }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await retained.waitFor({ state: 'detached' });
  // The search (debounced) may apply before or after the delete: either way it ends empty.
  await retainedTable.getByText('No match').waitFor();
  assert.equal((await apiGet(`/api/mqtt/retained/%2F/${encodeURIComponent(topic)}`)).status, 404);
});

test('a stream is listed as one; its page shows its offsets and size, and no get, move or purge', async () => {
  const stream = `browser-stream-${id}`;
  const conn = await amqpConnection(`browser-stream-${id}`);
  const ch = await conn.createConfirmChannel();
  await ch.assertQueue(stream, { durable: true, arguments: { 'x-queue-type': 'stream', 'x-max-age': '7D' } });
  for (let i = 0; i < 25; i += 1) ch.sendToQueue(stream, Buffer.from(JSON.stringify({ event: i })));
  await ch.waitForConfirms();

  await go('/queues');
  await page.getByLabel('Filter Queues by name').fill(stream);
  await page.getByText(/^1 \(of \d+\)/).waitFor();
  const row = page.locator('tr', { has: page.getByRole('link', { name: stream, exact: true }) });
  await row.locator('td[data-label="Ready"]', { hasText: /^25$/ }).waitFor();
  assert.equal(await row.locator('td[data-label="Type"]').textContent(), 'stream');
  // Its size is its segment files', not the 0 B of message_bytes.
  assert.match(await row.locator('td[data-label="Bytes"]').textContent(), /^\d+(\.\d)? (B|KiB)$/);
  assert.notEqual(await row.locator('td[data-label="Bytes"]').textContent(), '0 B');

  await row.getByRole('link', { name: stream, exact: true }).click();
  await page.getByRole('heading', { name: stream, level: 1 }).waitFor();
  await page.getByText('Stream in / (default)').waitFor();
  await stat('Last offset').getByText('24', { exact: true }).waitFor();
  assert.equal(await stat('Messages').textContent(), '25');
  assert.equal(await stat('First offset').textContent(), '0');
  assert.equal(await stat('Segments').textContent(), '1');
  assert.match(await stat('Size').textContent(), /^\d+(\.\d)? (B|KiB)$/);
  const card = page.locator('section', { has: page.getByRole('heading', { name: 'Stream', exact: true }) });
  assert.equal(await fact(card, 'Committed offset').textContent(), '24');
  assert.equal(await fact(card, 'Max age').textContent(), '7D');
  assert.match(await fact(card, 'Readers').textContent(), /^0 on /);
  await page.getByText('Messages in the stream', { exact: true }).waitFor();
  // Streams refuse basic.get, purge and moving messages out: none is offered.
  for (const heading of ['Get messages', 'Move messages']) {
    assert.equal(await page.getByRole('heading', { name: heading }).count(), 0, `no ${heading}`);
  }
  assert.equal(await page.getByRole('button', { name: 'Purge' }).count(), 0, 'no Purge');
  assert.equal(await page.getByRole('button', { name: 'Delete' }).count(), 1);
  await shot('stream');

  // Publishing from the page appends to it: the next refresh shows offset 25.
  const publish = page.locator('section', { has: page.getByRole('heading', { name: 'Publish message' }) });
  await publish.getByLabel('Payload', { exact: true }).fill(`appended from the browser ${id}`);
  await publish.getByRole('button', { name: 'Publish message' }).click();
  await page.getByRole('status').getByText('Message published').first().waitFor();
  await stat('Last offset').getByText('25', { exact: true }).waitFor();
  assert.equal(await stat('Messages').textContent(), '26');
});

test('a super stream created through the API shows its exchange and partition streams', async () => {
  const name = `browser-orders-ss-${id}`;
  const r = await apiPut(`/api/stream/super-streams/%2F/${name}`, { partitions: 3 });
  assert.equal(r.status, 204, await r.text());

  await go(`/exchanges/%2F/${name}`);
  const details = page.locator('section', { has: page.getByRole('heading', { name: 'Details' }) });
  await details.getByText('super stream', { exact: true }).waitFor();
  const from = page.locator('section', { has: page.getByRole('heading', { name: 'Bindings from this exchange' }) });
  for (const i of [0, 1, 2]) {
    const binding = from.locator('tr', { has: page.getByRole('link', { name: `${name}-${i}`, exact: true }) });
    await binding.waitFor();
    assert.equal(await binding.locator('td[data-label="Routing key"]').textContent(), String(i));
    assert.match(await binding.locator('td[data-label="Arguments"]').textContent(), new RegExp(`x-stream-partition-order: ${i}`));
  }

  await go('/queues');
  await page.getByLabel('Filter Queues by name').fill(`${name}-`);
  await page.getByText(/^3 \(of \d+\)/).waitFor();
  const types = await page.locator('tr[data-key] td[data-label="Type"]').allTextContents();
  assert.deepEqual(types, ['stream', 'stream', 'stream']);
  await page.getByRole('link', { name: `${name}-1`, exact: true }).click();
  await page.getByRole('heading', { name: `${name}-1`, level: 1 }).waitFor();
  await stat('Last offset').getByText('–', { exact: true }).waitFor();
  // Which super stream it belongs to, from its binding's x-stream-partition-order.
  const card = page.locator('section', { has: page.getByRole('heading', { name: 'Stream', exact: true }) });
  await card.getByText(`Partition 1 of super stream ${name}`).waitFor();
  await card.getByRole('link', { name, exact: true }).click();
  await page.getByRole('heading', { name, level: 1 }).waitFor();
});

test('a super stream added and deleted through the UI', async () => {
  const name = `browser-regions-${id}`;
  await go('/queues');
  await page.getByRole('button', { name: 'Add super stream' }).click();
  const dialog = page.getByRole('dialog', { name: 'Add super stream' });
  await dialog.getByLabel('Name').fill(name);
  await dialog.getByLabel('Binding keys').fill('amer, emea');
  await dialog.getByLabel('Max age').fill('1D');
  await dialog.getByRole('button', { name: 'Add super stream' }).click();
  await page.getByRole('status').getByText('Super stream added').waitFor();
  const got = await (await apiGet(`/api/stream/super-streams/%2F/${name}`)).json();
  assert.deepEqual(got.partitions, [`${name}-amer`, `${name}-emea`]);
  const partition = await (await apiGet(`/api/queues/%2F/${name}-emea`)).json();
  assert.equal(partition.type, 'stream');
  assert.equal(partition.arguments['x-max-age'], '1D');

  // An AMQP publisher reaches a partition by its binding key.
  const conn = await amqpConnection(`browser-regions-${id}`);
  const ch = await conn.createConfirmChannel();
  ch.publish(name, 'emea', Buffer.from('to emea'));
  await ch.waitForConfirms();
  await go(`/queues/%2F/${name}-emea`);
  await stat('Messages').getByText('1', { exact: true }).waitFor();

  // Delete on the exchange's page removes the super stream whole.
  await go(`/exchanges/%2F/${name}`);
  await page.locator('section', { has: page.getByRole('heading', { name: 'Details' }) }).getByText('super stream', { exact: true }).waitFor();
  await page.getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('dialog', { name: 'Delete super stream' }).getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('status').getByText('Super stream deleted').waitFor();
  assert.equal((await apiGet(`/api/stream/super-streams/%2F/${name}`)).status, 404);
  assert.equal((await apiGet(`/api/queues/%2F/${name}-amer`)).status, 404);
  assert.equal((await apiGet(`/api/exchanges/%2F/${name}`)).status, 404);
});

test('every page loads, by keyboard too', async () => {
  for (const p of ['/overview', '/channels', '/exchanges', '/mqtt', '/nodes', '/log', '/users', '/vhosts', '/policies', '/limits']) {
    await go(p);
  }
  // The live log shows the broker's lines.
  await go('/log');
  await page.locator('.log li').first().waitFor();
  // Keyboard: the skip link comes first, then the navigation.
  await go('/overview');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.closest('nav') !== null), true);

  // A refresh that changes a row keeps the keyboard focus where it was.
  const queue = `browser-orders-${id}`;
  await go('/queues');
  await page.getByLabel('Filter Queues by name').fill(queue);
  await page.getByText(/^1 \(of \d+\)/).waitFor();
  const link = page.getByRole('link', { name: queue, exact: true });
  await link.focus();
  const loads = Number(await page.locator('.paged').getAttribute('data-loads'));
  const conn = await amqpConnection(`browser-focus-${id}`);
  const ch = await conn.createConfirmChannel();
  ch.sendToQueue(queue, Buffer.from('changes the row'));
  await ch.waitForConfirms();
  await page.waitForFunction((n) => Number(document.querySelector('.paged').dataset.loads) > n + 1, loads, { timeout: WAIT });
  assert.equal(await page.evaluate(() => document.activeElement.textContent), queue);
  // (The row was drawn again: it shows the message.)
  assert.equal(await page.evaluate(() => document.activeElement.closest('tr').querySelector('td[data-label="Ready"]').textContent), '1');

  assert.deepEqual(consoleErrors, [], 'no script error and no Content-Security-Policy violation');
});

test('screenshots of the main pages', { skip: !SHOTS }, async () => {
  // Traffic for the charts: a publisher and a consumer for a few seconds.
  const conn = await amqpConnection(`browser-traffic-${id}`);
  const ch = await conn.createChannel();
  const q = `browser-orders-${id}`;
  await ch.assertQueue(`browser-jobs-${id}`, { durable: true, arguments: { 'x-dead-letter-exchange': 'dlx' } });
  for (let i = 0; i < 40; i += 1) ch.sendToQueue(`browser-jobs-${id}`, Buffer.from(`job ${i}`));
  await ch.prefetch(50);
  await ch.consume(q, (m) => { if (m) setTimeout(() => ch.ack(m), 30); }, { noAck: false });
  let n = 0;
  const timer = setInterval(() => {
    for (let i = 0; i < 25 + (n % 7) * 5; i += 1) ch.sendToQueue(q, Buffer.from(`tick ${n}`));
    if (n % 3 === 0) ch.sendToQueue(`browser-jobs-${id}`, Buffer.from(JSON.stringify({ job: n, status: 'failed' })), { contentType: 'application/json' });
    n += 1;
  }, 200);
  if (MQTT_URL) {
    // Sessions for the MQTT page: a thermostat (MQTT 5, kept), a display (3.1.1), and a
    // sensor gone offline whose session waits for it; retained readings.
    const thermostat = await mqttClient(`thermostat-kitchen-${id}`, { protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } });
    await thermostat.subscribeAsync(['home/+/setpoint', 'home/kitchen/#'], { qos: 1 });
    const display = await mqttClient(`display-hall-${id}`, { protocolVersion: 4 });
    await display.subscribeAsync('home/#', { qos: 0 });
    const sensor = await mqttClient(`sensor-garage-${id}`, { protocolVersion: 4, clean: false });
    await sensor.subscribeAsync('cmd/garage', { qos: 1 });
    await sensor.endAsync();
    await display.publishAsync('home/kitchen/temperature', '21.5', { retain: true, qos: 1 });
    await display.publishAsync('home/livingroom/climate', JSON.stringify({ celsius: 20.1, humidity: 41 }), { retain: true, qos: 1 });
  }
  try {
    await go('/overview');
    await page.waitForTimeout(30_000);
    await shot('overview');
    await nav('Queues');
    await page.getByRole('link', { name: `browser-jobs-${id}` }).waitFor();
    await shot('queues');
    await page.getByRole('link', { name: `browser-jobs-${id}` }).click();
    await page.getByRole('heading', { name: `browser-jobs-${id}`, level: 1 }).waitFor();
    await page.waitForTimeout(16_000);
    await shot('queue');
    await nav('MQTT');
    await page.waitForTimeout(500);
    await shot('mqtt');
    await nav('Live log');
    await page.locator('.log li').first().waitFor();
    await shot('log');
    await nav('Overview');
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.waitForTimeout(1_000);
    await shot('overview-dark');
    await nav('Queues');
    await page.getByRole('link', { name: `browser-jobs-${id}` }).click();
    await page.getByRole('heading', { name: `browser-jobs-${id}`, level: 1 }).waitFor();
    await page.getByRole('button', { name: 'Get messages' }).click();
    await page.getByText('job 0', { exact: true }).waitFor();
    await shot('queue-dark');
    await page.setViewportSize({ width: 390, height: 844 });
    await go('/queues');
    await page.waitForTimeout(500);
    await shot('queues-phone-dark');
    await page.emulateMedia({ colorScheme: 'light' });
    await page.setViewportSize({ width: 1440, height: 900 });
  } finally {
    clearInterval(timer);
  }
});
