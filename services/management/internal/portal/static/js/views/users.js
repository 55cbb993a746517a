// users.js: a service's users (the API consumers), a form to add one, and consumer tokens: a
// user signs in to the developer portal with the token generated here.

import { arm } from '../api.js';
import { h, replace, field, table, notice, uid, copyButton } from '../dom.js';
import { summary, busy, onCreate } from '../forms.js';

const TARGETS = {
  userId: 'user-name', name: 'user-name', 'properties.email': 'user-email', email: 'user-email',
  'properties.firstName': 'user-firstName', 'properties.lastName': 'user-lastName',
};

export async function render(page, ctx) {
  const slot = h('div', null, h('p', { class: 'muted' }, 'Loading users…'));
  const tokenSlot = h('div', { id: 'user-token-slot' });
  page.append(h('h1', null, 'Users'), slot, tokenSlot);
  await draw(slot, tokenSlot, ctx);
  if (ctx.canWrite) page.append(createForm(ctx, slot, tokenSlot));
}

async function draw(slot, tokenSlot, ctx) {
  const users = await arm.list(ctx.svc.id, 'users');
  replace(slot, table('Users', [
    { label: 'Name', cell: (u) => u.name },
    { label: 'Full name', cell: (u) => `${u.properties.firstName || ''} ${u.properties.lastName || ''}`.trim() },
    { label: 'Email', cell: (u) => u.properties.email || '' },
    { label: 'State', cell: (u) => u.properties.state || '' },
    {
      label: 'Actions',
      cell: (u) => (ctx.canWrite
        ? h('button', { type: 'button', class: 'small', onclick: () => tokenForm(ctx, tokenSlot, u) }, `Generate token for ${u.name}`)
        : ''),
    },
  ], users, 'No users yet.'));
}

// tokenForm asks for a key and an expiry, then shows the consumer token once.
function tokenForm(ctx, slot, user) {
  const keyType = h('select', { id: 'token-keyType' }, h('option', { value: 'primary' }, 'Primary'), h('option', { value: 'secondary' }, 'Secondary'));
  const days = h('input', { id: 'token-days', type: 'number', min: '1', max: '30', value: '7', required: true });
  const out = h('div', { id: 'user-token-result' });
  const form = h('form', { class: 'card', id: 'user-token-form', 'aria-labelledby': 'user-token-h' },
    h('h2', { id: 'user-token-h' }, `Consumer token for ${user.name}`),
    h('p', { class: 'muted' }, 'The user signs in to the developer portal with this token to see their own subscriptions and keys and to use the test console.'),
    h('div', { class: 'grid' }, field('Signing key', keyType), field('Valid for (days, at most 30)', days)),
    h('div', { class: 'actions' },
      h('button', { type: 'submit' }, 'Generate token'),
      h('button', { type: 'button', class: 'secondary', onclick: () => replace(slot) }, 'Close')),
    out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    replace(out);
    await busy(form, async () => {
      const n = Math.min(30, Math.max(1, Number(days.value) || 7));
      const expiry = new Date(Date.now() + n * 24 * 3600 * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
      try {
        const res = await arm.post(ctx.svc.id, `users/${encodeURIComponent(user.name)}/token`, { properties: { keyType: keyType.value, expiry } });
        const id = uid('token');
        const value = h('input', { id, class: 'mono secret', readOnly: true, value: res.value, autocomplete: 'off', spellcheck: 'false' });
        replace(out, notice('ok', h('p', null, `Token for ${user.name}, valid until ${new Date(expiry).toLocaleString()}. Copy it now: it is not shown again.`),
          h('div', { class: 'field' }, h('label', { for: id }, 'Consumer token'), h('div', { class: 'inline' }, value, copyButton(value, 'Copy consumer token')))));
        value.select();
      } catch (err) {
        replace(out, notice('error', `Could not generate a token: ${err.message}`));
      }
    });
  });
  replace(slot, form);
  keyType.focus();
}

function createForm(ctx, slot, tokenSlot) {
  const name = h('input', { id: 'user-name', required: true, autocomplete: 'off', spellcheck: 'false' });
  const email = h('input', { id: 'user-email', type: 'email', required: true, autocomplete: 'off' });
  const first = h('input', { id: 'user-firstName', autocomplete: 'off' });
  const last = h('input', { id: 'user-lastName', autocomplete: 'off' });
  const result = h('div');
  const form = h('form', { id: 'create-user', class: 'card', novalidate: true, 'aria-labelledby': 'create-user-h' },
    h('h2', { id: 'create-user-h' }, 'Add user'),
    summary(),
    h('div', { class: 'grid' }, field('Name', name, 'The user\'s identifier.'), field('Email', email), field('First name', first), field('Last name', last)),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Add user')),
    result);
  onCreate(form, result, {
    what: 'A user',
    targets: TARGETS,
    required: [[name, 'Name'], [email, 'Email']],
    name: () => name.value.trim(),
    exists: (id) => arm.exists(ctx.svc.id, `users/${encodeURIComponent(id)}`),
    create: (id) => arm.put(ctx.svc.id, `users/${encodeURIComponent(id)}`, {
      email: email.value.trim(), firstName: first.value.trim(), lastName: last.value.trim(),
    }),
    created: (id) => notice('ok', `User '${id}' added.`),
    after: () => draw(slot, tokenSlot, ctx),
  });
  return form;
}
