// apis.js: a service's APIs and the "Create WebSocket API" form with APIM's fields: display
// name, name, WebSocket URL, URL scheme, API URL suffix, products and gateways.

import { arm } from '../api.js';
import { h, replace, field, table, notice } from '../dom.js';
import { summary, slug, checkboxes, checked, onCreate } from '../forms.js';

// TARGETS maps the ARM targets of an API's validation errors to the form's inputs.
const TARGETS = {
  'properties.displayName': 'api-displayName',
  displayName: 'api-displayName',
  apiId: 'api-name',
  name: 'api-name',
  'properties.serviceUrl': 'api-serviceUrl',
  'properties.protocols': 'api-scheme',
  'properties.path': 'api-path',
  path: 'api-path',
};

const SCHEMES = [['ws,wss', 'WS and WSS'], ['wss', 'WSS only'], ['ws', 'WS only']];

export async function render(page, ctx) {
  const listSlot = h('div', null, h('p', { class: 'muted' }, 'Loading APIs…'));
  page.append(h('h1', null, 'APIs'), h('section', { 'aria-labelledby': 'apis-list-h' }, h('h2', { id: 'apis-list-h', class: 'sr-only' }, 'All APIs'), listSlot));
  const [list, products, gateways] = await Promise.all([
    arm.list(ctx.svc.id, 'apis'), arm.list(ctx.svc.id, 'products'), arm.list(ctx.svc.id, 'gateways')]);
  drawList(listSlot, ctx, list);
  if (ctx.canWrite) page.append(createForm(ctx, products, gateways, listSlot));
}

function drawList(slot, ctx, list) {
  replace(slot, table('APIs', [
    { label: 'Display name', cell: (a) => h('a', { href: ctx.hash('apis', a.name) }, a.properties.displayName || a.name) },
    { label: 'Name', cell: (a) => a.name },
    { label: 'Type', cell: (a) => (a.properties.type === 'websocket' ? 'WebSocket' : 'HTTP') },
    { label: 'URL suffix', cell: (a) => `/${a.properties.path || ''}` },
    { label: 'Protocols', cell: (a) => (a.properties.protocols || []).join(', ') },
    { label: 'Backend', cell: (a) => h('span', { class: 'mono' }, a.properties.serviceUrl || '') },
    {
      label: 'Actions',
      cell: (a) => h('span', { class: 'row-actions' },
        a.properties.type === 'websocket' ? h('a', { href: ctx.hash('apis', a.name, 'console') }, 'Test console') : null,
        h('a', { href: ctx.hash('apis', a.name, 'policy') }, 'Policy')),
    },
  ], list, 'No APIs yet.'));
}

function createForm(ctx, products, gateways, listSlot) {
  let nameTouched = false;
  const displayName = h('input', { id: 'api-displayName', name: 'displayName', required: true, autocomplete: 'off', maxlength: '300' });
  const name = h('input', { id: 'api-name', name: 'name', required: true, autocomplete: 'off', spellcheck: 'false', maxlength: '256' });
  const serviceUrl = h('input', { id: 'api-serviceUrl', name: 'serviceUrl', type: 'text', inputmode: 'url', autocomplete: 'off', spellcheck: 'false', placeholder: 'wss://backend.example.com/client/hubs/chat' });
  const scheme = h('select', { id: 'api-scheme', name: 'scheme' }, SCHEMES.map(([v, l]) => h('option', { value: v }, l)));
  const path = h('input', { id: 'api-path', name: 'path', autocomplete: 'off', spellcheck: 'false', placeholder: 'chat' });
  displayName.addEventListener('input', () => { if (!nameTouched) name.value = slug(displayName.value); });
  name.addEventListener('input', () => { nameTouched = name.value !== ''; });
  const result = h('div', { id: 'api-create-result' });
  const form = h('form', { id: 'create-ws-api', class: 'card', 'aria-labelledby': 'create-ws-api-h', novalidate: true },
    h('h2', { id: 'create-ws-api-h' }, 'Create WebSocket API'),
    summary(),
    h('div', { class: 'grid' },
      field('Display name', displayName),
      field('Name', name, 'The API\'s identifier: letters, digits, - and _. Filled in from the display name.'),
      field('WebSocket URL', serviceUrl, 'The backend the gateway connects to: ws:// or wss://.'),
      field('URL scheme', scheme, 'What clients use to reach the gateway.'),
      field('API URL suffix', path, 'Clients connect to ws(s)://{gateway}/{suffix}.')),
    h('div', { class: 'grid' },
      checkboxes('Products', 'api-products', products.map((p) => ({ value: p.name, label: p.properties.displayName || p.name })), 'No products yet.'),
      checkboxes('Gateways', 'api-gateways', gateways.map((g) => ({ value: g.name, label: g.name })), 'No gateways yet.')),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create')),
    result);
  onCreate(form, result, {
    what: 'An API',
    targets: TARGETS,
    required: [[displayName, 'Display name'], [name, 'Name']],
    name: () => name.value.trim(),
    exists: (id) => arm.exists(ctx.svc.id, `apis/${encodeURIComponent(id)}`),
    create: (id) => arm.put(ctx.svc.id, `apis/${encodeURIComponent(id)}`, {
      displayName: displayName.value.trim(), type: 'websocket', serviceUrl: serviceUrl.value.trim(),
      path: path.value.trim(), protocols: scheme.value.split(','),
    }),
    // The API exists; now its product and gateway links, each reported if it fails.
    created: async (id) => {
      const failed = [];
      for (const p of checked(form, 'api-products')) {
        try {
          await arm.put(ctx.svc.id, `products/${encodeURIComponent(p)}/apis/${encodeURIComponent(id)}`, null);
        } catch (err) {
          failed.push(`adding it to product ${p}: ${err.message}`);
        }
      }
      for (const g of checked(form, 'api-gateways')) {
        try {
          await arm.put(ctx.svc.id, `gateways/${encodeURIComponent(g)}/apis/${encodeURIComponent(id)}`, null);
        } catch (err) {
          failed.push(`adding it to gateway ${g}: ${err.message}`);
        }
      }
      const links = [' ', h('a', { href: ctx.hash('apis', id) }, 'Open it'), ' · ', h('a', { href: ctx.hash('apis', id, 'console') }, 'Test console')];
      return failed.length
        ? notice('error', `API '${id}' was created, but ${failed.join('; ')}.`, ...links)
        : notice('ok', `API '${id}' created.`, ...links);
    },
    after: async () => {
      nameTouched = false;
      drawList(listSlot, ctx, await arm.list(ctx.svc.id, 'apis'));
    },
  });
  return form;
}
