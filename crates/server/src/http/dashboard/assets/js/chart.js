// Line charts in SVG, drawn by hand: a time window of samples, one line (and a faint area)
// per series, an optional limit line (the memory alarm's watermark, the disk free limit).

import { h, svg } from './ui.js';
import { short } from './format.js';

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function spanText(ms) {
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s} s` : `${Math.round(s / 60)} min`;
}

export class LineChart {
  // series: [{ key, label, cls }] (cls picks the colour: s0..s5); format: a value's text.
  constructor({ title, series, format = short, axis = short, windowMs = 5 * 60 * 1000, height = 170, limit }) {
    this.series = series;
    this.format = format;
    this.axis = axis;
    this.windowMs = windowMs;
    this.height = height;
    this.limitLabel = limit;
    this.points = [];
    this.limit = null;
    this.legend = h('ul', { class: 'legend' });
    this.plot = h('div', { class: 'plot' });
    this.el = h('figure', { class: 'chart' },
      h('figcaption', {}, h('span', { class: 'chart-title' }, title), this.legend),
      this.plot);
    this.observer = new ResizeObserver(() => this.draw());
    this.observer.observe(this.plot);
  }

  // points: [{ t, v: { key: number } }], oldest first.
  update(points, limit = null) {
    this.points = points;
    this.limit = limit;
    this.draw();
  }

  draw() {
    const width = this.plot.clientWidth;
    if (!width) return;
    const height = this.height;
    const now = this.points.length ? this.points[this.points.length - 1].t : Date.now();
    // A short history fills the chart (at least a minute shown), a long one scrolls.
    const first = this.points.length ? this.points[0].t : now;
    const span = Math.min(this.windowMs, Math.max(60 * 1000, now - first));
    const t0 = now - span;
    const visible = this.points.filter((p) => p.t >= t0);
    let max = 0;
    for (const p of visible) for (const s of this.series) max = Math.max(max, p.v[s.key] || 0);
    if (this.limit) max = Math.max(max, this.limit);
    max = niceMax(max * 1.05);
    // Room on the left for the longest axis label.
    const longest = Math.max(...[0, 0.5, 1].map((f) => this.axis(max * f).length));
    const pad = { l: Math.max(30, Math.ceil(longest * 6.6) + 12), r: 10, t: 10, b: 22 };
    const w = width - pad.l - pad.r;
    const ht = height - pad.t - pad.b;
    const x = (t) => pad.l + ((t - t0) / span) * w;
    const y = (v) => pad.t + ht - (v / max) * ht;
    const root = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
      'aria-label': `${this.el.querySelector('.chart-title').textContent} over the last ${spanText(span)}` });
    for (const f of [0, 0.5, 1]) {
      const yy = y(max * f);
      root.append(
        svg('line', { class: 'grid', x1: pad.l, x2: pad.l + w, y1: yy, y2: yy }),
        svg('text', { class: 'axis', x: pad.l - 6, y: yy + 4, 'text-anchor': 'end' }, document.createTextNode(this.axis(max * f))));
    }
    root.append(
      svg('text', { class: 'axis', x: pad.l, y: height - 5 }, document.createTextNode(`−${spanText(span)}`)),
      svg('text', { class: 'axis', x: pad.l + w, y: height - 5, 'text-anchor': 'end' }, document.createTextNode('now')));
    if (this.limit) {
      const ly = y(this.limit);
      root.append(
        svg('line', { class: 'limit', x1: pad.l, x2: pad.l + w, y1: ly, y2: ly }),
        svg('text', { class: 'limit-label', x: pad.l + 4, y: ly - 4 }, document.createTextNode(`${this.limitLabel || 'limit'} ${this.format(this.limit)}`)));
    }
    for (const s of this.series) {
      const pts = visible.filter((p) => p.v[s.key] !== undefined && p.v[s.key] !== null);
      if (!pts.length) continue;
      const line = pts.map((p) => `${x(p.t).toFixed(1)},${y(p.v[s.key]).toFixed(1)}`).join(' ');
      const first = x(pts[0].t).toFixed(1);
      const last = x(pts[pts.length - 1].t).toFixed(1);
      const base = y(0).toFixed(1);
      root.append(
        svg('polygon', { class: `area ${s.cls}`, points: `${first},${base} ${line} ${last},${base}` }),
        svg('polyline', { class: `line ${s.cls}`, points: line }));
      if (pts.length === 1) {
        root.append(svg('circle', { class: `dot ${s.cls}`, cx: first, cy: y(pts[0].v[s.key]).toFixed(1), r: 3 }));
      }
    }
    this.plot.replaceChildren(root);
    const latest = this.points[this.points.length - 1];
    this.legend.replaceChildren(...this.series.map((s) => h('li', {},
      h('span', { class: `swatch ${s.cls}` }),
      h('span', { class: 'legend-label' }, s.label),
      h('strong', {}, latest && latest.v[s.key] !== undefined && latest.v[s.key] !== null ? this.format(latest.v[s.key]) : '–'))));
  }

  destroy() {
    this.observer.disconnect();
  }
}

// A horizontal gauge: used against its limit (memory, disk).
export function gauge(label, used, limit, format, { invert = false, alarm = false } = {}) {
  const known = typeof used === 'number' && typeof limit === 'number' && limit > 0;
  const frac = known ? Math.min(1, invert ? limit / Math.max(used, 1) : used / limit) : 0;
  const level = alarm ? 'bad' : frac > 0.8 ? 'warn' : 'good';
  const bar = h('div', { class: 'gauge-bar' }, h('div', { class: `gauge-fill ${level}` }));
  bar.firstChild.style.width = `${(frac * 100).toFixed(1)}%`;
  return h('div', { class: 'gauge' },
    h('div', { class: 'gauge-head' },
      h('span', {}, label),
      h('span', { class: `gauge-state ${level}` }, alarm ? 'ALARM' : known ? 'ok' : 'unknown')),
    h('div', { class: 'gauge-figures' },
      h('strong', {}, known || typeof used === 'number' ? format(used) : '–'),
      h('span', {}, invert ? ` free, limit ${known ? format(limit) : '–'}` : ` of ${known ? format(limit) : '–'}`)),
    h('div', { role: 'meter', 'aria-label': label, 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(frac * 100) }, bar));
}
