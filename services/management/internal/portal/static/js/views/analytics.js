// analytics.js: a service's traffic over time (admins and tenants), or a consumer's own: charts
// of connections opened and closed, handshakes by outcome, messages and bytes each way and
// connection time over a chosen range and granularity, from the usage reports, and top-N
// tables by API, product, subscription and gateway node.

import { usage } from '../api.js';
import { h, replace, field, table, notice } from '../dom.js';
import { timeChart, chartGrid, fmt } from '../charts.js';

const RANGES = { hour: 3600, day: 86400, week: 7 * 86400 };
const INTERVALS = [['PT1M', 60], ['PT5M', 300], ['PT15M', 900], ['PT1H', 3600], ['P1D', 86400]];
const DEFAULT_INTERVAL = { hour: 'PT1M', day: 'PT15M', week: 'PT1H', custom: 'PT1H' };
const MAX_BUCKETS = 1000; // a byTime page

export async function render(page, ctx) {
  const staff = ctx.me.kind !== 'consumer';
  const src = usage(ctx);
  const range = h('select', { id: 'an-range' }, [['hour', 'Last hour'], ['day', 'Last day'], ['week', 'Last week'], ['custom', 'Custom']]
    .map(([v, t]) => h('option', { value: v }, t)));
  const interval = h('select', { id: 'an-interval' }, INTERVALS.map(([v]) => h('option', { value: v }, v)));
  interval.value = DEFAULT_INTERVAL.hour;
  const from = h('input', { id: 'an-from', type: 'datetime-local' });
  const to = h('input', { id: 'an-to', type: 'datetime-local' });
  const top = h('select', { id: 'an-top' }, [5, 10, 25].map((n) => h('option', { value: String(n), selected: n === 10 }, String(n))));
  const custom = h('div', { hidden: true }, h('div', { class: 'grid' }, field('From', from), field('To', to)));
  range.addEventListener('change', () => {
    custom.hidden = range.value !== 'custom';
    interval.value = DEFAULT_INTERVAL[range.value];
  });
  const status = h('div', { id: 'an-status', 'aria-live': 'polite' });
  const charts = h('div', { id: 'an-charts' });
  const breakdowns = h('div', { id: 'an-breakdowns' });
  let destroy = () => {};
  const form = h('form', {
    class: 'card', id: 'an-form', 'aria-label': 'Chart period',
    onsubmit: async (e) => {
      e.preventDefault();
      destroy = await draw({ src, staff, range: range.value, interval: interval.value, from: from.value, to: to.value, top: Number(top.value) },
        { status, charts, breakdowns, destroy });
    },
  },
  h('div', { class: 'grid' }, field('Range', range), field('Granularity', interval, 'The width of each point.'),
    field('Top', top, 'Rows of each breakdown.')),
  custom,
  h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Show')));
  page.append(
    h('h1', null, staff ? 'Analytics' : 'Your usage'),
    h('p', { class: 'muted' }, staff ? 'Traffic of this service, from the usage gateway nodes report each minute (about a minute behind).'
      : 'Traffic of your subscriptions, from the usage gateway nodes report each minute (about a minute behind).'),
    form, status,
    h('section', { 'aria-labelledby': 'an-charts-h' }, h('h2', { id: 'an-charts-h' }, 'Over time'), charts),
    h('section', { 'aria-labelledby': 'an-top-h' }, h('h2', { id: 'an-top-h' }, 'Breakdowns'), breakdowns));
  destroy = await draw({ src, staff, range: 'hour', interval: interval.value, top: 10 }, { status, charts, breakdowns, destroy });
  return () => destroy();
}

// window returns the range [from, to) in Unix seconds, or an error message.
function timeWindow(o) {
  const now = Math.floor(Date.now() / 1000);
  if (o.range !== 'custom') return { from: now - RANGES[o.range], to: now + 60 };
  const f = Date.parse(o.from);
  const t = Date.parse(o.to);
  if (Number.isNaN(f) || Number.isNaN(t) || f >= t) return { error: 'Give a custom range whose start is before its end.' };
  return { from: Math.floor(f / 1000), to: Math.floor(t / 1000) };
}

const iso = (secs) => new Date(secs * 1000).toISOString();

async function draw(o, slots) {
  const w = timeWindow(o);
  if (w.error) {
    replace(slots.status, notice('error', w.error));
    return slots.destroy;
  }
  const step = INTERVALS.find(([v]) => v === o.interval)[1];
  const first = Math.floor(w.from / step) * step;
  const buckets = Math.ceil((w.to - first) / step);
  if (buckets > MAX_BUCKETS) {
    replace(slots.status, notice('error', `That is ${buckets} points; choose a coarser granularity (at most ${MAX_BUCKETS} points).`));
    return slots.destroy;
  }
  replace(slots.status, notice('info', 'Loading…'));
  const filter = `timestamp ge datetime'${iso(w.from)}' and timestamp lt datetime'${iso(w.to)}'`;
  const byTime = await o.src.report('byTime', { $filter: filter, interval: o.interval, $top: MAX_BUCKETS });
  const times = Array.from({ length: buckets }, (_, i) => first + i * step);
  const at = new Map((byTime.value || []).map((r) => [Math.floor(Date.parse(r.timestamp) / 1000), r]));
  const col = (f) => times.map((t) => (at.has(t) ? f(at.get(t)) : 0));
  const outcomes = outcomeSeries(byTime.value || [], col);
  slots.destroy();
  const made = await Promise.all([
    timeChart('connections', 'Connections opened and closed', times,
      [{ label: 'opened', values: col((r) => r.connectionsOpened) }, { label: 'closed', values: col((r) => r.connectionsClosed) }]),
    timeChart('handshakes', 'Handshakes by outcome', times, outcomes),
    timeChart('messages', 'Messages each way', times,
      [{ label: 'in', values: col((r) => r.messagesIn) }, { label: 'out', values: col((r) => r.messagesOut) }]),
    timeChart('bytes', 'Payload bytes each way', times,
      [{ label: 'in', values: col((r) => r.bytesIn) }, { label: 'out', values: col((r) => r.bytesOut) }], 'bytes'),
    timeChart('connection-seconds', 'Connection time', times, [{ label: 'seconds', values: col((r) => r.connectionSeconds) }], 's'),
  ]);
  const destroy = chartGrid(slots.charts, made);
  await drawBreakdowns(o, filter, slots.breakdowns);
  replace(slots.status, notice('ok', `${iso(w.from)} to ${iso(w.to)}, every ${o.interval}.`));
  return destroy;
}

// outcomeSeries is one series per handshake outcome: 101, then every refusal's
// "<status> <reason>" seen in the range, most frequent first.
function outcomeSeries(records, col) {
  const totals = new Map();
  for (const r of records) for (const [k, v] of Object.entries(r.refusals || {})) totals.set(k, (totals.get(k) || 0) + v);
  const keys = [...totals.keys()].sort((a, b) => totals.get(b) - totals.get(a) || a.localeCompare(b));
  return [{ label: '101', values: col((r) => r.handshakesSuccess) },
    ...keys.map((k) => ({ label: k, values: col((r) => (r.refusals && r.refusals[k]) || 0) }))];
}

const BREAKDOWNS = [
  ['byApi', 'By API', 'API', true],
  ['byProduct', 'By product', 'Product', false],
  ['bySubscription', 'By subscription', 'Subscription', true],
  ['byNode', 'By gateway node', 'Node', false],
];

async function drawBreakdowns(o, filter, slot) {
  const shown = BREAKDOWNS.filter(([, , , consumer]) => o.staff || consumer);
  const pages = await Promise.all(shown.map(([by]) => o.src.report(by, { $filter: filter, $top: o.top, $orderby: 'callCountTotal desc' })));
  replace(slot, shown.map(([by, title, label], i) => h('section', { class: 'breakdown', dataset: { breakdown: by }, 'aria-label': title },
    h('h3', null, title),
    table(title, [
      { label, cell: (r) => r.name || (by === 'byProduct' ? '(no product)' : by === 'bySubscription' ? '(no subscription)' : '') },
      { label: 'Opened', cell: (r) => fmt(r.connectionsOpened) },
      { label: 'Refused', cell: (r) => fmt(r.handshakesRejected) },
      { label: 'Messages in/out', cell: (r) => `${fmt(r.messagesIn)} / ${fmt(r.messagesOut)}` },
      { label: 'Bytes in/out', cell: (r) => `${fmt(r.bytesIn, 'bytes')} / ${fmt(r.bytesOut, 'bytes')}` },
      { label: 'Connection time', cell: (r) => fmt(r.connectionSeconds, 's') },
    ], pages[i].value || [], 'No traffic in this range.'))));
}
