// services.js: the API Management services the signed-in admin or tenant may see.

import { h, table } from '../dom.js';

export function render(page, ctx) {
  const list = ctx.me.services || [];
  const open = (s) => `#/svc/${[s.subscriptionId, s.resourceGroup, s.name].map(encodeURIComponent).join('/')}/apis`;
  page.append(
    h('h1', null, 'Services'),
    h('p', { class: 'muted' }, ctx.me.kind === 'admin'
      ? 'Every API Management service in this Gatehouse.'
      : 'The API Management services of the subscriptions your token names.'),
    table('Services', [
      { label: 'Name', cell: (s) => h('a', { href: open(s) }, s.name) },
      { label: 'Subscription', cell: (s) => s.subscriptionId },
      { label: 'Resource group', cell: (s) => s.resourceGroup },
    ], list, 'No services yet. Create one with the ARM API (PUT …/providers/Microsoft.ApiManagement/service/{name}).'));
}
