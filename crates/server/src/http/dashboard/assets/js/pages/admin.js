// Administration: users and their permissions, virtual hosts, policies, limits.

import { api, enc, optional } from '../api.js';
import { h, clear, pageHeader, badge, card, form, field, input, select, toast, confirm, empty, args, every } from '../ui.js';
import { simpleTable } from '../table.js';
import * as f from '../format.js';

function del(label, what, path, reload) {
  return h('button', { type: 'button', class: 'small danger-ghost', 'aria-label': `Delete ${what}`, onclick: async () => {
    if (!(await confirm(`Delete ${label}`, `Delete ${what}?`, 'Delete'))) return;
    try { await api(path, { method: 'DELETE' }); toast(`${label[0].toUpperCase()}${label.slice(1)} deleted`); reload(); } catch (e) { toast(e.message, 'error'); }
  } }, 'Delete');
}

function tagBadges(tags) {
  const list = Array.isArray(tags) ? tags : String(tags || '').split(',').filter(Boolean);
  return list.length ? list.map((t) => badge(t, t === 'administrator' ? 'accent' : 'info')) : h('span', { class: 'muted' }, 'no tags');
}

async function vhostOptions() {
  return (await api('/api/vhosts')).map((v) => [v.name, f.vhostLabel(v.name)]);
}

export function users(root, _p, ctx) {
  const list = h('div');
  const perms = h('div');
  const vhostSel = select('vhost', [['/', f.vhostLabel('/')]], '/');
  const userSel = select('user', [], '');
  const reload = async () => {
    const us = await api('/api/users');
    clear(list, simpleTable([
      { label: 'Name', render: (u) => h('strong', {}, u.name) },
      { label: 'Tags', render: (u) => tagBadges(u.tags) },
      { label: 'Password', render: (u) => (u.password_hash ? h('span', { class: 'muted' }, u.hashing_algorithm || 'hashed') : h('span', { class: 'muted' }, 'none (certificates only)')) },
      { label: '', cls: 'actions-cell', render: (u) => (u.name === ctx.user.name ? null : del('user', `user ${u.name}`, `/api/users/${enc(u.name)}`, reload)) },
    ], us));
    userSel.replaceChildren(...us.map((u) => h('option', { value: u.name }, u.name)));
    vhostSel.replaceChildren(...(await vhostOptions()).map(([v, l]) => h('option', { value: v }, l)));
    const ps = await api('/api/permissions');
    clear(perms, simpleTable([
      { label: 'User', key: 'user' },
      { label: 'Virtual host', render: (p) => f.vhostLabel(p.vhost) },
      { label: 'Configure', render: (p) => h('code', {}, p.configure) },
      { label: 'Write', render: (p) => h('code', {}, p.write) },
      { label: 'Read', render: (p) => h('code', {}, p.read) },
      { label: '', cls: 'actions-cell', render: (p) => del('permission', `${p.user}'s permissions in ${p.vhost}`, `/api/permissions/${enc(p.vhost)}/${enc(p.user)}`, reload) },
    ], ps, 'No permissions.'));
  };
  root.append(pageHeader('Users', 'Who may log in, over AMQP, MQTT and here, and what their tags allow.'),
    card('Users', list),
    card('Add or update a user', form([
      h('div', { class: 'row' },
        field('Name', input('name', { required: true, autocomplete: 'off' })),
        field('Password', input('password', { type: 'password', autocomplete: 'new-password' }), 'Empty: keep the current one (or none for a new user).'),
        field('Tags', input('tags', { placeholder: 'administrator, monitoring' }), 'management, policymaker, monitoring, administrator')),
    ], 'Save user', async (v) => {
      const body = { tags: v.tags };
      if (v.password) body.password = v.password;
      await api(`/api/users/${enc(v.name)}`, { method: 'PUT', body });
      toast(`User ${v.name} saved`);
      reload();
    })),
    card('Permissions', perms, form([
      h('div', { class: 'row' },
        field('User', userSel), field('Virtual host', vhostSel),
        field('Configure', input('configure', { value: '.*' })), field('Write', input('write', { value: '.*' })), field('Read', input('read', { value: '.*' }))),
    ], 'Set permissions', async (v) => {
      await api(`/api/permissions/${enc(v.vhost)}/${enc(v.user)}`, { method: 'PUT', body: { configure: v.configure, write: v.write, read: v.read } });
      toast('Permissions set');
      reload();
    }, { cls: 'inline' })));
  reload().catch((e) => toast(e.message, 'error'));
}

export function vhosts(root, _p, ctx) {
  const list = h('div');
  const reload = async () => {
    const vs = await api('/api/vhosts');
    clear(list, simpleTable([
      { label: 'Name', render: (v) => h('strong', {}, f.vhostLabel(v.name)) },
      { label: 'Description', render: (v) => v.description || '' },
      { label: 'Tags', render: (v) => (v.tags || []).map((t) => badge(t, 'info')) },
      { label: 'Messages', cls: 'num', render: (v) => f.num(v.messages) },
      { label: 'Ready', cls: 'num', render: (v) => f.num(v.messages_ready) },
      { label: 'Unacked', cls: 'num', render: (v) => f.num(v.messages_unacknowledged) },
      { label: '', cls: 'actions-cell', render: (v) => del('virtual host', `virtual host ${v.name} and everything in it`, `/api/vhosts/${enc(v.name)}`, reload) },
    ], vs));
  };
  root.append(pageHeader('Virtual hosts', 'Each holds its own exchanges, queues, bindings, permissions and policies.'),
    card('Virtual hosts', list),
    card('Add a virtual host', form([
      h('div', { class: 'row' },
        field('Name', input('name', { required: true })),
        field('Description', input('description')),
        field('Tags', input('tags'))),
    ], 'Add virtual host', async (v) => {
      await api(`/api/vhosts/${enc(v.name)}`, { method: 'PUT', body: { description: v.description, tags: v.tags } });
      // As RabbitMQ's UI does: its creator gets full permissions in it.
      await api(`/api/permissions/${enc(v.name)}/${enc(ctx.user.name)}`, { method: 'PUT', body: { configure: '.*', write: '.*', read: '.*' } }).catch(() => {});
      toast(`Virtual host ${v.name} added`);
      reload();
    })));
  reload().catch((e) => toast(e.message, 'error'));
}

export function policies(root) {
  const list = h('div');
  const vhostSel = select('vhost', [['/', f.vhostLabel('/')]], '/');
  const reload = async () => {
    const ps = await optional('/api/policies', null);
    vhostSel.replaceChildren(...(await vhostOptions()).map(([v, l]) => h('option', { value: v }, l)));
    if (ps === null) {
      clear(list, empty('Policies are not available', 'This broker does not answer /api/policies yet; policies can be set in its configuration file.'));
      return;
    }
    clear(list, simpleTable([
      { label: 'Name', render: (p) => h('strong', {}, p.name) },
      { label: 'Virtual host', render: (p) => f.vhostLabel(p.vhost) },
      { label: 'Pattern', render: (p) => h('code', {}, p.pattern) },
      { label: 'Applies to', key: 'apply-to' },
      { label: 'Definition', render: (p) => args(p.definition) },
      { label: 'Priority', key: 'priority', cls: 'num' },
      { label: '', cls: 'actions-cell', render: (p) => del('policy', `policy ${p.name}`, `/api/policies/${enc(p.vhost)}/${enc(p.name)}`, reload) },
    ], ps, 'No policies.'));
  };
  root.append(pageHeader('Policies', 'Settings applied to every queue or exchange whose name matches a pattern.'),
    card('Policies', list),
    card('Add or update a policy', form([
      h('div', { class: 'row' },
        field('Virtual host', vhostSel),
        field('Name', input('name', { required: true })),
        field('Pattern', input('pattern', { required: true, placeholder: '^orders\\.' })),
        field('Apply to', select('apply-to', ['queues', 'exchanges', 'all'], 'queues')),
        field('Priority', input('priority', { type: 'number', value: 0 }))),
      field('Definition (JSON)', h('textarea', { name: 'definition', rows: 3, required: true, spellcheck: 'false', placeholder: '{"max-length": 10000, "dead-letter-exchange": "dlx"}' })),
    ], 'Save policy', async (v) => {
      let definition;
      try { definition = JSON.parse(v.definition); } catch { throw new Error('The definition must be a JSON object'); }
      await api(`/api/policies/${enc(v.vhost)}/${enc(v.name)}`, { method: 'PUT', body: { pattern: v.pattern, 'apply-to': v['apply-to'], priority: Number(v.priority), definition } });
      toast(`Policy ${v.name} saved`);
      reload();
    })));
  reload().catch((e) => toast(e.message, 'error'));
}

export function limits(root) {
  const vl = h('div');
  const ul = h('div');
  const vhostSel = select('vhost', [], '');
  const userSel = select('user', [], '');
  const reload = async () => {
    const [v, u] = await Promise.all([api('/api/vhost-limits'), api('/api/user-limits')]);
    const flat = (rows, key) => rows.flatMap((r) => Object.entries(r.value || {}).map(([k, n]) => ({ who: r[key], limit: k, value: n })));
    clear(vl, simpleTable([
      { label: 'Virtual host', render: (r) => f.vhostLabel(r.who) },
      { label: 'Limit', render: (r) => h('code', {}, r.limit) },
      { label: 'Value', cls: 'num', render: (r) => f.num(r.value) },
      { label: '', cls: 'actions-cell', render: (r) => del('limit', `${r.limit} of ${r.who}`, `/api/vhost-limits/${enc(r.who)}/${enc(r.limit)}`, reload) },
    ], flat(v, 'vhost'), 'No virtual host limits.'));
    clear(ul, simpleTable([
      { label: 'User', key: 'who' },
      { label: 'Limit', render: (r) => h('code', {}, r.limit) },
      { label: 'Value', cls: 'num', render: (r) => f.num(r.value) },
      { label: '', cls: 'actions-cell', render: (r) => del('limit', `${r.limit} of ${r.who}`, `/api/user-limits/${enc(r.who)}/${enc(r.limit)}`, reload) },
    ], flat(u, 'user'), 'No user limits.'));
    vhostSel.replaceChildren(...(await vhostOptions()).map(([x, l]) => h('option', { value: x }, l)));
    userSel.replaceChildren(...(await api('/api/users')).map((x) => h('option', { value: x.name }, x.name)));
  };
  root.append(pageHeader('Limits', 'Caps on connections, channels and queues per virtual host and per user.'),
    h('div', { class: 'grid two' },
      card('Virtual host limits', vl, form([h('div', { class: 'row' },
        field('Virtual host', vhostSel),
        field('Limit', select('limit', ['max-connections', 'max-queues'], 'max-connections')),
        field('Value', input('value', { type: 'number', required: true })))],
      'Set limit', async (x) => {
        await api(`/api/vhost-limits/${enc(x.vhost)}/${enc(x.limit)}`, { method: 'PUT', body: { value: Number(x.value) } });
        toast('Limit set'); reload();
      }, { cls: 'inline' })),
      card('User limits', ul, form([h('div', { class: 'row' },
        field('User', userSel),
        field('Limit', select('limit', ['max-connections', 'max-channels'], 'max-connections')),
        field('Value', input('value', { type: 'number', required: true })))],
      'Set limit', async (x) => {
        await api(`/api/user-limits/${enc(x.user)}/${enc(x.limit)}`, { method: 'PUT', body: { value: Number(x.value) } });
        toast('Limit set'); reload();
      }, { cls: 'inline' }))));
  reload().catch((e) => toast(e.message, 'error'));
}

export { every };
