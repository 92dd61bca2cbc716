// The dashboard's shell: log-in, navigation, theme, and the router (History API: each page
// has its own URL, which the server answers with this app; see dashboard/mod.rs PAGES).

import { api, hasCredentials, setCredentials, forget } from './api.js';
import { h, clear, icon, toast, form, field, input, navigate } from './ui.js';

const PAGES = {
  overview: () => import('./pages/overview.js'),
  nodes: () => import('./pages/nodes.js'),
  connections: () => import('./pages/connections.js'),
  exchanges: () => import('./pages/exchanges.js'),
  queues: () => import('./pages/queues.js'),
  queue: () => import('./pages/queue.js'),
  mqtt: () => import('./pages/mqtt.js'),
  admin: () => import('./pages/admin.js'),
  definitions: () => import('./pages/definitions.js'),
  log: () => import('./pages/log.js'),
};

// [pattern, module, export, nav entry (label, icon, who sees it)]
const ROUTES = [
  ['/', 'overview', 'render'],
  ['/overview', 'overview', 'render', ['Overview', 'overview']],
  ['/connections', 'connections', 'connections', ['Connections', 'connections']],
  ['/channels', 'connections', 'channels', ['Channels', 'channels']],
  ['/streams', 'connections', 'streams', ['Stream clients', 'channels']],
  ['/exchanges', 'exchanges', 'list', ['Exchanges', 'exchanges']],
  ['/exchanges/:vhost/:name', 'exchanges', 'detail'],
  ['/queues', 'queues', 'render', ['Queues', 'queues']],
  ['/queues/:vhost/:name', 'queue', 'render'],
  ['/mqtt', 'mqtt', 'render', ['MQTT', 'mqtt']],
  ['/nodes', 'nodes', 'render', ['Nodes', 'nodes', 'monitor']],
  ['/log', 'log', 'render', ['Live log', 'log', 'monitor']],
  ['/users', 'admin', 'users', ['Users', 'users', 'admin'], 'Admin'],
  ['/vhosts', 'admin', 'vhosts', ['Virtual hosts', 'vhosts', 'admin'], 'Admin'],
  ['/policies', 'admin', 'policies', ['Policies', 'policies', 'policy'], 'Admin'],
  ['/limits', 'admin', 'limits', ['Limits', 'limits', 'admin'], 'Admin'],
  ['/definitions', 'definitions', 'render', ['Definitions', 'definitions', 'admin'], 'Admin'],
];

const ctx = { user: null, overview: null };
const app = document.getElementById('app');
let cleanup = null;
let navigated = false;

function can(who) {
  const tags = (ctx.user && ctx.user.tags) || [];
  const has = (t) => tags.includes(t);
  if (who === 'admin') return has('administrator');
  if (who === 'monitor') return has('administrator') || has('monitoring');
  if (who === 'policy') return has('administrator') || has('policymaker');
  return true;
}
ctx.can = can;

// --- theme ---------------------------------------------------------------------------------
const THEME_KEY = 'pigeon.theme';
function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}
function currentTheme() {
  return document.documentElement.dataset.theme
    || (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light');
}
applyTheme(localStorage.getItem(THEME_KEY));

function themeButton() {
  const b = h('button', { type: 'button', class: 'ghost icon-only', id: 'theme-toggle' });
  const paint = () => {
    const dark = currentTheme() === 'dark';
    b.replaceChildren(icon(dark ? 'sun' : 'moon'));
    b.setAttribute('aria-label', dark ? 'Switch to light theme' : 'Switch to dark theme');
    b.title = b.getAttribute('aria-label');
  };
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', paint);
  b.addEventListener('click', () => {
    const next = currentTheme() === 'dark' ? 'light' : 'dark';
    localStorage.setItem(THEME_KEY, next);
    applyTheme(next);
    paint();
    window.dispatchEvent(new Event('resize'));
  });
  paint();
  return b;
}

// --- routing -------------------------------------------------------------------------------
function match(path) {
  const parts = path.replace(/\/+$/, '').split('/').slice(1);
  for (const r of ROUTES) {
    const pat = r[0] === '/' ? [] : r[0].split('/').slice(1);
    if (pat.length !== (parts.length === 1 && parts[0] === '' ? 0 : parts.length)) continue;
    const params = {};
    let ok = true;
    pat.forEach((p, i) => {
      if (p.startsWith(':')) params[p.slice(1)] = decodeURIComponent(parts[i]);
      else if (p !== parts[i]) ok = false;
    });
    if (ok) return { route: r, params };
  }
  return null;
}

function go(path, replace = false) {
  if (replace) history.replaceState(null, '', path);
  else if (path !== location.pathname + location.search) history.pushState(null, '', path);
  route();
}

window.addEventListener('pigeon:navigate', (e) => go(e.detail));
window.addEventListener('popstate', () => route());
document.addEventListener('click', (e) => {
  const a = e.target.closest('a[data-link]');
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  go(a.getAttribute('href'));
});
window.addEventListener('pigeon:logout', () => {
  if (!ctx.user) return;
  forget();
  ctx.user = null;
  toast('Your session ended: log in again.', 'error');
  route();
});

// --- the shell -----------------------------------------------------------------------------
let shell = null;

function buildShell() {
  const groups = new Map();
  for (const r of ROUTES) {
    if (!r[3] || !can(r[3][2])) continue;
    const g = r[4] || '';
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(r);
  }
  const nav = h('nav', { class: 'nav', id: 'nav', 'aria-label': 'Main' },
    [...groups.entries()].map(([g, rs]) => h('div', { class: 'nav-group' },
      g ? h('div', { class: 'nav-heading' }, g) : null,
      h('ul', {}, rs.map((r) => h('li', {}, h('a', { href: r[0], 'data-link': true, 'data-path': r[0] }, icon(r[3][1]), h('span', {}, r[3][0]))))))));
  const menu = h('button', { type: 'button', class: 'ghost icon-only menu-toggle', 'aria-controls': 'nav', 'aria-expanded': 'false', 'aria-label': 'Menu' }, icon('menu'));
  const side = h('aside', { class: 'side' },
    h('a', { class: 'brand', href: '/', 'data-link': true },
      h('img', { src: document.querySelector('link[rel=icon]').href, alt: '', width: 28, height: 28 }),
      h('span', {}, 'Pigeon')),
    nav);
  menu.addEventListener('click', () => {
    const open = side.classList.toggle('open');
    menu.setAttribute('aria-expanded', String(open));
  });
  side.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && side.classList.contains('open')) {
      side.classList.remove('open');
      menu.setAttribute('aria-expanded', 'false');
      menu.focus();
    }
  });
  nav.addEventListener('click', (e) => {
    if (e.target.closest('a')) { side.classList.remove('open'); menu.setAttribute('aria-expanded', 'false'); }
  });
  const cluster = h('span', { class: 'cluster' });
  const main = h('main', { id: 'main', tabindex: '-1' });
  const top = h('header', { class: 'top' },
    menu,
    cluster,
    h('div', { class: 'spacer' }),
    h('span', { class: 'who' }, h('span', { class: 'muted' }, 'Signed in as '), h('strong', {}, ctx.user.name),
      ctx.user.tags.length ? h('span', { class: 'muted tags' }, ` (${ctx.user.tags.join(', ')})`) : null),
    themeButton(),
    h('button', { type: 'button', class: 'ghost icon-only', 'aria-label': 'Log out', title: 'Log out', onclick: logout }, icon('logout')));
  clear(app,
    h('a', { class: 'skip', href: '#main' }, 'Skip to content'),
    side,
    h('div', { class: 'body' }, top, main));
  app.className = 'shell';
  api('/api/overview').then((o) => {
    ctx.overview = o;
    cluster.replaceChildren(h('strong', {}, o.cluster_name), h('span', { class: 'muted' }, ` · ${o.product_name} ${o.product_version}`));
  }).catch(() => {});
  return { main, nav };
}

function logout() {
  forget();
  ctx.user = null;
  shell = null;
  go('/login');
}

async function route() {
  if (cleanup) { try { cleanup(); } catch (e) { console.warn(e); } cleanup = null; }
  const path = location.pathname;
  if (!ctx.user) {
    if (hasCredentials()) {
      try {
        ctx.user = await api('/api/whoami');
      } catch {
        forget();
      }
    }
    if (!ctx.user) {
      shell = null;
      return loginPage(path === '/login' ? '/' : path + location.search);
    }
  }
  if (path === '/login') return go('/', true);
  if (!shell) shell = buildShell();
  for (const a of shell.nav.querySelectorAll('a')) {
    const p = a.dataset.path;
    const here = path === p || path.startsWith(`${p}/`) || (p === '/overview' && path === '/');
    if (here) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const m = match(path);
  const main = shell.main;
  if (!m) {
    clear(main, h('div', { class: 'empty' }, h('strong', {}, 'No such page'), h('p', {}, h('a', { href: '/', 'data-link': true }, 'Back to the overview'))));
    return;
  }
  const [, mod, fn] = m.route;
  main.replaceChildren(h('div', { class: 'loading', 'aria-busy': 'true' }, 'Loading…'));
  try {
    const page = await PAGES[mod]();
    if (location.pathname !== path) return;
    main.replaceChildren();
    document.title = `${m.route[3] ? m.route[3][0] : (m.params.name || 'Overview')} · Pigeon`;
    cleanup = page[fn](main, m.params, ctx) || null;
    // After an in-app navigation, focus moves to the new content (screen readers read it, Tab
    // goes on from there); a fresh load leaves it at the top, where the skip link is first.
    if (navigated) main.focus({ preventScroll: true });
    navigated = true;
  } catch (e) {
    clear(main, h('div', { class: 'empty' }, h('strong', {}, 'This page failed to load'), h('p', {}, e.message)));
  }
}

function loginPage(next) {
  app.className = 'login-shell';
  document.title = 'Log in · Pigeon';
  const user = input('username', { autocomplete: 'username', required: true, autofocus: true });
  const pass = input('password', { type: 'password', autocomplete: 'current-password', required: true });
  const error = h('p', { class: 'login-error', role: 'alert' });
  const f = form([field('Username', user), field('Password', pass), error], 'Log in', async (v) => {
    error.textContent = '';
    setCredentials(v.username, v.password);
    try {
      ctx.user = await api('/api/whoami');
    } catch (e) {
      forget();
      error.textContent = e.status === 401
        ? (e.message === 'Login failed' ? 'Wrong username or password.' : `${e.message}: this user has no management tag.`)
        : `Cannot reach the broker: ${e.message}`;
      pass.select();
      return;
    }
    go(next === '/login' ? '/' : next, true);
  }, { cls: 'login-form' });
  for (const el of [user, pass]) el.addEventListener('input', () => { error.textContent = ''; });
  clear(app,
    h('main', { class: 'login' },
      h('div', { class: 'login-card' },
        h('div', { class: 'login-brand' },
          h('img', { src: document.querySelector('link[rel=icon]').href, alt: '', width: 44, height: 44 }),
          h('div', {}, h('h1', {}, 'Pigeon'), h('p', { class: 'muted' }, 'AMQP 0-9-1 and MQTT broker'))),
        f,
        h('p', { class: 'muted small' }, 'Log in with a user tagged management, policymaker, monitoring or administrator.')),
      h('div', { class: 'login-theme' }, themeButton())));
  user.focus();
}

route();
export { navigate };
