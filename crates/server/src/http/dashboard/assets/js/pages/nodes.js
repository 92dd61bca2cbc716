// Nodes: every member's memory, disk, alarms, processes (one card per node; a node that does
// not answer shows as not running).

import { api } from '../api.js';
import { h, clear, every, card, pageHeader, facts, badge } from '../ui.js';
import { gauge } from '../chart.js';
import * as f from '../format.js';

export function render(root) {
  const list = h('div', { class: 'grid two' });
  const sub = h('span');
  root.append(pageHeader('Nodes', sub), list);
  const stop = every(5000, async () => {
    const nodes = await api('/api/nodes');
    sub.textContent = nodes.length > 1
      ? `A cluster of ${nodes.length} nodes.`
      : 'Pigeon runs as a single node.';
    clear(list, nodes.map((n) => card(null,
      h('div', { class: 'node-head' },
        h('h2', { class: 'card-title' }, n.name),
        badge(n.running ? 'running' : 'not running', n.running ? 'good' : 'bad'),
        n.being_drained ? badge('maintenance', 'warn') : null,
        n.mem_alarm ? badge('memory alarm', 'bad') : null,
        n.disk_free_alarm ? badge('disk alarm', 'bad') : null),
      n.mem_used === undefined ? null : h('div', { class: 'gauges' },
        gauge('Memory', n.mem_used, n.mem_limit, f.bytes, { alarm: n.mem_alarm }),
        gauge('Disk', n.disk_free, n.disk_free_limit, f.bytes, { invert: true, alarm: n.disk_free_alarm })),
      facts([
        ['Type', n.type],
        n.cluster_address !== undefined ? ['Cluster address', n.cluster_address] : null,
        n.voter !== undefined ? ['Raft', n.voter ? 'voter' : 'learner'] : null,
        n.os_pid !== undefined ? ['OS process', n.os_pid] : null,
        n.processors !== undefined ? ['Processors', f.num(n.processors)] : null,
        n.fd_used !== undefined ? ['File descriptors', `${f.num(n.fd_used)} of ${f.num(n.fd_total)}`] : null,
        n.uptime !== undefined ? ['Uptime', f.since(Date.now() - n.uptime)] : null,
        n.rates_mode !== undefined ? ['Rates mode', n.rates_mode] : null,
      ]))));
  });
  return stop;
}
