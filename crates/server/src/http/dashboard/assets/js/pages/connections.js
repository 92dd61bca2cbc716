// Connections (close one, with a reason the client sees), channels, and the stream protocol's
// publishers and consumers (`/api/stream/publishers`, `/api/stream/consumers`).

import { api, enc } from '../api.js';
import { h, pageHeader, badge, dialog, field, input, form, toast, link } from '../ui.js';
import { PagedTable } from '../table.js';
import * as f from '../format.js';

function connectionName(c) {
  const p = c.client_properties || {};
  const label = p.connection_name || '';
  const product = [p.product, p.version].filter(Boolean).join(' ');
  return h('span', { class: 'conn-name' },
    label ? h('strong', { class: 'block' }, String(label)) : null,
    h('span', { class: `mono block ${label ? 'muted small' : ''}` }, c.name),
    !label && product ? h('span', { class: 'muted small block' }, product) : null);
}

async function close(c, table) {
  const reason = input('reason', { value: 'Closed via management plugin' });
  const done = await dialog('Close connection', (closeDialog) => form([
    h('p', {}, 'The client is told the connection is closed (AMQP 320 CONNECTION_FORCED, MQTT 5 DISCONNECT 0x98, stream Close) with this reason:'),
    h('p', {}, h('code', { class: 'break' }, c.name)),
    field('Reason', reason),
  ], 'Close connection', async () => {
    await api(`/api/connections/${enc(c.name)}`, { method: 'DELETE', headers: { 'x-reason': reason.value } });
    closeDialog(true);
  }));
  if (done) {
    toast(`Connection ${c.name} closed`);
    table.load();
  }
}

export function connections(root, _params, ctx) {
  let table;
  table = new PagedTable({
    endpoint: '/api/connections',
    label: 'Connections',
    emptyTitle: 'No connections',
    emptyText: 'Clients connected over AMQP, MQTT or the stream protocol show up here.',
    columns: [
      { label: 'Name', sort: 'name', header: true, render: connectionName },
      { label: 'User', sort: 'user', key: 'user' },
      { label: 'Virtual host', sort: 'vhost', render: (c) => f.vhostLabel(c.vhost), cls: 'opt' },
      { label: 'Protocol', sort: 'protocol', cls: 'nowrap', render: (c) => h('span', {}, c.protocol === 'stream' ? badge('stream', 'info') : c.protocol, ' ', c.ssl ? badge('TLS', 'info') : null) },
      { label: 'Channels', sort: 'channels', key: 'channels', cls: 'num opt' },
      { label: 'State', sort: 'state', render: (c) => badge(c.state, c.state === 'running' ? 'good' : c.state === 'blocked' || c.state === 'blocking' ? 'warn' : '') },
      { label: 'Received', sort: 'recv_oct', desc: true, render: (c) => f.bytes(c.recv_oct), cls: 'num opt' },
      { label: 'Sent', sort: 'send_oct', desc: true, render: (c) => f.bytes(c.send_oct), cls: 'num opt' },
      { label: 'Connected', sort: 'connected_at', render: (c) => f.since(c.connected_at), cls: 'opt' },
      { label: '', cls: 'actions-cell', render: (c) => (ctx.can('admin') || c.user === ctx.user.name)
        ? h('button', { type: 'button', class: 'small danger-ghost', 'data-focus-key': `close:${c.name}`, 'aria-label': `Close connection ${c.name}`, onclick: () => close(c, table) }, 'Close')
        : null },
    ],
  });
  root.append(pageHeader('Connections', 'AMQP, MQTT and stream protocol clients connected now.'), table.el);
  return () => table.destroy();
}

export function channels(root) {
  const table = new PagedTable({
    endpoint: '/api/channels',
    label: 'Channels',
    emptyTitle: 'No channels',
    emptyText: 'AMQP channels of the open connections show up here.',
    columns: [
      { label: 'Channel', sort: 'name', header: true, render: (c) => h('span', { class: 'mono' }, c.name) },
      { label: 'User', sort: 'user', key: 'user' },
      { label: 'Virtual host', sort: 'vhost', render: (c) => f.vhostLabel(c.vhost), cls: 'opt' },
      { label: 'Mode', render: (c) => [c.confirm ? badge('confirm', 'info') : null, c.transactional ? badge('tx', 'info') : null] },
      { label: 'Prefetch', sort: 'prefetch_count', render: (c) => c.prefetch_count || '∞', cls: 'num' },
      { label: 'Consumers', sort: 'consumer_count', key: 'consumer_count', cls: 'num' },
      { label: 'Unacked', sort: 'messages_unacknowledged', key: 'messages_unacknowledged', cls: 'num' },
      { label: 'Published', sort: 'message_stats.publish', desc: true, render: (c) => f.num((c.message_stats || {}).publish), cls: 'num opt' },
      { label: 'Delivered', sort: 'message_stats.deliver', desc: true, render: (c) => f.num((c.message_stats || {}).deliver), cls: 'num opt' },
      { label: 'Acked', sort: 'message_stats.ack', desc: true, render: (c) => f.num((c.message_stats || {}).ack), cls: 'num opt' },
    ],
  });
  root.append(pageHeader('Channels', 'AMQP channels and what flows through them.'), table.el);
  return () => table.destroy();
}

function streamLink(r) {
  const q = r.queue || {};
  return link(`/queues/${enc(q.vhost)}/${enc(q.name)}`, q.name);
}

function owner(r) {
  const c = r.connection_details || {};
  return h('span', { class: 'mono small' }, c.name);
}

// The stream protocol's publishers and consumers, with their counters and offsets.
export function streams(root) {
  const publishers = new PagedTable({
    endpoint: '/api/stream/publishers',
    label: 'Stream publishers',
    emptyTitle: 'No stream publishers',
    emptyText: 'Publishers declared over the stream protocol (port 5552) show up here.',
    columns: [
      { label: 'Stream', sort: 'stream', header: true, render: streamLink },
      { label: 'Virtual host', render: (r) => f.vhostLabel((r.queue || {}).vhost), cls: 'opt' },
      { label: 'Id', sort: 'publisher_id', key: 'publisher_id', cls: 'num' },
      { label: 'Reference', sort: 'reference', render: (r) => r.reference ? h('code', {}, r.reference) : h('span', { class: 'muted' }, 'none') },
      { label: 'Published', sort: 'published', desc: true, render: (r) => f.num(r.published), cls: 'num' },
      { label: 'Confirmed', sort: 'confirmed', desc: true, render: (r) => f.num(r.confirmed), cls: 'num' },
      { label: 'Errored', sort: 'errored', desc: true, render: (r) => f.num(r.errored), cls: 'num opt' },
      { label: 'Connection', render: owner, cls: 'opt' },
    ],
  });
  const consumers = new PagedTable({
    endpoint: '/api/stream/consumers',
    label: 'Stream consumers',
    emptyTitle: 'No stream consumers',
    emptyText: 'Subscriptions over the stream protocol show up here.',
    columns: [
      { label: 'Stream', sort: 'stream', header: true, render: streamLink },
      { label: 'Virtual host', render: (r) => f.vhostLabel((r.queue || {}).vhost), cls: 'opt' },
      { label: 'Id', sort: 'subscription_id', key: 'subscription_id', cls: 'num' },
      { label: 'Offset', sort: 'offset', render: (r) => f.num(r.offset), cls: 'num' },
      { label: 'Lag', sort: 'offset_lag', desc: true, render: (r) => f.num(r.offset_lag), cls: 'num' },
      { label: 'Consumed', sort: 'consumed', desc: true, render: (r) => f.num(r.consumed), cls: 'num' },
      { label: 'Credits', sort: 'credits', key: 'credits', cls: 'num opt' },
      { label: 'Status', render: (r) => badge(r.activity_status, r.active ? 'good' : 'warn') },
      { label: 'Connection', render: owner, cls: 'opt' },
    ],
  });
  root.append(pageHeader('Stream clients', 'Publishers and consumers of the stream protocol, with their offsets and lag.'),
    publishers.el, consumers.el);
  return () => {
    publishers.destroy();
    consumers.destroy();
  };
}
