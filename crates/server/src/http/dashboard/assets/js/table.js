// A list backed by one of the API's paged endpoints: search by name (substring or regex),
// sort by a column, pages; the server does the work (`page`, `page_size`, `name`,
// `use_regex`, `sort`, `sort_reverse`, `columns`), so ten thousand queues stay fast.
// Refreshes itself while shown.

import { h, clear, every, empty } from './ui.js';
import { api } from './api.js';

// columns: [{ key, label, sort (an API sort path; none: not sortable), render(row), cls }]
export class PagedTable {
  constructor({ endpoint, columns, pageSize = 50, sort = 'name', reverse = false, label, rowKey = (r) => r.name,
    emptyTitle = 'Nothing here yet', emptyText = '', fields, refreshMs = 5000, toolbar = [], searchable = true, searchLabel = 'name' }) {
    this.endpoint = endpoint;
    this.columns = columns;
    this.state = { page: 1, pageSize, sort, reverse, name: '', regex: false };
    this.rowKey = rowKey;
    this.fields = fields;
    this.emptyTitle = emptyTitle;
    this.emptyText = emptyText;
    const searchId = `search-${Math.random().toString(36).slice(2, 8)}`;
    this.search = h('input', { type: 'search', id: searchId, placeholder: `Filter by ${searchLabel}`, autocomplete: 'off', 'aria-label': `Filter ${label} by ${searchLabel}` });
    this.regex = h('input', { type: 'checkbox', 'aria-label': 'Regular expression' });
    this.sizeSelect = h('select', { 'aria-label': 'Rows per page' },
      [20, 50, 100, 500].map((n) => h('option', { value: n, selected: n === pageSize }, `${n} / page`)));
    this.info = h('span', { class: 'muted', 'aria-live': 'polite' });
    this.pager = h('nav', { class: 'pager', 'aria-label': `${label} pages` });
    this.body = h('tbody');
    this.head = h('thead');
    this.error = h('div', { class: 'table-error', role: 'alert' });
    this.el = h('div', { class: 'paged' },
      h('div', { class: 'toolbar' },
        searchable ? h('div', { class: 'searchbox' }, this.search,
          h('label', { class: 'check' }, this.regex, h('span', {}, 'Regex'))) : null,
        toolbar,
        h('div', { class: 'spacer' }),
        this.info, this.sizeSelect),
      this.error,
      h('div', { class: 'table-wrap' }, h('table', { class: 'table' }, h('caption', { class: 'sr-only' }, label), this.head, this.body)),
      this.pager);
    let debounce;
    this.search.addEventListener('input', () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => { this.state.page = 1; this.state.name = this.search.value; this.load(); }, 250);
    });
    this.regex.addEventListener('change', () => { this.state.regex = this.regex.checked; this.state.page = 1; this.load(); });
    this.sizeSelect.addEventListener('change', () => { this.state.pageSize = Number(this.sizeSelect.value); this.state.page = 1; this.load(); });
    this.renderHead();
    this.stop = every(refreshMs, () => this.load());
  }

  renderHead() {
    clear(this.head, h('tr', {}, this.columns.map((c) => {
      if (!c.sort) return h('th', { scope: 'col', class: c.cls || '' }, c.label);
      const active = this.state.sort === c.sort;
      const dir = active ? (this.state.reverse ? 'descending' : 'ascending') : 'none';
      return h('th', { scope: 'col', class: c.cls || '', 'aria-sort': dir },
        h('button', { type: 'button', class: `sort ${active ? 'active' : ''}`, onclick: () => {
          if (this.state.sort === c.sort) this.state.reverse = !this.state.reverse;
          else { this.state.sort = c.sort; this.state.reverse = !!c.desc; }
          this.renderHead();
          this.load();
        } }, c.label, h('span', { class: 'arrow', 'aria-hidden': 'true' }, active ? (this.state.reverse ? '▼' : '▲') : '↕')));
    })));
  }

  url() {
    const s = this.state;
    const q = new URLSearchParams({ page: s.page, page_size: s.pageSize, sort: s.sort, sort_reverse: s.reverse });
    if (s.name) { q.set('name', s.name); q.set('use_regex', s.regex); }
    if (this.fields) q.set('columns', this.fields.join(','));
    const ep = typeof this.endpoint === 'function' ? this.endpoint() : this.endpoint;
    return `${ep}?${q}`;
  }

  async load() {
    // Only the newest answer is shown (a refresh and a keystroke may cross).
    const seq = (this.seq = (this.seq || 0) + 1);
    let data;
    try {
      data = await api(this.url());
      if (seq !== this.seq) return;
      this.error.replaceChildren();
    } catch (e) {
      if (seq !== this.seq) return;
      if (e.status === 400 && e.message === 'page_out_of_range' && this.state.page > 1) {
        this.state.page = 1;
        return this.load();
      }
      this.error.replaceChildren(h('p', {}, e.message));
      return;
    }
    // A plain list (an endpoint without paging) is shown whole.
    const page = Array.isArray(data)
      ? { items: data, page: 1, page_count: 1, filtered_count: data.length, total_count: data.length }
      : data;
    this.rows = page.items;
    // How many answers it has shown (tests wait for the next one).
    this.el.dataset.loads = String(Number(this.el.dataset.loads || 0) + 1);
    // Nothing changed: leave the DOM (and the keyboard focus, the selection) alone.
    const snapshot = JSON.stringify(page);
    if (snapshot === this.snapshot) return;
    this.snapshot = snapshot;
    // Keep the focus on the same link or button of the same row across the refresh.
    let focused = null;
    const active = document.activeElement;
    if (active && this.body.contains(active)) {
      const tr = active.closest('tr');
      focused = { key: tr && tr.dataset.key, index: tr ? [...tr.querySelectorAll('a, button')].indexOf(active) : -1 };
    }
    if (!page.items.length) {
      clear(this.body, h('tr', {}, h('td', { colspan: this.columns.length },
        empty(this.state.name ? 'No match' : this.emptyTitle, this.state.name ? `Nothing is called like “${this.state.name}”.` : this.emptyText))));
    } else {
      clear(this.body, page.items.map((r) => h('tr', { dataset: { key: this.rowKey(r) } },
        this.columns.map((c) => h(c.header ? 'th' : 'td', { class: c.cls || '', scope: c.header ? 'row' : null, 'data-label': c.label }, c.render ? c.render(r) : r[c.key])))));
    }
    if (focused && focused.key !== undefined) {
      const tr = [...this.body.querySelectorAll('tr')].find((r) => r.dataset.key === focused.key);
      const again = tr && tr.querySelectorAll('a, button')[focused.index];
      if (again) again.focus({ preventScroll: true });
    }
    const filtered = page.filtered_count !== page.total_count ? ` (of ${page.total_count})` : '';
    this.info.textContent = `${page.filtered_count}${filtered} · page ${page.page} of ${page.page_count}`;
    this.renderPager(page);
  }

  renderPager(page) {
    const go = (p) => () => { this.state.page = p; this.load(); };
    const btn = (label, p, current = false, aria) => h('button', {
      type: 'button', class: current ? 'current' : 'ghost', disabled: p < 1 || p > page.page_count || current,
      'aria-current': current ? 'page' : null, 'aria-label': aria || `Page ${p}`, onclick: go(p) }, label);
    if (page.page_count <= 1) { this.pager.replaceChildren(); return; }
    const nums = new Set([1, page.page_count, page.page - 1, page.page, page.page + 1]);
    const list = [...nums].filter((p) => p >= 1 && p <= page.page_count).sort((a, b) => a - b);
    const out = [btn('‹', page.page - 1, false, 'Previous page')];
    let prev = 0;
    for (const p of list) {
      if (p - prev > 1) out.push(h('span', { class: 'muted' }, '…'));
      out.push(btn(String(p), p, p === page.page));
      prev = p;
    }
    out.push(btn('›', page.page + 1, false, 'Next page'));
    this.pager.replaceChildren(...out);
  }

  destroy() {
    this.stop();
  }
}

// A small table from a plain array (no paging), for detail pages.
export function simpleTable(columns, rows, emptyText = 'None') {
  if (!rows || !rows.length) return h('p', { class: 'muted empty-inline' }, emptyText);
  return h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.cls || '' }, c.label)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, columns.map((c) => h('td', { class: c.cls || '', 'data-label': c.label }, c.render ? c.render(r) : r[c.key])))))));
}
