// Definitions: export (download) and import (upload) in RabbitMQ's JSON format.

import { api, enc } from '../api.js';
import { h, clear, pageHeader, card, field, select, toast, form } from '../ui.js';
import * as f from '../format.js';

const SINGULAR = {
  users: 'user', vhosts: 'vhost', permissions: 'permission', topic_permissions: 'topic permission', policies: 'policy',
  parameters: 'parameter', queues: 'queue', exchanges: 'exchange', bindings: 'binding',
};

function summary(defs) {
  const n = (k) => (Array.isArray(defs[k]) ? defs[k].length : 0);
  return ['users', 'vhosts', 'permissions', 'topic_permissions', 'policies', 'parameters', 'queues', 'exchanges', 'bindings']
    .filter((k) => n(k)).map((k) => `${n(k)} ${SINGULAR[k] && n(k) === 1 ? SINGULAR[k] : k.replace('_', ' ')}`).join(' · ') || 'nothing';
}

export function render(root) {
  const exportVhost = select('vhost', [['', 'All virtual hosts']], '');
  const importVhost = select('vhost', [['', 'As in the file (all virtual hosts)']], '');
  api('/api/vhosts').then((vs) => {
    for (const v of vs) {
      exportVhost.append(h('option', { value: v.name }, f.vhostLabel(v.name)));
      importVhost.append(h('option', { value: v.name }, `Into ${f.vhostLabel(v.name)} only`));
    }
  }).catch(() => {});
  const fileInput = h('input', { type: 'file', name: 'file', accept: 'application/json,.json', required: true });
  const preview = h('p', { class: 'muted small', 'aria-live': 'polite' });
  const result = h('div', { 'aria-live': 'polite' });
  let parsed = null;
  fileInput.addEventListener('change', async () => {
    parsed = null;
    const file = fileInput.files[0];
    if (!file) { preview.textContent = ''; return; }
    try {
      parsed = JSON.parse(await file.text());
      preview.textContent = `${file.name}: ${summary(parsed)}`;
    } catch {
      preview.textContent = `${file.name} is not JSON.`;
    }
  });
  root.append(pageHeader('Definitions', 'Users, virtual hosts, permissions, policies, queues, exchanges and bindings, in RabbitMQ\u2019s JSON: the same file imports into Pigeon and RabbitMQ.'),
    h('div', { class: 'grid two' },
      card('Export', form([
        field('Virtual host', exportVhost),
        h('p', { class: 'muted small' }, 'Definitions carry no messages.'),
      ], 'Download definitions', async (v) => {
        const path = v.vhost ? `/api/definitions/${enc(v.vhost)}` : '/api/definitions';
        const defs = await api(path);
        const blob = new Blob([JSON.stringify(defs, null, 2)], { type: 'application/json' });
        const url = URL.createObjectURL(blob);
        const stamp = new Date().toISOString().slice(0, 10);
        const a = h('a', { href: url, download: `pigeon-definitions${v.vhost ? `-${v.vhost.replace(/[^\w.-]+/g, '_')}` : ''}-${stamp}.json` });
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
        toast(`Exported ${summary(defs)}`);
      })),
      card('Import', form([
        field('Definitions file', fileInput),
        preview,
        field('Virtual host', importVhost),
      ], 'Upload definitions', async (v) => {
        if (!parsed) throw new Error('Choose a definitions file (JSON) first');
        const path = v.vhost ? `/api/definitions/${enc(v.vhost)}` : '/api/definitions';
        const answer = await api(path, { method: 'POST', body: parsed });
        clear(result, h('div', { class: 'notice good' }, h('strong', {}, 'Imported. '), summary(parsed)),
          answer && typeof answer === 'object' && Object.keys(answer).length
            ? h('pre', { class: 'code small' }, JSON.stringify(answer, null, 2)) : null);
        toast('Definitions imported');
      }), result)));
}
