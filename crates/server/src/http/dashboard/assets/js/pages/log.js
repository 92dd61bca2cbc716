// The live log: the broker's recent log lines (`GET /api/pigeon/log?since=SEQ`), polled,
// filtered by level and text, following the tail unless paused.

import { api } from '../api.js';
import { h, pageHeader, every } from '../ui.js';
import { clock } from '../format.js';

const LEVELS = ['ERROR', 'WARN', 'INFO', 'DEBUG', 'TRACE'];
const KEEP = 2000;

export function render(root) {
  let last = 0;
  let lines = [];
  let paused = false;
  const level = h('select', { 'aria-label': 'Lowest level shown' }, LEVELS.map((l) => h('option', { value: l, selected: l === 'TRACE' }, l === 'TRACE' ? 'All levels' : `${l} and above`)));
  const filter = h('input', { type: 'search', placeholder: 'Filter lines', 'aria-label': 'Filter lines' });
  const pause = h('button', { type: 'button', 'aria-pressed': 'false' }, 'Pause');
  const status = h('span', { class: 'muted small', 'aria-live': 'polite' });
  const out = h('ol', { class: 'log', tabindex: '0', 'aria-label': 'Log lines' });
  const view = h('div', { class: 'log-view' }, out);
  pause.addEventListener('click', () => {
    paused = !paused;
    pause.textContent = paused ? 'Resume' : 'Pause';
    pause.setAttribute('aria-pressed', String(paused));
    if (!paused) paint();
  });
  const shown = (l) => LEVELS.indexOf(l.level) <= LEVELS.indexOf(level.value)
    && (!filter.value || `${l.target} ${l.message}`.toLowerCase().includes(filter.value.toLowerCase()));
  const row = (l) => h('li', { class: `lvl-${l.level.toLowerCase()}` },
    h('time', {}, clock(l.timestamp)), h('span', { class: 'lvl' }, l.level), h('span', { class: 'target' }, l.target), h('span', { class: 'msg' }, l.message));
  function paint() {
    const atBottom = view.scrollHeight - view.scrollTop - view.clientHeight < 40;
    out.replaceChildren(...lines.filter(shown).map(row));
    if (atBottom || !paint.done) view.scrollTop = view.scrollHeight;
    paint.done = true;
  }
  level.addEventListener('change', paint);
  filter.addEventListener('input', paint);
  root.append(pageHeader('Live log', 'The broker\u2019s most recent log lines, as they come.'),
    h('div', { class: 'toolbar' }, filter, level, pause, h('div', { class: 'spacer' }), status),
    view);
  const stop = every(2000, async () => {
    const r = await api(`/api/pigeon/log?since=${last}`);
    if (r.last < last) { lines = []; } // the broker restarted
    last = r.last;
    if (r.lines.length) {
      lines = lines.concat(r.lines).slice(-KEEP);
      if (!paused) paint();
    }
    status.textContent = `${lines.length} lines${r.missed ? ` · ${r.missed} older lines no longer kept` : ''}${paused ? ' · paused' : ''}`;
  });
  return stop;
}
