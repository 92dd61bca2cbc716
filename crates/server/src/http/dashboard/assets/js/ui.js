// A small DOM toolkit: elements, links, toasts, dialogs, forms. No framework: pages build
// their DOM with `h` and refresh the parts that change.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null) el.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) if (c) el.append(c);
  return el;
}

// A link the app's router follows without reloading the page.
export function link(href, ...children) {
  return h('a', { href, 'data-link': true }, ...children);
}

export function navigate(path) {
  window.dispatchEvent(new CustomEvent('pigeon:navigate', { detail: path }));
}

const ICONS = {
  overview: 'M3 13h8V3H3zm0 8h8v-6H3zm10 0h8V11h-8zm0-18v6h8V3z',
  nodes: 'M4 5h16v4H4zm0 5h16v4H4zm0 5h16v4H4zM6 6.5h2v1H6zm0 5h2v1H6zm0 5h2v1H6z',
  connections: 'M7 7h4V5H7a5 5 0 0 0 0 10h4v-2H7a3 3 0 0 1 0-6zm10-2h-4v2h4a3 3 0 0 1 0 6h-4v2h4a5 5 0 0 0 0-10zM8 11h8v2H8z',
  channels: 'M3 6h18v2H3zm0 5h18v2H3zm0 5h12v2H3z',
  exchanges: 'M7 4 3 8l4 4V9h7V7H7zm10 8v3h-7v2h7v3l4-4z',
  queues: 'M4 4h16v4H4zm0 6h16v4H4zm0 6h10v4H4z',
  mqtt: 'M5 19a2 2 0 1 1 0-4 2 2 0 0 1 0 4zM4 10v2a8 8 0 0 1 8 8h2A10 10 0 0 0 4 10zm0-4v2a12 12 0 0 1 12 12h2A14 14 0 0 0 4 6z',
  users: 'M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8zm0 2c-4 0-8 2-8 5v1h16v-1c0-3-4-5-8-5z',
  vhosts: 'M4 4h7v7H4zm9 0h7v7h-7zM4 13h7v7H4zm9 0h7v7h-7z',
  policies: 'M12 2 4 5v6c0 5 3.4 9.7 8 11 4.6-1.3 8-6 8-11V5zm-1 14-4-4 1.4-1.4 2.6 2.6 5.6-5.6L18 9z',
  limits: 'M12 4a9 9 0 0 0-9 9h2a7 7 0 0 1 14 0h2a9 9 0 0 0-9-9zm1 9.7V8h-2v5.7a2 2 0 1 0 2 0z',
  definitions: 'M6 2h9l5 5v15H6zm8 1.5V8h4.5zM8 12h8v2H8zm0 4h8v2H8z',
  log: 'M4 5h16v2H4zm0 4h10v2H4zm0 4h16v2H4zm0 4h10v2H4z',
  sun: 'M12 7a5 5 0 1 0 0 10 5 5 0 0 0 0-10zm0-5 1 3h-2zm0 20-1-3h2zM2 12l3-1v2zm20 0-3 1v-2zM4.9 4.9l2.8 1.4-1.4 1.4zm14.2 14.2-2.8-1.4 1.4-1.4zM4.9 19.1l1.4-2.8 1.4 1.4zM19.1 4.9l-1.4 2.8-1.4-1.4z',
  moon: 'M20 15.3A8.5 8.5 0 0 1 8.7 4 8.5 8.5 0 1 0 20 15.3z',
  menu: 'M3 6h18v2H3zm0 5h18v2H3zm0 5h18v2H3z',
  logout: 'M10 17l1.4-1.4-2.6-2.6H20v-2H8.8l2.6-2.6L10 7l-5 5zM4 4h8V2H4a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h8v-2H4z',
};

export function icon(name, cls = 'icon') {
  return svg('svg', { class: cls, viewBox: '0 0 24 24', 'aria-hidden': 'true', focusable: 'false' },
    svg('path', { d: ICONS[name] || '' }));
}

// Toasts: short-lived messages in a live region (screen readers announce them).
let toastBox;
export function toast(message, kind = 'ok') {
  if (!toastBox) toastBox = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' });
  // Inside an open modal dialog, so that its backdrop does not dim a form's error (the dialog
  // is in the top layer, above everything in the body).
  const host = document.querySelector('dialog[open]') || document.body;
  if (toastBox.parentNode !== host) host.append(toastBox);
  const t = h('div', { class: `toast ${kind}` }, message);
  toastBox.append(t);
  setTimeout(() => t.classList.add('leaving'), kind === 'error' ? 6000 : 3500);
  setTimeout(() => t.remove(), kind === 'error' ? 6400 : 3900);
}

// A modal dialog (the native <dialog>: focus trapped, Escape closes). `build(close)` returns
// its content; resolves with what `close` is given (undefined when dismissed).
export function dialog(title, build, { wide = false } = {}) {
  return new Promise((resolve) => {
    const d = h('dialog', { class: wide ? 'wide' : '', 'aria-labelledby': 'dlg-title' });
    let result;
    const close = (value) => {
      result = value;
      d.close();
    };
    d.addEventListener('close', () => {
      d.remove();
      resolve(result);
    });
    d.append(
      h('header', {},
        h('h2', { id: 'dlg-title' }, title),
        h('button', { class: 'ghost icon-only', type: 'button', 'aria-label': 'Close', onclick: () => close() }, '✕')),
      build(close),
    );
    document.body.append(d);
    d.showModal();
  });
}

export async function confirm(title, text, action = 'Confirm', danger = true) {
  const ok = await dialog(title, (close) => h('div', { class: 'dialog-body' },
    h('p', {}, text),
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'ghost', onclick: () => close(false) }, 'Cancel'),
      h('button', { type: 'button', class: danger ? 'danger' : 'primary', autofocus: true, onclick: () => close(true) }, action))));
  return ok === true;
}

// A labelled form field.
export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    input,
    hint ? h('small', { class: 'hint' }, hint) : null);
}

export function input(name, attrs = {}) {
  return h('input', { name, type: 'text', autocomplete: 'off', ...attrs });
}

export function select(name, options, value) {
  return h('select', { name },
    options.map((o) => {
      const [v, label] = Array.isArray(o) ? o : [o, o];
      return h('option', { value: v, selected: v === value }, label);
    }));
}

// A form that runs `onSubmit(values)`; its button shows progress, errors go to a toast.
export function form(fields, submitLabel, onSubmit, { cls = '' } = {}) {
  const button = h('button', { type: 'submit', class: 'primary' }, submitLabel);
  const f = h('form', { class: `form ${cls}` }, fields, h('div', { class: 'actions' }, button));
  f.addEventListener('submit', async (e) => {
    e.preventDefault();
    const values = {};
    for (const el of f.elements) {
      if (!el.name) continue;
      values[el.name] = el.type === 'checkbox' ? el.checked : el.value;
    }
    button.disabled = true;
    f.setAttribute('aria-busy', 'true');
    try {
      await onSubmit(values, f);
    } catch (err) {
      toast(err.message || String(err), 'error');
    } finally {
      button.disabled = false;
      f.removeAttribute('aria-busy');
    }
  });
  return f;
}

export function badge(text, kind = '') {
  return h('span', { class: `badge ${kind}` }, text);
}

export function card(title, ...children) {
  return h('section', { class: 'card' }, title ? h('h2', { class: 'card-title' }, title) : null, ...children);
}

export function empty(title, text) {
  return h('div', { class: 'empty' }, h('strong', {}, title), text ? h('p', {}, text) : null);
}

export function stat(label, value, sub) {
  return h('div', { class: 'stat' },
    h('div', { class: 'stat-label' }, label),
    h('div', { class: 'stat-value' }, value),
    sub ? h('div', { class: 'stat-sub' }, sub) : null);
}

// Key/value rows.
export function facts(pairs) {
  return h('dl', { class: 'facts' },
    pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

export function pageHeader(title, sub, ...actions) {
  return h('div', { class: 'page-header' },
    h('div', {}, h('h1', {}, title), sub ? h('p', { class: 'sub' }, sub) : null),
    actions.length ? h('div', { class: 'page-actions' }, actions) : null);
}

// Runs `tick` now and every `ms` while the tab is visible; returns a stop function.
export function every(ms, tick) {
  let timer = null;
  let stopped = false;
  const run = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try {
        await tick();
      } catch (e) {
        if (e.status !== 401) console.warn(e);
      }
    }
    if (!stopped) timer = setTimeout(run, ms);
  };
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

export function json(value) {
  return h('pre', { class: 'code' }, JSON.stringify(value, null, 2));
}

export function args(obj) {
  const keys = Object.keys(obj || {});
  if (!keys.length) return '';
  return h('span', { class: 'args' }, keys.map((k) => h('code', {}, `${k}: ${JSON.stringify(obj[k])}`)));
}

// Re-renders `el` from `data` only when the data changed, so that a refresh every few
// seconds does not take the keyboard focus or a text selection away.
export function patch(el, data, build) {
  const snapshot = JSON.stringify(data);
  if (el.snapshot === snapshot) return;
  el.snapshot = snapshot;
  clear(el, build(data));
}
