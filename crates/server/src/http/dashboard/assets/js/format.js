// Numbers, sizes, rates and times as people read them.

const nf = new Intl.NumberFormat();

export function num(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  return nf.format(n);
}

export function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n);
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(i === 0 || v >= 100 ? 0 : 1)} ${units[i]}`;
}

export function rate(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  if (n === 0) return '0/s';
  if (n < 10) return `${n.toFixed(1)}/s`;
  return `${nf.format(Math.round(n))}/s`;
}

// A short count for chart axes: 1.2k, 3.4M.
export function short(n) {
  const a = Math.abs(n);
  if (a >= 1e9) return `${(n / 1e9).toFixed(a >= 1e10 ? 0 : 1)}G`;
  if (a >= 1e6) return `${(n / 1e6).toFixed(a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e3) return `${(n / 1e3).toFixed(a >= 1e4 ? 0 : 1)}k`;
  if (a > 0 && a < 10 && !Number.isInteger(n)) return n.toFixed(1);
  return String(Math.round(n));
}

export function time(ms) {
  if (!ms) return '–';
  return new Date(ms).toLocaleString();
}

export function clock(ms) {
  const d = new Date(ms);
  const p = (x, n = 2) => String(x).padStart(n, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

export function since(ms) {
  if (!ms) return '–';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function vhostLabel(v) {
  return v === '/' ? '/ (default)' : v;
}
