// A queue's page: its figures and charts, then what an operator does with it: get messages
// (given back to the queue by default), publish, move messages to another queue (retrying a
// dead-letter queue), purge, delete; its bindings and consumers. A stream shows what a stream
// has instead (its size, segments, first and last offsets: rabbit_stream_queue's info keys),
// and no get, move or purge, which streams refuse.

import { api, enc, queuePath } from '../api.js';
import { h, clear, pageHeader, badge, card, link, facts, form, field, input, select, toast, confirm, navigate, every, stat, args, empty, patch } from '../ui.js';
import { LineChart } from '../chart.js';
import { History, RateMeter, sampleQuery, backfill } from '../rates.js';
import { simpleTable } from '../table.js';
import { publishForm, exchangeHref } from './exchanges.js';
import * as f from '../format.js';

const ACKMODES = [
  ['ack_requeue_true', 'Requeue: keep them'],
  ['reject_requeue_true', 'Reject and requeue'],
  ['ack_requeue_false', 'Ack: remove them'],
  ['reject_requeue_false', 'Reject: dead-letter'],
];

function messageView(m, i) {
  const props = m.properties || {};
  return h('article', { class: 'message' },
    h('header', {},
      h('strong', {}, `Message ${i + 1}`),
      m.redelivered ? badge('redelivered', 'warn') : null,
      h('span', { class: 'muted small' }, `${f.num(m.message_count)} left in the queue · ${f.bytes(m.payload_bytes)}`)),
    facts([
      ['Exchange', m.exchange === '' ? '(AMQP default)' : m.exchange],
      ['Routing key', h('code', {}, m.routing_key)],
      Object.keys(props).length ? ['Properties', h('pre', { class: 'code small' }, JSON.stringify(props, null, 2))] : null,
      ['Payload', h('div', {}, h('pre', { class: 'code payload' }, m.payload), m.payload_encoding !== 'string' ? h('small', { class: 'muted' }, `encoding: ${m.payload_encoding}`) : null)],
    ]));
}

function getForm(vhost, name, out) {
  return form([
    h('div', { class: 'row' },
      field('Messages', input('count', { type: 'number', min: 1, max: 500, value: 1 })),
      field('Then', select('ackmode', ACKMODES, 'ack_requeue_true'))),
    h('div', { class: 'row' },
      field('Encoding', select('encoding', [['auto', 'Auto: string when it is text'], ['base64', 'base64']], 'auto')),
      field('Truncate after (bytes)', input('truncate', { type: 'number', min: 1, value: 50000 }))),
  ], 'Get messages', async (v) => {
    const messages = await api(`${queuePath(vhost, name)}/get`, { method: 'POST', body: {
      count: Number(v.count), ackmode: v.ackmode, encoding: v.encoding, truncate: Number(v.truncate) } });
    clear(out, messages.length
      ? messages.map(messageView)
      : h('p', { class: 'muted' }, 'The queue is empty.'));
  });
}

function moveForm(vhost, name, onDone) {
  const listId = `dest-${Math.random().toString(36).slice(2, 8)}`;
  const options = h('datalist', { id: listId });
  const dest = input('destination', { required: true, list: listId, placeholder: 'Queue name' });
  let debounce;
  const suggest = async () => {
    const q = new URLSearchParams({ page: 1, page_size: 20, columns: 'name' });
    if (dest.value) q.set('name', dest.value);
    try {
      const page = await api(`/api/queues/${enc(vhost)}?${q}`);
      options.replaceChildren(...page.items.filter((x) => x.name !== name).map((x) => h('option', { value: x.name })));
    } catch { /* suggestions only */ }
  };
  dest.addEventListener('input', () => { clearTimeout(debounce); debounce = setTimeout(suggest, 200); });
  dest.addEventListener('focus', suggest, { once: true });
  return form([
    h('p', { class: 'muted small' }, 'Moves messages, oldest first, to another queue of this virtual host (through the default exchange). Each is in the destination before it leaves this queue: none is lost.'),
    h('div', { class: 'row' },
      field('Destination queue', dest),
      field('How many', input('count', { type: 'number', min: 1, placeholder: 'All' }))),
    options,
  ], 'Move messages', async (v) => {
    const body = { destination: v.destination };
    if (v.count) body.count = Number(v.count);
    const r = await api(`/api/pigeon/queues/${enc(vhost)}/${enc(name)}/move`, { method: 'POST', body });
    toast(`${f.num(r.moved)} message${r.moved === 1 ? '' : 's'} moved to ${v.destination}${r.stopped ? ` (stopped: ${r.stopped})` : ''}`, r.stopped ? 'warn' : 'ok');
    onDone();
  });
}

function bindForm(vhost, name, onDone) {
  return form([
    h('div', { class: 'row' },
      field('From exchange', input('source', { required: true })),
      field('Routing key', input('routing_key'))),
  ], 'Bind', async (v) => {
    await api(`/api/bindings/${enc(vhost)}/e/${enc(v.source)}/q/${enc(name)}`, { method: 'POST', body: { routing_key: v.routing_key, arguments: {} } });
    toast('Binding added');
    onDone();
  }, { cls: 'inline' });
}

export function render(root, { vhost, name }) {
  const figures = h('div', { class: 'stats' });
  const info = h('div');
  const bindings = h('div');
  const consumers = h('div');
  const got = h('div', { class: 'messages', 'aria-live': 'polite' });
  const streamInfo = h('div');
  // A super stream's partition says whose (its binding from the super stream's exchange
  // carries x-stream-partition-order).
  const partitionOf = h('p', { class: 'muted small' });
  const streamCard = card('Stream', partitionOf, streamInfo);
  streamCard.hidden = true;
  const history = new History(120);
  const meter = new RateMeter();
  const queued = new LineChart({ title: 'Queued messages', format: f.num, series: [
    { key: 'ready', label: 'Ready', cls: 's3' }, { key: 'unacked', label: 'Unacked', cls: 's4' }] });
  const rates = new LineChart({ title: 'Message rates', format: f.rate, series: [
    { key: 'publish', label: 'In', cls: 's0' }, { key: 'deliver_get', label: 'Delivered', cls: 's1' }, { key: 'ack', label: 'Acknowledged', cls: 's2' }] });
  const path = queuePath(vhost, name);
  const ratesNote = h('p', { class: 'muted small rates-note' });
  let refresh = () => {};

  const purge = async () => {
    if (!(await confirm('Purge queue', `Remove every ready message from “${name}”? Messages out for delivery stay.`, 'Purge'))) return;
    try { await api(`${path}/contents`, { method: 'DELETE' }); toast('Queue purged'); refresh(); } catch (e) { toast(e.message, 'error'); }
  };
  const remove = async () => {
    if (!(await confirm('Delete queue', `Delete “${name}” and every message in it?`, 'Delete'))) return;
    try { await api(path, { method: 'DELETE' }); toast('Queue deleted'); navigate('/queues'); } catch (e) { toast(e.message, 'error'); }
  };

  const subtitle = h('span', {}, `Queue in ${f.vhostLabel(vhost)}`);
  const purgeButton = h('button', { type: 'button', class: 'ghost', onclick: purge }, 'Purge');
  const getCard = card('Get messages', getForm(vhost, name, got), got);
  const moveCard = card('Move messages', moveForm(vhost, name, () => refresh()));
  root.append(
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, link('/queues', 'Queues'), ' / ', f.vhostLabel(vhost)),
    pageHeader(name, subtitle,
      purgeButton,
      h('button', { type: 'button', class: 'danger-ghost', onclick: remove }, 'Delete')),
    figures,
    h('div', { class: 'grid two' }, card(null, queued.el), card(null, rates.el, ratesNote)),
    // A stream has no get nor move: its own card takes the place of getting messages.
    h('div', { class: 'grid two align-top' },
      getCard,
      streamCard,
      h('div', { class: 'stack' },
        card('Publish message', publishForm(vhost, '', name, 'queue')),
        moveCard)),
    h('div', { class: 'grid two align-top' },
      card('Details', info),
      card('Consumers', consumers)),
    card('Bindings', bindings, bindForm(vhost, name, () => refresh())));

  const tick = async () => {
    let q;
    const first = history.points.length === 0;
    try {
      q = first ? await api(`${path}?${sampleQuery()}`).catch(() => api(path)) : await api(path);
    } catch (e) {
      if (e.status !== 404) throw e;
      stop();
      clear(root, empty('No such queue', `There is no queue “${name}” in ${f.vhostLabel(vhost)} (any more).`), h('p', { class: 'empty' }, link('/queues', 'All queues')));
      return;
    }
    if (first) {
      const ms = q.message_stats || {};
      for (const p of backfill(
        { publish: ms.publish_details, deliver_get: ms.deliver_get_details, ack: ms.ack_details },
        { ready: q.messages_ready_details, unacked: q.messages_unacknowledged_details },
      ).slice(0, -1)) history.points.push(p);
    }
    const r = meter.sample(q.message_stats, ['publish', 'deliver_get', 'ack']);
    ratesNote.textContent = q.message_stats ? '' : 'This broker\u2019s API gives no per-queue message statistics yet.';
    const stream = q.type === 'stream';
    if (stream && queued.series.length !== 1) {
      // A stream holds its messages (all "ready", none unacknowledged: rabbit_osiris_metrics).
      queued.series = [{ key: 'ready', label: 'Messages', cls: 's3' }];
      queued.el.querySelector('.chart-title').textContent = 'Messages in the stream';
    }
    history.push({ ready: q.messages_ready, unacked: q.messages_unacknowledged, ...r });
    queued.update(history.points);
    rates.update(history.points);
    // basic.get, purge and moving messages out are refused by streams (540).
    streamCard.hidden = !stream;
    subtitle.textContent = `${stream ? 'Stream' : 'Queue'} in ${f.vhostLabel(vhost)}`;
    purgeButton.hidden = stream;
    getCard.hidden = stream;
    moveCard.hidden = stream;
    if (stream) {
      patch(figures, [q.messages, q.stream_bytes, q.segments, q.first_offset, q.last_offset, q.consumers, q.state], () => [
        stat('Messages', f.num(q.messages)),
        stat('Size', f.bytes(q.stream_bytes)),
        stat('Segments', f.num(q.segments)),
        stat('First offset', f.num(q.first_offset)),
        stat('Last offset', q.last_offset == null ? '–' : f.num(q.last_offset)),
        stat('Consumers', f.num(q.consumers)),
        stat('State', badge(q.state || 'running', (q.state || 'running') === 'running' ? 'good' : 'warn'))]);
      patch(streamInfo, [q.committed_offset, q.committed_chunk_id, q.first_timestamp, q.leader, q.members, q.readers, q.arguments], () => facts([
        ['Committed offset', q.committed_offset < 0 ? 'none' : f.num(q.committed_offset)],
        ['Last committed chunk', q.committed_chunk_id < 0 ? 'none' : f.num(q.committed_chunk_id)],
        // (No "… ago": the card is drawn again only when a figure changes, so it would go stale.)
        ['Oldest message', q.first_timestamp ? f.time(q.first_timestamp) : 'none (empty)'],
        ['Max length', q.arguments && q.arguments['x-max-length-bytes'] != null ? f.bytes(q.arguments['x-max-length-bytes']) : 'none (or by policy)'],
        ['Max age', (q.arguments && q.arguments['x-max-age']) || 'none (or by policy)'],
        ['Leader', q.leader],
        ['Members', (q.members || []).join(', ')],
        // rabbit_osiris_metrics' readers: per member, its reading consumers.
        ['Readers', Object.entries(q.readers || {}).map(([node, n]) => `${f.num(n)} on ${node}`).join(', ') || 'none'],
      ]));
    } else patch(figures, [q.messages_ready, q.messages_unacknowledged, q.messages, q.message_bytes, q.consumers, q.state], () => [
      stat('Ready', f.num(q.messages_ready)),
      stat('Unacked', f.num(q.messages_unacknowledged)),
      stat('Total', f.num(q.messages)),
      stat('Bytes', f.bytes(q.message_bytes)),
      stat('Consumers', f.num(q.consumers)),
      stat('State', badge(q.state || 'running', (q.state || 'running') === 'running' ? 'good' : 'warn'))]);
    patch(info, [q.type, q.durable, q.auto_delete, q.exclusive, q.arguments, q.policy, q.node], () => facts([
      ['Type', q.type],
      ['Durable', q.durable ? 'yes' : 'no'],
      ['Auto-delete', q.auto_delete ? 'yes' : 'no'],
      ['Exclusive', q.exclusive ? 'yes' : 'no'],
      ['Arguments', args(q.arguments) || 'none'],
      ['Policy', q.policy || 'none'],
      ['Node', q.node],
    ]));
    const bs = await api(`${path}/bindings`);
    const part = stream ? bs.find((b) => b.arguments && b.arguments['x-stream-partition-order'] !== undefined) : null;
    partitionOf.hidden = !part;
    patch(partitionOf, part ? [part.source, part.arguments['x-stream-partition-order']] : [], () => (part
      ? ['Partition ', f.num(Number(part.arguments['x-stream-partition-order'])), ' of super stream ', link(exchangeHref(vhost, part.source), part.source)]
      : []));
    patch(bindings, bs, () => simpleTable([
      { label: 'From', render: (b) => link(exchangeHref(vhost, b.source), b.source === '' ? '(AMQP default)' : b.source) },
      { label: 'Routing key', render: (b) => h('code', {}, b.routing_key) },
      { label: 'Arguments', render: (b) => args(b.arguments) },
      { label: '', cls: 'actions-cell', render: (b) => (b.source === '' ? h('span', { class: 'muted small' }, 'implicit') : h('button', { type: 'button', class: 'small danger-ghost', 'aria-label': `Unbind from ${b.source}`, onclick: async () => {
        try {
          await api(`/api/bindings/${enc(vhost)}/e/${enc(b.source)}/q/${enc(name)}/${enc(b.properties_key)}`, { method: 'DELETE' });
          toast('Binding removed');
          refresh();
        } catch (e) { toast(e.message, 'error'); }
      } }, 'Unbind')) },
    ], bs));
    const cs = (await api(`/api/consumers/${enc(vhost)}`)).filter((c) => c.queue && c.queue.name === name);
    patch(consumers, cs, () => simpleTable([
      { label: 'Tag', render: (c) => h('code', {}, c.consumer_tag) },
      { label: 'Channel', render: (c) => h('span', { class: 'mono small' }, c.channel_details.name) },
      { label: 'Ack', render: (c) => (c.ack_required ? 'manual' : 'auto') },
      { label: 'Prefetch', render: (c) => c.prefetch_count || '∞', cls: 'num' },
      { label: 'Exclusive', render: (c) => (c.exclusive ? 'yes' : 'no') },
    ], cs, 'No consumers.'));
  };
  let stop = every(5000, tick);
  refresh = () => { stop(); stop = every(5000, tick); };
  return () => { stop(); queued.destroy(); rates.destroy(); };
}
