// MQTT sessions and retained messages (`/api/mqtt/sessions`, `/api/mqtt/retained`: Pigeon's
// own endpoints; RabbitMQ has none). A broker without them shows an empty state.

import { api, enc, optional } from '../api.js';
import { h, clear, pageHeader, badge, card, empty, toast, confirm } from '../ui.js';
import { PagedTable } from '../table.js';
import * as f from '../format.js';

function subscriptions(s) {
  const subs = s.subscriptions;
  const list = Array.isArray(subs)
    ? subs.map((x) => (typeof x === 'string' ? { filter: x } : { filter: x.topic_filter || x.filter || x.topic, qos: x.qos }))
    : Object.entries(subs || {}).map(([filter, qos]) => ({ filter, qos: typeof qos === 'object' ? qos.qos : qos }));
  if (!list.length) return h('span', { class: 'muted' }, 'none');
  return h('span', { class: 'subs' }, list.slice(0, 6).map((x) => h('code', {}, x.filter, x.qos !== undefined ? h('span', { class: 'muted' }, ` q${x.qos}`) : null)),
    list.length > 6 ? h('span', { class: 'muted' }, ` +${list.length - 6}`) : null);
}

const VERSIONS = { 3: 'MQTT 3.1', 4: 'MQTT 3.1.1', 5: 'MQTT 5.0' };

// A retained payload as text when it is UTF-8, else its size (listings give base64 previews).
function payload(r) {
  let text = r.payload ?? '';
  if (r.payload_encoding === 'base64') {
    try {
      const bin = atob(text);
      const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      return h('span', { class: 'muted' }, 'binary');
    }
  }
  return h('span', { class: 'payload-cell', title: text }, text, r.payload_truncated ? '…' : '');
}

function unavailable(what) {
  return empty(`No ${what} to show`, 'This broker does not answer /api/mqtt yet, or MQTT is off.');
}

export function render(root, _params, ctx) {
  const sessionsBox = h('div');
  const retainedBox = h('div');
  root.append(pageHeader('MQTT', 'Sessions of MQTT clients, connected or kept for later, and retained messages.'),
    card('Sessions', sessionsBox), card('Retained messages', retainedBox));
  const tables = [];
  (async () => {
    const sessions = await optional('/api/mqtt/sessions?page=1&page_size=1', null);
    if (sessions === null) {
      clear(sessionsBox, unavailable('sessions'));
    } else {
      const t = new PagedTable({
        endpoint: '/api/mqtt/sessions',
        label: 'MQTT sessions',
        // The API's `name` filter matches a session's client id.
        searchLabel: 'client id',
        sort: 'client_id',
        rowKey: (s) => `${s.vhost}\u0000${s.client_id}`,
        emptyTitle: 'No MQTT sessions',
        emptyText: 'Clients that connect over MQTT have a session here.',
        columns: [
          { label: 'Client id', sort: 'client_id', header: true, render: (s) => h('span', { class: 'mono' }, s.client_id) },
          { label: 'User', sort: 'user', render: (s) => s.user || s.username || '' },
          { label: 'Virtual host', sort: 'vhost', render: (s) => f.vhostLabel(s.vhost), cls: 'opt' },
          { label: 'State', sort: 'connected', render: (s) => (s.connected ? badge('connected', 'good') : badge('disconnected', 'plain')) },
          { label: 'Protocol', cls: 'opt nowrap', render: (s) => VERSIONS[s.protocol_version] || s.protocol || '' },
          { label: 'Kept', cls: 'opt', render: (s) => (s.persistent || s.clean_session === false ? badge('persistent', 'info') : badge('clean', 'plain')) },
          { label: 'Subscriptions', render: subscriptions },
          { label: 'Queued', sort: 'messages', cls: 'num', render: (s) => f.num(s.messages ?? s.queued_messages) },
          { label: '', cls: 'actions-cell', render: (s) => ((ctx.can('admin') || s.user === ctx.user.name) ? h('button', { type: 'button', class: 'small danger-ghost', 'aria-label': `${s.connected ? 'Disconnect' : 'Discard'} ${s.client_id}`, onclick: async () => {
            const what = s.connected ? `Disconnect MQTT client “${s.client_id}” and discard its session?` : `Discard the session of MQTT client “${s.client_id}”?`;
            if (!(await confirm(s.connected ? 'Disconnect client' : 'Discard session', `${what} Its subscriptions and queued messages go with it.`, s.connected ? 'Disconnect' : 'Discard'))) return;
            try {
              await api(`/api/mqtt/sessions/${enc(s.vhost)}/${enc(s.client_id)}`, { method: 'DELETE' });
              toast(s.connected ? 'Client disconnected' : 'Session discarded');
              t.load();
            } catch (e) { toast(e.message, 'error'); }
          } }, s.connected ? 'Disconnect' : 'Discard') : null) },
        ],
      });
      tables.push(t);
      clear(sessionsBox, t.el);
    }
    const retained = await optional('/api/mqtt/retained?page=1&page_size=1', null);
    if (retained === null) {
      clear(retainedBox, unavailable('retained messages'));
    } else {
      const t = new PagedTable({
        endpoint: '/api/mqtt/retained',
        label: 'Retained messages',
        // The API's `name` filter matches a retained message's topic.
        searchLabel: 'topic',
        sort: 'topic',
        rowKey: (r) => `${r.vhost}\u0000${r.topic}`,
        emptyTitle: 'No retained messages',
        emptyText: 'A message published with the retain flag is kept here for new subscribers.',
        columns: [
          { label: 'Topic', sort: 'topic', header: true, render: (r) => h('code', {}, r.topic) },
          { label: 'Virtual host', sort: 'vhost', render: (r) => f.vhostLabel(r.vhost), cls: 'opt' },
          { label: 'QoS', sort: 'qos', key: 'qos', cls: 'num' },
          { label: 'Payload', render: payload },
          { label: 'Size', cls: 'num opt', render: (r) => f.bytes(r.payload_bytes ?? (r.payload || '').length) },
          { label: '', cls: 'actions-cell', render: (r) => h('button', { type: 'button', class: 'small danger-ghost', 'aria-label': `Delete retained message of ${r.topic}`, onclick: async () => {
            if (!(await confirm('Delete retained message', `Delete the retained message of “${r.topic}”?`, 'Delete'))) return;
            try {
              await api(`/api/mqtt/retained/${enc(r.vhost)}/${enc(r.topic)}`, { method: 'DELETE' });
              toast('Retained message deleted');
              t.load();
            } catch (e) { toast(e.message, 'error'); }
          } }, 'Delete') },
        ],
      });
      tables.push(t);
      clear(retainedBox, t.el);
    }
  })().catch((e) => clear(sessionsBox, empty('MQTT sessions failed to load', e.message)));
  return () => tables.forEach((t) => t.destroy());
}
