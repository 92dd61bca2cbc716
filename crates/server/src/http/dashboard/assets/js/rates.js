// Rates: RabbitMQ's `message_stats.<kind>_details.rate` when the API gives them, otherwise
// computed here from two successive cumulative counts (never negative: a closed channel's
// counts leave the sums).

export class History {
  constructor(max = 120) {
    this.max = max;
    this.points = [];
  }

  push(v, t = Date.now()) {
    this.points.push({ t, v });
    if (this.points.length > this.max) this.points.shift();
  }
}

export class RateMeter {
  constructor() {
    this.last = null;
  }

  // stats: a `message_stats` object; kinds: ['publish', 'deliver_get', 'ack'].
  // Answers { kind: rate or null } (null until two samples exist, without server rates).
  sample(stats, kinds, t = Date.now()) {
    const out = {};
    const counts = {};
    for (const k of kinds) {
      const details = stats && stats[`${k}_details`];
      counts[k] = stats ? stats[k] : undefined;
      if (details && typeof details.rate === 'number') {
        out[k] = details.rate;
      } else if (this.last && typeof counts[k] === 'number' && typeof this.last.counts[k] === 'number') {
        const dt = (t - this.last.t) / 1000;
        out[k] = dt > 0 ? Math.max(0, (counts[k] - this.last.counts[k]) / dt) : 0;
      } else {
        out[k] = typeof counts[k] === 'number' ? null : null;
      }
    }
    this.last = { t, counts };
    return out;
  }
}

// Sums channels' message_stats (the fallback source of overall counts).
export function sumChannels(channels) {
  const sum = { publish: 0, deliver_get: 0, ack: 0, confirm: 0, redeliver: 0 };
  for (const c of channels || []) {
    const s = c.message_stats || {};
    sum.publish += s.publish || 0;
    sum.deliver_get += (s.deliver_get !== undefined ? s.deliver_get : (s.deliver || 0) + (s.get || 0));
    sum.ack += s.ack || 0;
    sum.confirm += s.confirm || 0;
    sum.redeliver += s.redeliver || 0;
  }
  return sum;
}

export function hasCounts(stats, kinds) {
  return !!stats && kinds.some((k) => typeof stats[k] === 'number' || (stats[`${k}_details`] && typeof stats[`${k}_details`].rate === 'number'));
}

// The query asking RabbitMQ-style APIs for the last `seconds` of samples every `step`
// (`msg_rates_age`, `lengths_age`...), to fill a chart at once instead of from empty.
export function sampleQuery(seconds = 300, step = 5) {
  return `lengths_age=${seconds}&lengths_incr=${step}&msg_rates_age=${seconds}&msg_rates_incr=${step}`;
}

// Points from the `samples` the API gave (`{sample, timestamp}`, counts for message stats,
// lengths for queue lengths): rates between successive counts, lengths as they are.
// rates: { key: details object }, lengths: { key: details object }.
export function backfill(rates, lengths) {
  const byTime = new Map();
  const at = (t) => {
    if (!byTime.has(t)) byTime.set(t, {});
    return byTime.get(t);
  };
  const sorted = (d) => (d && Array.isArray(d.samples) ? [...d.samples].sort((a, b) => a.timestamp - b.timestamp) : []);
  for (const [key, details] of Object.entries(rates)) {
    const s = sorted(details);
    for (let i = 1; i < s.length; i += 1) {
      const dt = (s[i].timestamp - s[i - 1].timestamp) / 1000;
      if (dt > 0) at(s[i].timestamp)[key] = Math.max(0, (s[i].sample - s[i - 1].sample) / dt);
    }
  }
  for (const [key, details] of Object.entries(lengths)) {
    for (const x of sorted(details)) at(x.timestamp)[key] = x.sample;
  }
  return [...byTime.entries()].sort((a, b) => a[0] - b[0]).map(([t, v]) => ({ t, v }));
}
