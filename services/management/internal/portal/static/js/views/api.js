// api.js: one API: its settings, the products and gateways it is in, and links to its policy
// and test console.

import { arm } from '../api.js';
import { h } from '../dom.js';

export async function render(page, ctx) {
  const id = ctx.params.api;
  const rel = `apis/${encodeURIComponent(id)}`;
  const [api, products, gateways] = await Promise.all([
    arm.get(ctx.svc.id, rel), arm.list(ctx.svc.id, `${rel}/products`), arm.list(ctx.svc.id, 'gateways')]);
  const linked = [];
  await Promise.all(gateways.map(async (g) => {
    if (await arm.exists(ctx.svc.id, `gateways/${encodeURIComponent(g.name)}/apis/${encodeURIComponent(id)}`)) linked.push(g.name);
  }));
  linked.sort();
  const p = api.properties;
  const ws = p.type === 'websocket';
  const row = (term, ...desc) => [h('dt', null, term), h('dd', null, ...desc)];
  page.append(
    h('p', { class: 'crumbs' }, h('a', { href: ctx.hash('apis') }, 'APIs'), ' / ', id),
    h('h1', null, p.displayName || id),
    h('p', { class: 'row-actions' },
      ws ? h('a', { class: 'button', href: ctx.hash('apis', id, 'console') }, 'Test console') : null,
      h('a', { class: 'button secondary', href: ctx.hash('apis', id, 'policy') }, ws ? 'onHandshake policy' : 'Policy')),
    h('dl', { class: 'props card' },
      row('Name', id),
      row('Type', ws ? 'WebSocket' : 'HTTP'),
      row(ws ? 'WebSocket URL' : 'Web service URL', h('span', { class: 'mono' }, p.serviceUrl || '')),
      row('API URL suffix', h('span', { class: 'mono' }, `/${p.path || ''}`)),
      row('Protocols', (p.protocols || []).join(', ')),
      row('Subscription required', p.subscriptionRequired === false ? 'No' : 'Yes'),
      row('Key parameter names', p.subscriptionKeyParameterNames
        ? `header ${p.subscriptionKeyParameterNames.header}, query ${p.subscriptionKeyParameterNames.query}` : ''),
      row('Products', products.length ? products.map((x) => x.properties.displayName || x.name).join(', ') : 'None'),
      row('Gateways', linked.length ? linked.map((g, i) => [i ? ', ' : '', h('a', { href: ctx.hash('gateways', g) }, g)]) : 'None')));
}
