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
