// products.js: a service's products, the APIs in each, and a form to create one.

import { arm } from '../api.js';
import { h, replace, field, table, notice } from '../dom.js';
import { summary, slug, onCreate } from '../forms.js';

const TARGETS = {
  'properties.displayName': 'product-displayName', displayName: 'product-displayName',
  productId: 'product-name', name: 'product-name', 'properties.state': 'product-state',
  'properties.description': 'product-description',
};

export async function render(page, ctx) {
  const slot = h('div', null, h('p', { class: 'muted' }, 'Loading products…'));
  page.append(h('h1', null, 'Products'), slot);
  await draw(slot, ctx);
  if (ctx.canWrite) page.append(createForm(ctx, slot));
}

async function draw(slot, ctx) {
  const products = await arm.list(ctx.svc.id, 'products');
  const apis = new Map(await Promise.all(products.map(async (p) =>
    [p.name, await arm.list(ctx.svc.id, `products/${encodeURIComponent(p.name)}/apis`)])));
  replace(slot, table('Products', [
    { label: 'Display name', cell: (p) => p.properties.displayName || p.name },
    { label: 'Name', cell: (p) => p.name },
    { label: 'State', cell: (p) => (p.properties.state === 'published' ? 'Published' : 'Not published') },
    { label: 'Subscription required', cell: (p) => (p.properties.subscriptionRequired === false ? 'No' : 'Yes') },
    { label: 'APIs', cell: (p) => (apis.get(p.name) || []).map((a, i) => [i ? ', ' : '', h('a', { href: ctx.hash('apis', a.name) }, a.name)]) },
  ], products, 'No products yet.'));
}

function createForm(ctx, slot) {
  let touched = false;
  const displayName = h('input', { id: 'product-displayName', required: true, autocomplete: 'off' });
  const name = h('input', { id: 'product-name', required: true, autocomplete: 'off', spellcheck: 'false' });
  const description = h('input', { id: 'product-description', autocomplete: 'off' });
  const state = h('select', { id: 'product-state' }, h('option', { value: 'published' }, 'Published'), h('option', { value: 'notPublished' }, 'Not published'));
  const required = h('input', { id: 'product-subscriptionRequired', type: 'checkbox', checked: true });
  displayName.addEventListener('input', () => { if (!touched) name.value = slug(displayName.value); });
  name.addEventListener('input', () => { touched = name.value !== ''; });
  const result = h('div');
  const form = h('form', { id: 'create-product', class: 'card', novalidate: true, 'aria-labelledby': 'create-product-h' },
    h('h2', { id: 'create-product-h' }, 'Create product'),
    summary(),
    h('div', { class: 'grid' },
      field('Display name', displayName), field('Name', name), field('Description', description), field('State', state)),
    h('div', { class: 'check' }, required, h('label', { for: 'product-subscriptionRequired' }, 'Requires a subscription')),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create')),
    result);
  onCreate(form, result, {
    what: 'A product',
    targets: TARGETS,
    required: [[displayName, 'Display name'], [name, 'Name']],
    name: () => name.value.trim(),
    exists: (id) => arm.exists(ctx.svc.id, `products/${encodeURIComponent(id)}`),
    create: (id) => arm.put(ctx.svc.id, `products/${encodeURIComponent(id)}`, {
      displayName: displayName.value.trim(), description: description.value.trim() || undefined,
      state: state.value, subscriptionRequired: required.checked,
    }),
    created: (id) => notice('ok', `Product '${id}' created. Add APIs to it from the Create WebSocket API form.`),
    after: () => {
      touched = false;
      return draw(slot, ctx);
    },
  });
  return form;
}
