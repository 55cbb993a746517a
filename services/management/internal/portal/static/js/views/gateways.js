// gateways.js: a service's self-hosted gateways; for one gateway, its access tokens (what a
// node starts with), its live nodes with the configuration revision each runs, and its APIs.

import { arm } from '../api.js';
import { h, replace, field, table, notice, uid, copyButton, shortDate } from '../dom.js';
import { summary, busy, onCreate } from '../forms.js';

const TARGETS = { gatewayId: 'gw-name', name: 'gw-name', 'properties.locationData': 'gw-location', 'properties.locationData.name': 'gw-location', 'properties.description': 'gw-description' };

export async function render(page, ctx) {
  if (ctx.params.gateway) return detail(page, ctx, ctx.params.gateway);
  const slot = h('div', null, h('p', { class: 'muted' }, 'Loading gateways…'));
  page.append(h('h1', null, 'Gateways'), slot);
  await draw(slot, ctx);
  if (ctx.canWrite) page.append(createForm(ctx, slot));
  return undefined;
}

async function draw(slot, ctx) {
  const gateways = await arm.list(ctx.svc.id, 'gateways');
  replace(slot, table('Gateways', [
    { label: 'Name', cell: (g) => h('a', { href: ctx.hash('gateways', g.name) }, g.name) },
    { label: 'Location', cell: (g) => (g.properties.locationData && g.properties.locationData.name) || '' },
    { label: 'Description', cell: (g) => g.properties.description || '' },
  ], gateways, 'No gateways yet.'));
}

function createForm(ctx, slot) {
  const name = h('input', { id: 'gw-name', required: true, autocomplete: 'off', spellcheck: 'false' });
  const place = h('input', { id: 'gw-location', required: true, autocomplete: 'off' });
  const description = h('input', { id: 'gw-description', autocomplete: 'off' });
  const result = h('div');
  const form = h('form', { id: 'create-gateway', class: 'card', novalidate: true, 'aria-labelledby': 'create-gw-h' },
    h('h2', { id: 'create-gw-h' }, 'Create gateway'),
    summary(),
    h('div', { class: 'grid' }, field('Name', name), field('Location', place, 'Where its nodes run, e.g. "eu-west".'), field('Description', description)),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create')),
    result);
  onCreate(form, result, {
    what: 'A gateway',
    targets: TARGETS,
    required: [[name, 'Name'], [place, 'Location']],
    name: () => name.value.trim(),
    exists: (id) => arm.exists(ctx.svc.id, `gateways/${encodeURIComponent(id)}`),
    create: (id) => arm.put(ctx.svc.id, `gateways/${encodeURIComponent(id)}`, {
      locationData: { name: place.value.trim() }, description: description.value.trim() || undefined,
    }),
    created: (id) => notice('ok', `Gateway '${id}' created. `, h('a', { href: ctx.hash('gateways', id) }, 'Generate a token for its nodes.')),
    after: () => draw(slot, ctx),
  });
  return form;
}

async function detail(page, ctx, id) {
  const rel = `gateways/${encodeURIComponent(id)}`;
  const gw = await arm.get(ctx.svc.id, rel);
  const nodesSlot = h('div', { id: 'gw-nodes' }, h('p', { class: 'muted' }, 'Loading nodes…'));
  const apisSlot = h('div');
  const refresh = h('button', { type: 'button', class: 'small secondary', onclick: () => drawNodes(nodesSlot, ctx, rel) }, 'Refresh');
  page.append(
    h('p', { class: 'crumbs' }, h('a', { href: ctx.hash('gateways') }, 'Gateways'), ' / ', id),
    h('h1', null, `Gateway ${id}`),
    h('p', { class: 'muted' }, [(gw.properties.locationData && gw.properties.locationData.name) || '', gw.properties.description ? ` — ${gw.properties.description}` : '']),
    h('section', { 'aria-labelledby': 'gw-nodes-h' }, h('div', { class: 'section-head' }, h('h2', { id: 'gw-nodes-h' }, 'Nodes'), refresh), nodesSlot),
    ctx.canWrite ? tokenForm(ctx, rel, id) : null,
    h('section', { 'aria-labelledby': 'gw-apis-h' }, h('h2', { id: 'gw-apis-h' }, 'APIs on this gateway'), apisSlot));
  const apis = await arm.list(ctx.svc.id, `${rel}/apis`);
  replace(apisSlot, table('APIs on this gateway', [
    { label: 'API', cell: (a) => h('a', { href: ctx.hash('apis', a.name) }, a.properties.displayName || a.name) },
    { label: 'URL suffix', cell: (a) => `/${a.properties.path || ''}` },
  ], apis, 'No APIs yet: tick this gateway when creating an API.'));
  await drawNodes(nodesSlot, ctx, rel);
  const timer = setInterval(() => { drawNodes(nodesSlot, ctx, rel).catch(() => {}); }, 10000);
  return () => clearInterval(timer);
}

async function drawNodes(slot, ctx, rel) {
  const { data, headers } = await arm.raw(ctx.svc.id, `${rel}/nodes`);
  const current = Number(headers.get('Gatehouse-Revision') || 0);
  const nodes = data.value || [];
  replace(slot,
    h('p', { class: 'muted' }, `Configuration revision of the service: ${current || 'unknown'}. Refreshed ${new Date().toLocaleTimeString()}.`),
    table('Gateway nodes', [
      { label: 'Node', cell: (n) => h('span', { class: 'mono' }, n.name) },
      { label: 'URL', cell: (n) => h('span', { class: 'mono nowrap' }, n.properties.url || '') },
      {
        label: 'Revision',
        cell: (n) => [String(n.properties.revision), ' ', current && n.properties.revision >= current
          ? h('span', { class: 'state state-active' }, 'current') : h('span', { class: 'state state-suspended' }, 'behind')],
      },
      { label: 'Health', cell: (n) => [n.properties.healthy ? 'Healthy' : 'Unhealthy', n.properties.lastError ? ` — ${n.properties.lastError}` : ''] },
      { label: 'Status', cell: (n) => n.properties.status },
      { label: 'Connections', cell: (n) => String(n.properties.connections ?? 0) },
      { label: 'Last heartbeat', cell: (n) => shortDate(n.properties.lastHeartbeat) },
      { label: 'Host', cell: (n) => [n.properties.hostname || '', n.properties.version ? ` (${n.properties.version})` : ''] },
    ], nodes, 'No node has reported yet. Start one with GATEWAY_TOKEN set to a token from below.'));
}

function tokenForm(ctx, rel, id) {
  const keyType = h('select', { id: 'gw-token-keyType' }, h('option', { value: 'primary' }, 'Primary'), h('option', { value: 'secondary' }, 'Secondary'));
  const days = h('input', { id: 'gw-token-days', type: 'number', min: '1', max: '30', value: '30', required: true });
  const out = h('div', { id: 'gw-token-result' });
  const form = h('form', { class: 'card', id: 'gw-token-form', 'aria-labelledby': 'gw-token-h' },
    h('h2', { id: 'gw-token-h' }, 'Access token'),
    h('p', { class: 'muted' }, 'A gateway node starts with GATEWAY_TOKEN set to this token. Regenerating the signing key revokes every token signed with it.'),
    h('div', { class: 'grid' }, field('Signing key', keyType), field('Valid for (days, at most 30)', days)),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Generate token')),
    out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    replace(out);
    await busy(form, async () => {
      const n = Math.min(30, Math.max(1, Number(days.value) || 30));
      const expiry = new Date(Date.now() + n * 24 * 3600 * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
      try {
        const res = await arm.post(ctx.svc.id, `${rel}/generateToken`, { keyType: keyType.value, expiry });
        const tid = uid('gwtoken');
        const value = h('input', { id: tid, class: 'mono secret', readOnly: true, value: res.value, autocomplete: 'off', spellcheck: 'false' });
        replace(out, notice('ok', h('p', null, `Token for gateway ${id}, valid until ${new Date(expiry).toLocaleString()}. Copy it now: it is not shown again.`),
          h('div', { class: 'field' }, h('label', { for: tid }, 'GATEWAY_TOKEN'), h('div', { class: 'inline' }, value, copyButton(value, 'Copy gateway token')))));
        value.select();
      } catch (err) {
        replace(out, notice('error', `Could not generate a token: ${err.message}`));
      }
    });
  });
  return form;
}
