// Queues: the list (search, sort, pages, all done by the API so it stays fast with ten
// thousand queues) and declaring one.

import { api, enc, queuePath } from '../api.js';
import { h, pageHeader, badge, link, dialog, form, field, input, select, toast, args } from '../ui.js';
import { PagedTable } from '../table.js';
import { superStreamPath } from './exchanges.js';
import * as f from '../format.js';

export function queueHref(vhost, name) {
  return `/queues/${enc(vhost)}/${enc(name)}`;
}

function rateOf(q, kind) {
  const d = q.message_stats && q.message_stats[`${kind}_details`];
  return d && typeof d.rate === 'number' ? f.rate(d.rate) : '';
}

async function addQueue(table) {
  const vhosts = await api('/api/vhosts');
  const argsBox = h('textarea', { name: 'arguments', rows: 3, spellcheck: 'false', placeholder: '{"x-dead-letter-exchange": "dlx", "x-max-length": 10000}' });
  const ok = await dialog('Add queue', (close) => form([
    field('Virtual host', select('vhost', vhosts.map((v) => [v.name, f.vhostLabel(v.name)]), '/')),
    field('Name', input('name', { required: true })),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'durable', checked: true }), h('span', {}, 'Durable')),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'auto_delete' }), h('span', {}, 'Auto-delete')),
    field('Arguments (JSON)', argsBox, 'x-message-ttl, x-max-length, x-overflow, x-dead-letter-exchange, x-max-priority, x-queue-mode…'),
  ], 'Add queue', async (v) => {
    let parsed = {};
    if (v.arguments.trim()) {
      try { parsed = JSON.parse(v.arguments); } catch { throw new Error('Arguments must be a JSON object'); }
    }
    await api(queuePath(v.vhost, v.name), { method: 'PUT', body: { durable: v.durable, auto_delete: v.auto_delete, arguments: parsed } });
    close(true);
  }));
  if (ok) { toast('Queue added'); table.load(); }
}

// A super stream: an exchange and its partition streams, through RabbitMQ's
// PUT /api/stream/super-streams/{vhost}/{name} (3.13's "Add a new super stream"): partitions
// named NAME-0.. bound with keys "0".., or one partition per binding key (NAME-key).
async function addSuperStream(table) {
  const vhosts = await api('/api/vhosts');
  const ok = await dialog('Add super stream', (close) => form([
    field('Virtual host', select('vhost', vhosts.map((v) => [v.name, f.vhostLabel(v.name)]), '/')),
    field('Name', input('name', { required: true })),
    h('div', { class: 'row' },
      field('Partitions', input('partitions', { type: 'number', min: 1, value: 3 })),
      field('Binding keys', input('keys', { placeholder: 'amer, emea, apac' }), 'Instead of a number: one partition per key')),
    h('div', { class: 'row' },
      field('Max length (bytes)', input('max_length_bytes', { type: 'number', min: 1, placeholder: 'No limit' })),
      field('Max age', input('max_age', { placeholder: '7D, 12h, 30m…' }))),
  ], 'Add super stream', async (v) => {
    const body = v.keys.trim() ? { 'binding-keys': v.keys } : { partitions: Number(v.partitions) };
    const a = {};
    if (v.max_length_bytes) a['max-length-bytes'] = Number(v.max_length_bytes);
    if (v.max_age.trim()) a['max-age'] = v.max_age.trim();
    body.arguments = a;
    try {
      await api(superStreamPath(v.vhost, v.name), { method: 'PUT', body });
    } catch (e) {
      // RabbitMQ's refusals print the Erlang reason, `{reference_already_exists,"there is
      // already an exchange named s"}`: its text reads better alone.
      const m = /^\{\w+,"(.*)"\}$/s.exec(e.message);
      throw m ? new Error(m[1].charAt(0).toUpperCase() + m[1].slice(1)) : e;
    }
    close(true);
  }));
  if (ok) { toast('Super stream added'); table.load(); }
}

export function render(root) {
  const vhostFilter = h('select', { 'aria-label': 'Virtual host' }, h('option', { value: '' }, 'All virtual hosts'));
  api('/api/vhosts').then((vs) => {
    for (const v of vs) vhostFilter.append(h('option', { value: v.name }, f.vhostLabel(v.name)));
  }).catch(() => {});
  const table = new PagedTable({
    endpoint: () => (vhostFilter.value ? `/api/queues/${enc(vhostFilter.value)}` : '/api/queues'),
    label: 'Queues',
    rowKey: (q) => `${q.vhost}\u0000${q.name}`,
    emptyTitle: 'No queues',
    emptyText: 'Queues that clients declare (or that you add) show up here.',
    toolbar: [vhostFilter],
    columns: [
      { label: 'Name', sort: 'name', header: true, render: (q) => link(queueHref(q.vhost, q.name), q.name) },
      { label: 'Virtual host', sort: 'vhost', render: (q) => f.vhostLabel(q.vhost), cls: 'opt nowrap' },
      // RabbitMQ's Type column: classic, quorum or stream.
      { label: 'Type', render: (q) => q.type || 'classic', cls: 'opt nowrap' },
      // The node the queue lives on (in a cluster).
      { label: 'Node', sort: 'node', render: (q) => q.node || '–', cls: 'opt nowrap' },
      { label: 'Features', cls: 'opt nowrap', render: (q) => [q.durable ? badge('D', 'plain') : null, q.auto_delete ? badge('AD', 'plain') : null, q.exclusive ? badge('Excl', 'plain') : null,
        q.arguments && q.arguments['x-dead-letter-exchange'] !== undefined ? badge('DLX', 'plain') : null,
        q.arguments && q.arguments['x-message-ttl'] !== undefined ? badge('TTL', 'plain') : null,
        q.arguments && q.arguments['x-max-length'] !== undefined ? badge('Lim', 'plain') : null,
        q.policy ? badge(q.policy, 'info') : null] },
      { label: 'State', render: (q) => badge(q.state || 'running', (q.state || 'running') === 'running' ? 'good' : 'warn'), cls: 'opt nowrap' },
      { label: 'Ready', sort: 'messages_ready', desc: true, render: (q) => f.num(q.messages_ready), cls: 'num' },
      { label: 'Unacked', sort: 'messages_unacknowledged', desc: true, render: (q) => f.num(q.messages_unacknowledged), cls: 'num' },
      { label: 'Total', sort: 'messages', desc: true, render: (q) => f.num(q.messages), cls: 'num opt' },
      // A stream's size is its segment files' (its messages stay after delivery).
      { label: 'Bytes', sort: 'message_bytes', desc: true, render: (q) => f.bytes(q.type === 'stream' ? q.stream_bytes : q.message_bytes), cls: 'num opt' },
      { label: 'Consumers', sort: 'consumers', desc: true, render: (q) => f.num(q.consumers), cls: 'num' },
      { label: 'In', render: (q) => rateOf(q, 'publish'), cls: 'num opt' },
      { label: 'Out', render: (q) => rateOf(q, 'deliver_get'), cls: 'num opt' },
    ],
  });
  vhostFilter.addEventListener('change', () => { table.state.page = 1; table.load(); });
  root.append(pageHeader('Queues', 'Search, sort and page through every queue you may see.',
    h('button', { type: 'button', class: 'ghost', onclick: () => addSuperStream(table) }, 'Add super stream'),
    h('button', { type: 'button', class: 'primary', onclick: () => addQueue(table) }, 'Add queue')), table.el);
  return () => table.destroy();
}

export { args };
