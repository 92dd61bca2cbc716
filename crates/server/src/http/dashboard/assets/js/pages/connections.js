// Connections (close one, with a reason the client sees) and channels.

import { api, enc } from '../api.js';
import { h, pageHeader, badge, dialog, field, input, form, toast } from '../ui.js';
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
    h('p', {}, 'The client is told the connection is closed (AMQP 320 CONNECTION_FORCED, MQTT 5 DISCONNECT 0x98) with this reason:'),
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
    emptyText: 'Clients connected over AMQP or MQTT show up here.',
    columns: [
      { label: 'Name', sort: 'name', header: true, render: connectionName },
      { label: 'User', sort: 'user', key: 'user' },
      { label: 'Virtual host', sort: 'vhost', render: (c) => f.vhostLabel(c.vhost), cls: 'opt' },
      { label: 'Protocol', sort: 'protocol', cls: 'nowrap', render: (c) => h('span', {}, c.protocol, ' ', c.ssl ? badge('TLS', 'info') : null) },
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
  root.append(pageHeader('Connections', 'AMQP and MQTT clients connected now.'), table.el);
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
