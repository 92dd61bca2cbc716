// Exchanges: the list, an exchange's page (bindings, publish a message), declaring one.

import { api, enc, exchangePath } from '../api.js';
import { h, clear, patch, pageHeader, badge, card, link, facts, form, field, input, select, toast, dialog, args, confirm, navigate, every } from '../ui.js';
import { PagedTable, simpleTable } from '../table.js';
import * as f from '../format.js';

export function superStreamPath(vhost, name) {
  return `/api/stream/super-streams/${enc(vhost)}/${enc(name)}`;
}

// A super stream's exchange: direct, with `x-super-stream: true` (rabbit_stream_manager).
export function isSuperStream(x) {
  return Boolean(x.arguments && x.arguments['x-super-stream']);
}

export function exchangeHref(vhost, name) {
  return `/exchanges/${enc(vhost)}/${enc(name === '' ? 'amq.default' : name)}`;
}

function vhostSelect(vhosts, value) {
  return select('vhost', vhosts.map((v) => [v.name, f.vhostLabel(v.name)]), value);
}

async function addExchange(table) {
  const vhosts = await api('/api/vhosts');
  const ok = await dialog('Add exchange', (close) => form([
    field('Virtual host', vhostSelect(vhosts, '/')),
    field('Name', input('name', { required: true })),
    field('Type', select('type', ['direct', 'fanout', 'topic', 'headers'], 'direct')),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'durable', checked: true }), h('span', {}, 'Durable')),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'auto_delete' }), h('span', {}, 'Auto-delete')),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'internal' }), h('span', {}, 'Internal')),
  ], 'Add exchange', async (v) => {
    await api(exchangePath(v.vhost, v.name), { method: 'PUT', body: { type: v.type, durable: v.durable, auto_delete: v.auto_delete, internal: v.internal, arguments: {} } });
    close(true);
  }));
  if (ok) { toast('Exchange added'); table.load(); }
}

export function list(root) {
  const vhostFilter = h('select', { 'aria-label': 'Virtual host' }, h('option', { value: '' }, 'All virtual hosts'));
  api('/api/vhosts').then((vs) => {
    for (const v of vs) vhostFilter.append(h('option', { value: v.name }, f.vhostLabel(v.name)));
  }).catch(() => {});
  const table = new PagedTable({
    endpoint: () => (vhostFilter.value ? `/api/exchanges/${enc(vhostFilter.value)}` : '/api/exchanges'),
    label: 'Exchanges',
    toolbar: [vhostFilter],
    rowKey: (x) => `${x.vhost}\u0000${x.name}`,
    columns: [
      { label: 'Name', sort: 'name', header: true, render: (x) => link(exchangeHref(x.vhost, x.name), x.name === '' ? '(AMQP default)' : x.name) },
      { label: 'Virtual host', sort: 'vhost', render: (x) => f.vhostLabel(x.vhost) },
      { label: 'Type', sort: 'type', render: (x) => badge(x.type, 'info') },
      { label: 'Features', render: (x) => [x.durable ? badge('D', 'plain') : null, x.auto_delete ? badge('AD', 'plain') : null, x.internal ? badge('I', 'plain') : null, args(x.arguments)] },
      { label: 'In', sort: 'message_stats.publish_in', desc: true, cls: 'num opt', render: (x) => (x.message_stats && x.message_stats.publish_in_details ? f.rate(x.message_stats.publish_in_details.rate) : '') },
    ],
  });
  vhostFilter.addEventListener('change', () => { table.state.page = 1; table.load(); });
  root.append(pageHeader('Exchanges', 'Where publishers send messages; bindings route them on to queues.',
    h('button', { type: 'button', class: 'primary', onclick: () => addExchange(table) }, 'Add exchange')), table.el);
  return () => table.destroy();
}

// The publish form, for an exchange (or a queue, through the default exchange).
export function publishForm(vhost, exchange, routingKey = '', onDone) {
  const headers = h('textarea', { name: 'headers', rows: 2, placeholder: '{"x-retry": 1}', spellcheck: 'false' });
  const props = h('textarea', { name: 'properties', rows: 2, placeholder: '{"content_type": "application/json", "correlation_id": "42"}', spellcheck: 'false' });
  return form([
    h('div', { class: 'row' },
      field('Routing key', input('routing_key', { value: routingKey, readonly: onDone === 'queue' ? true : null })),
      field('Delivery mode', select('delivery_mode', [['1', '1 · transient'], ['2', '2 · persistent']], '2'))),
    field('Payload', h('textarea', { name: 'payload', rows: 5, spellcheck: 'false', required: false })),
    h('div', { class: 'row' },
      field('Headers (JSON)', headers),
      field('Other properties (JSON)', props)),
    field('Payload encoding', select('payload_encoding', [['string', 'string'], ['base64', 'base64']], 'string')),
  ], 'Publish message', async (v) => {
    const parse = (text, what) => {
      if (!text.trim()) return {};
      try { return JSON.parse(text); } catch { throw new Error(`${what} must be a JSON object`); }
    };
    const properties = { ...parse(v.properties, 'Properties'), delivery_mode: Number(v.delivery_mode) };
    const hdrs = parse(v.headers, 'Headers');
    if (Object.keys(hdrs).length) properties.headers = hdrs;
    const r = await api(`${exchangePath(vhost, exchange)}/publish`, { method: 'POST', body: {
      routing_key: v.routing_key, payload: v.payload, payload_encoding: v.payload_encoding, properties } });
    if (r && r.routed) toast('Message published');
    else toast('Message published, but no queue was bound to take it', 'warn');
    if (typeof onDone === 'function') onDone();
  }, { cls: 'publish-form' });
}

export function detail(root, { vhost, name: raw }, ctx) {
  const name = raw === 'amq.default' ? '' : raw;
  let superStream = false;
  const info = h('div');
  const source = h('div');
  const dest = h('div');
  root.append(
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, link('/exchanges', 'Exchanges'), ' / ', f.vhostLabel(vhost)),
    pageHeader(name === '' ? '(AMQP default)' : name, `Exchange in ${f.vhostLabel(vhost)}`,
      name !== '' && !name.startsWith('amq.') ? h('button', { type: 'button', class: 'danger-ghost', onclick: async () => {
        // A super stream goes whole: its exchange and its partition streams (Pigeon's DELETE
        // on RabbitMQ's super stream path, as `rabbitmq-streams delete_super_stream` does).
        if (superStream) {
          if (!(await confirm('Delete super stream', `Delete super stream “${name}”: its exchange and its partition streams, with every message in them?`, 'Delete'))) return;
        } else if (!(await confirm('Delete exchange', `Delete exchange “${name}” and its bindings?`, 'Delete'))) return;
        try {
          await api(superStream ? superStreamPath(vhost, name) : exchangePath(vhost, name), { method: 'DELETE' });
          toast(superStream ? 'Super stream deleted' : 'Exchange deleted');
          navigate('/exchanges');
        } catch (e) { toast(e.message, 'error'); }
      } }, 'Delete') : null),
    h('div', { class: 'grid two align-top' },
      card('Details', info),
      card('Publish message', publishForm(vhost, name))),
    card('Bindings from this exchange', source),
    card('Bindings to this exchange', dest));
  const bindingCols = (other) => [
    { label: other === 'destination' ? 'To' : 'From', render: (b) => (other === 'destination'
      ? (b.destination_type === 'queue' ? link(`/queues/${enc(vhost)}/${enc(b.destination)}`, b.destination) : link(exchangeHref(vhost, b.destination), b.destination))
      : link(exchangeHref(vhost, b.source), b.source || '(AMQP default)')) },
    { label: 'Type', render: (b) => badge(b.destination_type, 'plain') },
    { label: 'Routing key', render: (b) => h('code', {}, b.routing_key) },
    { label: 'Arguments', render: (b) => args(b.arguments) },
  ];
  const stop = every(10000, async () => {
    const x = await api(exchangePath(vhost, name));
    superStream = isSuperStream(x);
    clear(info, facts([
      ['Type', superStream ? [badge(x.type, 'info'), ' ', badge('super stream', 'plain')] : badge(x.type, 'info')],
      ['Durable', x.durable ? 'yes' : 'no'],
      ['Auto-delete', x.auto_delete ? 'yes' : 'no'],
      ['Internal', x.internal ? 'yes' : 'no'],
      ['Arguments', args(x.arguments) || 'none'],
      x.policy ? ['Policy', x.policy] : null,
    ]));
    if (name === '') {
      clear(source, h('p', { class: 'muted' }, 'The default exchange routes to the queue named by the routing key; every queue is bound to it.'));
    } else {
      const s = await api(`${exchangePath(vhost, name)}/bindings/source`);
      patch(source, s, () => simpleTable(bindingCols('destination'), s, 'No bindings: messages published here go nowhere.'));
    }
    const d = name === '' ? [] : await api(`${exchangePath(vhost, name)}/bindings/destination`);
    patch(dest, d, () => simpleTable(bindingCols('source'), d, 'No exchange is bound to this one.'));
  });
  return stop;
}
