// subscriptions.js: a service's subscriptions: create, suspend and activate, show and
// regenerate keys.

import { arm, lastSegment, scopeLabel } from '../api.js';
import { h, replace, field, table, notice, shortDate } from '../dom.js';
import { summary, slug, onCreate } from '../forms.js';
import { keysControl } from './keys.js';

const TARGETS = {
  sid: 'sub-name', name: 'sub-name', 'properties.displayName': 'sub-displayName', displayName: 'sub-displayName',
  'properties.scope': 'sub-scope', scope: 'sub-scope', 'properties.ownerId': 'sub-owner', 'properties.state': 'sub-state',
};

export async function render(page, ctx) {
  const slot = h('div', null, h('p', { class: 'muted' }, 'Loading subscriptions…'));
  const status = h('div', { id: 'subs-status' });
  page.append(h('h1', null, 'Subscriptions'), status, slot);
  await draw(slot, status, ctx);
  if (ctx.canWrite) {
    const [apis, products, users] = await Promise.all([
      arm.list(ctx.svc.id, 'apis'), arm.list(ctx.svc.id, 'products'), arm.list(ctx.svc.id, 'users')]);
    page.append(createForm(ctx, slot, status, apis, products, users));
  }
}

async function draw(slot, status, ctx) {
  const subs = await arm.list(ctx.svc.id, 'subscriptions');
  const rel = (s) => `subscriptions/${encodeURIComponent(s.name)}`;
  const setState = async (s, state) => {
    replace(status);
    try {
      await arm.patch(ctx.svc.id, rel(s), { state });
      replace(status, notice('ok', `Subscription '${s.name}' is ${state}.`));
    } catch (err) {
      replace(status, notice('error', `Could not change '${s.name}': ${err.message}`));
    }
    await draw(slot, status, ctx);
  };
  replace(slot, table('Subscriptions', [
    { label: 'Display name', cell: (s) => s.properties.displayName || s.name },
    { label: 'Name', cell: (s) => s.name },
    { label: 'Scope', cell: (s) => scopeLabel(s.properties.scope) },
    { label: 'Owner', cell: (s) => (s.properties.ownerId ? lastSegment(s.properties.ownerId) : '—') },
    { label: 'State', cell: (s) => h('span', { class: `state state-${s.properties.state}` }, s.properties.state) },
    { label: 'Created', cell: (s) => shortDate(s.properties.createdDate) },
    {
      label: 'Keys',
      cell: (s) => (ctx.canWrite ? keysControl(s.name, {
        fetchKeys: () => arm.post(ctx.svc.id, `${rel(s)}/listSecrets`),
        regenerate: (which) => arm.post(ctx.svc.id, `${rel(s)}/regenerate${which === 'primary' ? 'Primary' : 'Secondary'}Key`),
        canRegenerate: true,
      }) : h('span', { class: 'muted' }, 'Contributors only')),
    },
    {
      label: 'Actions',
      cell: (s) => {
        if (!ctx.canWrite) return '';
        return s.properties.state === 'active'
          ? h('button', { type: 'button', class: 'small secondary', 'aria-label': `Suspend ${s.name}`, onclick: () => setState(s, 'suspended') }, 'Suspend')
          : h('button', { type: 'button', class: 'small', 'aria-label': `Activate ${s.name}`, onclick: () => setState(s, 'active') }, 'Activate');
      },
    },
  ], subs, 'No subscriptions yet.'));
}

function createForm(ctx, slot, status, apis, products, users) {
  let touched = false;
  const displayName = h('input', { id: 'sub-displayName', required: true, autocomplete: 'off' });
  const name = h('input', { id: 'sub-name', required: true, autocomplete: 'off', spellcheck: 'false' });
  const scope = h('select', { id: 'sub-scope' },
    h('option', { value: '/apis' }, 'All APIs'),
    apis.length ? h('optgroup', { label: 'API' }, apis.map((a) => h('option', { value: `/apis/${a.name}` }, a.properties.displayName || a.name))) : null,
    products.length ? h('optgroup', { label: 'Product' }, products.map((p) => h('option', { value: `/products/${p.name}` }, p.properties.displayName || p.name))) : null);
  const owner = h('select', { id: 'sub-owner' }, h('option', { value: '' }, 'No owner'),
    users.map((u) => h('option', { value: `/users/${u.name}` }, `${u.name}${u.properties.email ? ` (${u.properties.email})` : ''}`)));
  const state = h('select', { id: 'sub-state' }, h('option', { value: 'active' }, 'Active'), h('option', { value: 'submitted' }, 'Submitted'),
    h('option', { value: 'suspended' }, 'Suspended'));
  displayName.addEventListener('input', () => { if (!touched) name.value = slug(displayName.value); });
  name.addEventListener('input', () => { touched = name.value !== ''; });
  const result = h('div');
  const form = h('form', { id: 'create-subscription', class: 'card', novalidate: true, 'aria-labelledby': 'create-sub-h' },
    h('h2', { id: 'create-sub-h' }, 'Create subscription'),
    summary(),
    h('div', { class: 'grid' },
      field('Display name', displayName), field('Name', name), field('Scope', scope), field('Owner', owner, 'The user whose developer portal shows it.'),
      field('State', state)),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create')),
    result);
  onCreate(form, result, {
    what: 'A subscription',
    targets: TARGETS,
    required: [[displayName, 'Display name'], [name, 'Name']],
    name: () => name.value.trim(),
    exists: (id) => arm.exists(ctx.svc.id, `subscriptions/${encodeURIComponent(id)}`),
    create: (id) => arm.put(ctx.svc.id, `subscriptions/${encodeURIComponent(id)}`, {
      displayName: displayName.value.trim(), scope: scope.value, ownerId: owner.value || undefined, state: state.value,
    }),
    created: (id) => notice('ok', `Subscription '${id}' created. Show its keys in the list above.`),
    after: () => {
      touched = false;
      return draw(slot, status, ctx);
    },
  });
  return form;
}
