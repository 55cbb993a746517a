// live.js: "Live now" for admins and tenants: the WebSocket sessions open on the service's live
// gateway nodes (the live connections API), counted per API and per node and listed, refreshed
// every 5 s; a Contributor may close one, or every session of a subscription.

import { arm } from '../api.js';
import { h, replace, table, notice, shortDate } from '../dom.js';

const REFRESH_MS = 5000;

export async function render(page, ctx) {
  const slot = h('div', { id: 'live' }, h('p', { class: 'muted' }, 'Asking the gateway nodes…'));
  const status = h('div', { id: 'live-status', 'aria-live': 'polite' });
  const refresh = h('button', { type: 'button', class: 'small secondary', onclick: () => draw(slot, ctx, status) }, 'Refresh');
  page.append(h('div', { class: 'section-head' }, h('h1', null, 'Live now'), refresh),
    h('p', { class: 'muted' }, 'Sessions open on the live gateway nodes of this service, refreshed every 5 seconds.'), status, slot);
  await draw(slot, ctx, status);
  const timer = setInterval(() => { draw(slot, ctx, status).catch(() => {}); }, REFRESH_MS);
  return () => clearInterval(timer);
}

// countBy counts conns by key(conn), largest first.
function countBy(conns, key) {
  const m = new Map();
  for (const c of conns) m.set(key(c), (m.get(key(c)) || 0) + 1);
  return [...m.entries()].sort((a, b) => b[1] - a[1] || String(a[0]).localeCompare(String(b[0])));
}

async function draw(slot, ctx, status) {
  const conns = (await arm.get(ctx.svc.id, 'connections')).value || [];
  // Keep focus where it was: a refresh must not take a keyboard user's place away.
  const focused = document.activeElement && slot.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
  const byAPI = countBy(conns, (c) => c.properties.api);
  const byNode = countBy(conns, (c) => `${c.properties.gateway} / ${c.properties.node}`);
  replace(slot,
    h('p', { id: 'live-total', dataset: { open: String(conns.length) } }, `${conns.length} open session${conns.length === 1 ? '' : 's'}.`),
    h('div', { class: 'grid' },
      h('section', { 'aria-label': 'Per API', dataset: { live: 'api' } }, h('h2', null, 'Per API'),
        table('Open sessions per API', [{ label: 'API', cell: (r) => r[0] }, { label: 'Open', cell: (r) => String(r[1]) }], byAPI, 'None.')),
      h('section', { 'aria-label': 'Per node', dataset: { live: 'node' } }, h('h2', null, 'Per node'),
        table('Open sessions per node', [{ label: 'Gateway / node', cell: (r) => r[0] }, { label: 'Open', cell: (r) => String(r[1]) }], byNode, 'None.'))),
    h('h2', null, 'Sessions'),
    table('Open sessions', [
      { label: 'Since', cell: (c) => shortDate(c.properties.since) },
      { label: 'API', cell: (c) => c.properties.api },
      { label: 'Subscription', cell: (c) => c.properties.subscription || '' },
      { label: 'Node', cell: (c) => h('span', { class: 'mono', title: c.properties.node }, `${c.properties.gateway} / ${c.properties.node.slice(0, 8)}`) },
      { label: 'Client', cell: (c) => c.properties.clientIp || '' },
      { label: 'Messages in/out', cell: (c) => `${c.properties.messagesIn} / ${c.properties.messagesOut}` },
      ...(ctx.canWrite ? [{ label: 'Close', cell: (c) => closeButtons(c, ctx, slot, status) }] : []),
    ], conns, 'No session is open.'));
  if (focused) {
    const again = slot.querySelector(`[data-focus-key="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

function closeButtons(c, ctx, slot, status) {
  const act = async (what, call) => {
    try {
      const r = await call();
      replace(status, notice('ok', what(r)));
    } catch (err) {
      replace(status, notice('error', `Could not close: ${err.message}`));
    }
    await draw(slot, ctx, status);
  };
  const sub = c.properties.subscription;
  return h('div', { class: 'actions' },
    h('button', {
      type: 'button', class: 'small secondary', dataset: { focusKey: `close-${c.name}` }, 'aria-label': `Close session ${c.name}`,
      onclick: () => act(() => `Session ${c.name} closed (1008).`, () => arm.post(ctx.svc.id, `connections/${encodeURIComponent(c.name)}/close`)),
    }, 'Close'),
    sub ? h('button', {
      type: 'button', class: 'small secondary', dataset: { focusKey: `closeall-${sub}` }, 'aria-label': `Close every session of subscription ${sub}`,
      onclick: () => act((r) => `${r && r.closed} session(s) of ${sub} closed (1008).`,
        () => arm.post(ctx.svc.id, `subscriptions/${encodeURIComponent(sub)}/closeConnections`)),
    }, `Close all of ${sub}`) : null);
}
