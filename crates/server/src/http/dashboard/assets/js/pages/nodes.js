// Nodes: this node's memory, disk, alarms, processes.

import { api } from '../api.js';
import { h, clear, every, card, pageHeader, facts, badge } from '../ui.js';
import { gauge } from '../chart.js';
import * as f from '../format.js';

export function render(root) {
  const list = h('div', { class: 'grid two' });
  root.append(pageHeader('Nodes', 'Pigeon runs as a single node.'), list);
  const stop = every(5000, async () => {
    const nodes = await api('/api/nodes');
    clear(list, nodes.map((n) => card(null,
      h('div', { class: 'node-head' },
        h('h2', { class: 'card-title' }, n.name),
        badge(n.running ? 'running' : 'stopped', n.running ? 'good' : 'bad'),
        n.mem_alarm ? badge('memory alarm', 'bad') : null,
        n.disk_free_alarm ? badge('disk alarm', 'bad') : null),
      h('div', { class: 'gauges' },
        gauge('Memory', n.mem_used, n.mem_limit, f.bytes, { alarm: n.mem_alarm }),
        gauge('Disk', n.disk_free, n.disk_free_limit, f.bytes, { invert: true, alarm: n.disk_free_alarm })),
      facts([
        ['Type', n.type],
        ['OS process', n.os_pid],
        ['Processors', f.num(n.processors)],
        n.fd_used !== undefined ? ['File descriptors', `${f.num(n.fd_used)} of ${f.num(n.fd_total)}`] : null,
        n.uptime !== undefined ? ['Uptime', f.since(Date.now() - n.uptime)] : null,
        ['Rates mode', n.rates_mode],
      ]))));
  });
  return stop;
}
