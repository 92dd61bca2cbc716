// The overview: totals (the cluster's), live charts (message rates, queued messages,
// connections, memory and disk against their alarms), the nodes, listeners.

import { api, optional } from '../api.js';
import { h, clear, every, stat, card, pageHeader, link, patch, badge } from '../ui.js';
import { LineChart, gauge } from '../chart.js';
import { History, RateMeter, sumChannels, hasCounts, sampleQuery, backfill } from '../rates.js';
import * as f from '../format.js';
import { simpleTable } from '../table.js';

const KINDS = ['publish', 'deliver_get', 'ack'];
// Kept across visits of the page: the charts go on where they were.
const history = new History(120);
const meter = new RateMeter();

export function render(root, _params, ctx) {
  const stats = h('div', { class: 'stats' });
  const charts = {
    rates: new LineChart({ title: 'Message rates', format: f.rate, series: [
      { key: 'publish', label: 'Published', cls: 's0' },
      { key: 'deliver_get', label: 'Delivered', cls: 's1' },
      { key: 'ack', label: 'Acknowledged', cls: 's2' }] }),
    queued: new LineChart({ title: 'Queued messages', format: f.num, series: [
      { key: 'ready', label: 'Ready', cls: 's3' },
      { key: 'unacked', label: 'Unacked', cls: 's4' }] }),
    conns: new LineChart({ title: 'Connections', format: f.num, series: [
      { key: 'connections', label: 'Connections', cls: 's0' },
      { key: 'channels', label: 'Channels', cls: 's5' }] }),
    memory: new LineChart({ title: 'Memory', format: f.bytes, axis: f.bytes, limit: 'alarm at', series: [
      { key: 'mem', label: 'Queued bodies', cls: 's1' }] }),
    disk: new LineChart({ title: 'Disk free', format: f.bytes, axis: f.bytes, limit: 'alarm below', series: [
      { key: 'disk', label: 'Free', cls: 's2' }] }),
  };
  const gauges = h('div', { class: 'gauges' });
  const listeners = h('div');
  const nodeList = h('div');
  const note = h('p', { class: 'muted small rates-note' });
  const sub = h('span');
  root.append(
    pageHeader('Overview', sub),
    stats,
    h('div', { class: 'grid two' },
      card(null, charts.rates.el, note),
      card(null, charts.queued.el),
      card(null, charts.conns.el),
      ctx.can('monitor') ? card('Resources', gauges) : null,
      ctx.can('monitor') ? card(null, charts.memory.el) : null,
      ctx.can('monitor') ? card(null, charts.disk.el) : null),
    ctx.can('monitor') ? card('Nodes', nodeList) : null,
    card('Listeners', listeners));

  let listenersShown = false;
  const tick = async () => {
    // The first time, ask for the last five minutes of samples too (when the API keeps them).
    const first = history.points.length === 0;
    // (A broker that refuses the range parameters answers without them.)
    const o = first
      ? await api(`/api/overview?${sampleQuery()}`).catch(() => api('/api/overview'))
      : await api('/api/overview');
    if (first) {
      const ms = o.message_stats || {};
      const qt = o.queue_totals || {};
      for (const p of backfill(
        { publish: ms.publish_details, deliver_get: ms.deliver_get_details, ack: ms.ack_details },
        { ready: qt.messages_ready_details, unacked: qt.messages_unacknowledged_details },
      ).slice(0, -1)) history.points.push(p);
    }
    ctx.overview = o;
    let source = o.message_stats;
    if (!hasCounts(source, KINDS)) {
      // No statistics in the overview yet: sum the channels' counters.
      const channels = await optional('/api/channels?columns=message_stats', []);
      source = sumChannels(channels);
      note.textContent = 'Rates computed in the browser from the channels\u2019 counters.';
    } else {
      note.textContent = '';
    }
    const rates = meter.sample(source, KINDS);
    const nodes = ctx.can('monitor') ? await optional('/api/nodes', []) : [];
    // The node this page talks to (the list is every member's, by name).
    const node = nodes.find((n) => n.name === o.node) || nodes[0] || {};
    const qt = o.queue_totals || {};
    const ot = o.object_totals || {};
    history.push({
      ...rates,
      ready: qt.messages_ready, unacked: qt.messages_unacknowledged,
      connections: ot.connections, channels: ot.channels,
      mem: node.mem_used, disk: node.disk_free,
    });
    sub.replaceChildren(`${o.product_name} ${o.product_version} · node ${o.node} · RabbitMQ API ${o.rabbitmq_version}`);
    patch(stats, [ot, qt.messages, qt.messages_ready, qt.messages_unacknowledged], () => [
      link('/connections', stat('Connections', f.num(ot.connections))),
      link('/channels', stat('Channels', f.num(ot.channels))),
      link('/queues', stat('Queues', f.num(ot.queues))),
      stat('Consumers', f.num(ot.consumers)),
      link('/exchanges', stat('Exchanges', f.num(ot.exchanges))),
      stat('Messages', f.num(qt.messages), `${f.num(qt.messages_ready)} ready · ${f.num(qt.messages_unacknowledged)} unacked`)]);
    charts.rates.update(history.points);
    charts.queued.update(history.points);
    charts.conns.update(history.points);
    if (ctx.can('monitor')) {
      charts.memory.update(history.points, node.mem_limit || null);
      charts.disk.update(history.points, node.disk_free_limit || null);
      clear(gauges,
        gauge('Memory', node.mem_used, node.mem_limit, f.bytes, { alarm: node.mem_alarm }),
        gauge('Disk', node.disk_free, node.disk_free_limit, f.bytes, { invert: true, alarm: node.disk_free_alarm }));
    }
    if (ctx.can('monitor')) {
      clear(nodeList, simpleTable([
        { label: 'Name', render: (n) => h('code', {}, n.name) },
        { label: 'State', render: (n) => [
          badge(n.running ? 'running' : 'not running', n.running ? 'good' : 'bad'),
          n.being_drained ? badge('maintenance', 'warn') : null,
          n.mem_alarm ? badge('memory alarm', 'bad') : null,
          n.disk_free_alarm ? badge('disk alarm', 'bad') : null] },
        { label: 'Memory', cls: 'num', render: (n) => (n.mem_used === undefined ? '–' : `${f.bytes(n.mem_used)} of ${f.bytes(n.mem_limit)}`) },
        { label: 'Disk free', cls: 'num opt', render: (n) => f.bytes(n.disk_free) },
        { label: 'File descriptors', cls: 'num opt', render: (n) => (n.fd_used === undefined ? '–' : `${f.num(n.fd_used)} of ${f.num(n.fd_total)}`) },
        { label: 'Uptime', cls: 'num opt', render: (n) => (n.uptime === undefined ? '–' : f.since(Date.now() - n.uptime)) },
      ], nodes));
    }
    if (!listenersShown) {
      listenersShown = true;
      clear(listeners, simpleTable([
        { label: 'Node', render: (l) => l.node, cls: 'opt' },
        { label: 'Protocol', render: (l) => h('code', {}, l.protocol) },
        { label: 'Address', render: (l) => l.ip_address },
        { label: 'Port', key: 'port', cls: 'num' },
      ], o.listeners));
    }
  };
  const stop = every(5000, tick);
  return () => {
    stop();
    Object.values(charts).forEach((c) => c.destroy());
  };
}
