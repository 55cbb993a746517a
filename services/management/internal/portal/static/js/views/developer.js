// developer.js: the developer portal of an API consumer: their own subscriptions and keys
// (shown on demand, regenerated on demand) and the APIs those subscriptions reach.

import { portal, scopeLabel } from '../api.js';
import { h, replace, table, shortDate } from '../dom.js';
import { keysControl } from './keys.js';

export async function render(page, ctx) {
  const u = ctx.me.user || {};
  const name = `${u.firstName || ''} ${u.lastName || ''}`.trim() || u.name || ctx.me.subject;
  const subsSlot = h('div', null, h('p', { class: 'muted' }, 'Loading your subscriptions…'));
  const apisSlot = h('div', null, h('p', { class: 'muted' }, 'Loading APIs…'));
  page.append(
    h('h1', null, 'Developer portal'),
    h('p', null, `Welcome, ${name}`, u.email ? ` (${u.email})` : '', ctx.svc ? ` — service ${ctx.svc.name}.` : '.'),
    h('p', null, 'See ', h('a', { href: '#/dev/usage' }, 'your usage'), ' and ', h('a', { href: '#/dev/log' }, 'your connection log'),
      ' (why a session of yours ended).'),
    h('section', { 'aria-labelledby': 'dev-subs-h' }, h('h2', { id: 'dev-subs-h' }, 'Your subscriptions'), subsSlot),
    h('section', { 'aria-labelledby': 'dev-apis-h' }, h('h2', { id: 'dev-apis-h' }, 'APIs'), apisSlot));
  const [subs, apis] = await Promise.all([portal.subscriptions(), portal.apis()]);
  replace(subsSlot, table('Your subscriptions', [
    { label: 'Subscription', cell: (s) => s.properties.displayName || s.name },
    { label: 'Name', cell: (s) => s.name },
    { label: 'Scope', cell: (s) => scopeLabel(s.properties.scope) },
    { label: 'State', cell: (s) => h('span', { class: `state state-${s.properties.state}` }, s.properties.state) },
    { label: 'Created', cell: (s) => shortDate(s.properties.createdDate) },
    {
      label: 'Keys',
      cell: (s) => keysControl(s.name, {
        fetchKeys: () => portal.listSecrets(s.name),
        regenerate: (which) => portal.regenerate(s.name, which),
        canRegenerate: true,
      }),
    },
  ], subs, 'You have no subscriptions yet. Ask your API provider for one.'));
  replace(apisSlot, table('APIs', [
    { label: 'API', cell: (a) => a.properties.displayName || a.name },
    { label: 'Type', cell: (a) => (a.properties.type === 'websocket' ? 'WebSocket' : 'HTTP') },
    { label: 'URL suffix', cell: (a) => h('span', { class: 'mono' }, `/${a.properties.path || ''}`) },
    {
      label: 'Try it',
      cell: (a) => (a.properties.type === 'websocket' ? h('a', { href: `#/dev/console/${encodeURIComponent(a.name)}` }, 'Test console') : ''),
    },
  ], apis, 'No API is reachable with your subscriptions.'));
}
