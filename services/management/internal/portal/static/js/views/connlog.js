// connlog.js: the connection log, the record of every WebSocket session that ended, newest
// first: filters (API, subscription, node, close code, time range), pages, and a CSV export of
// what the filters select. Admins and tenants read the service's; a consumer its own.

import { usage } from '../api.js';
import { h, replace, field, table, notice, shortDate } from '../dom.js';

const PAGE = 50;

export async function render(page, ctx) {
  const staff = ctx.me.kind !== 'consumer';
  const src = usage(ctx);
  const inputs = {
    api: h('input', { id: 'log-api', autocomplete: 'off', spellcheck: 'false' }),
    subscription: h('input', { id: 'log-subscription', autocomplete: 'off', spellcheck: 'false' }),
    node: h('input', { id: 'log-node', autocomplete: 'off', spellcheck: 'false' }),
    code: h('input', { id: 'log-code', inputmode: 'numeric', autocomplete: 'off', placeholder: '1008' }),
    from: h('input', { id: 'log-from', type: 'datetime-local' }),
    to: h('input', { id: 'log-to', type: 'datetime-local' }),
  };
  const status = h('div', { id: 'log-status', 'aria-live': 'polite' });
  const slot = h('div', { id: 'log-table' });
  const pager = h('div', { class: 'actions', id: 'log-pager' });
  let skip = 0;
  const load = async () => {
    const filter = filterOf(inputs);
    if (filter.error) {
      replace(status, notice('error', filter.error));
      return;
    }
    replace(status, notice('info', 'Loading…'));
    const { data } = await src.log({ $filter: filter.expr, $top: PAGE, $skip: skip });
    drawTable(slot, data.value || [], staff);
    replace(status, notice('info', `${data.count} entr${data.count === 1 ? 'y' : 'ies'}${filter.expr ? ' match' : ''}.`));
    replace(pager,
      h('button', { type: 'button', class: 'secondary small', disabled: skip === 0, onclick: () => { skip = Math.max(0, skip - PAGE); load(); } }, 'Newer'),
      h('button', { type: 'button', class: 'secondary small', disabled: skip + PAGE >= data.count, onclick: () => { skip += PAGE; load(); } }, 'Older'));
  };
  const exportCSV = async () => {
    const filter = filterOf(inputs);
    if (filter.error) return;
    const { data } = await src.log({ $filter: filter.expr, $format: 'csv' }, { Accept: 'text/csv' });
    const url = URL.createObjectURL(new Blob([data], { type: 'text/csv' }));
    const a = h('a', { href: url, download: 'connection-log.csv', hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  };
  const form = h('form', {
    class: 'card', id: 'log-form', 'aria-label': 'Log filters',
    onsubmit: (e) => { e.preventDefault(); skip = 0; load().catch((err) => replace(status, notice('error', err.message))); },
  },
  h('div', { class: 'grid' },
    field('API', inputs.api), field('Subscription', inputs.subscription), staff ? field('Node id', inputs.node) : null,
    field('Close code', inputs.code, 'e.g. 1008 for a revoked or limited session.'), field('Closed from', inputs.from), field('Closed before', inputs.to)),
  h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Filter'),
    h('button', { type: 'button', class: 'secondary', id: 'log-csv', onclick: () => exportCSV().catch((err) => replace(status, notice('error', err.message))) }, 'Export CSV')));
  page.append(h('h1', null, staff ? 'Connection log' : 'Your connection log'),
    h('p', { class: 'muted' }, 'Why a session ended: its close code and reason, a few seconds after it happened.'),
    form, status, slot, pager);
  await load();
  return undefined;
}

const quote = (s) => `'${s.replace(/'/g, "''")}'`;

// filterOf builds the $filter of the form's inputs, or says what is wrong.
function filterOf(inputs) {
  const terms = [];
  const v = (k) => inputs[k].value.trim();
  if (v('api')) terms.push(`apiId eq ${quote(v('api'))}`);
  if (v('subscription')) terms.push(`subscriptionId eq ${quote(v('subscription'))}`);
  if (v('node')) terms.push(`nodeId eq ${quote(v('node'))}`);
  if (v('code')) {
    if (!/^\d{4}$/.test(v('code'))) return { error: 'A close code is four digits, such as 1008.' };
    terms.push(`closeCode eq ${v('code')}`);
  }
  for (const [k, op] of [['from', 'ge'], ['to', 'lt']]) {
    if (!v(k)) continue;
    const t = Date.parse(v(k));
    if (Number.isNaN(t)) return { error: 'A time is not valid.' };
    terms.push(`timestamp ${op} datetime'${new Date(t).toISOString()}'`);
  }
  return { expr: terms.join(' and ') };
}

function drawTable(slot, entries, staff) {
  replace(slot, table('Connection log', [
    { label: 'Closed', cell: (e) => h('time', { datetime: e.closed }, shortDate(e.closed)) },
    { label: 'Close', cell: (e) => h('span', { class: 'mono', dataset: { closeCode: String(e.closeCode) } }, String(e.closeCode)) },
    { label: 'Reason', cell: (e) => [e.reason, e.detail ? h('span', { class: 'muted' }, ` — ${e.detail}`) : null] },
    { label: 'Closed by', cell: (e) => e.closedBy },
    { label: 'API', cell: (e) => e.api },
    { label: 'Subscription', cell: (e) => e.subscription || '' },
    ...(staff ? [{ label: 'Node', cell: (e) => h('span', { class: 'mono', title: e.nodeId }, `${e.gateway} / ${e.nodeId.slice(0, 8)}`) }] : []),
    { label: 'Client', cell: (e) => e.clientIp || '' },
    { label: 'Duration', cell: (e) => `${Math.round(e.durationSeconds * 10) / 10} s` },
    { label: 'Messages in/out', cell: (e) => `${e.messagesIn} / ${e.messagesOut}` },
    { label: 'Bytes in/out', cell: (e) => `${e.bytesIn} / ${e.bytesOut}` },
    { label: 'Correlation id', cell: (e) => h('span', { class: 'mono' }, e.correlationId) },
  ], entries, 'No session ended that matches.'));
  for (const [i, tr] of [...slot.querySelectorAll('tbody tr')].entries()) tr.dataset.correlationId = entries[i].correlationId;
}
