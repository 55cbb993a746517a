// app.js: sign-in, the header and hash routing. A route's hash names only resources
// (#/svc/{subscription}/{resourceGroup}/{service}/apis/{api}), never a secret.

import { portal, serviceId } from './api.js';
import { h, replace, notice, field } from './dom.js';
import { session } from './session.js';
import * as services from './views/services.js';
import * as apis from './views/apis.js';
import * as apiDetail from './views/api.js';
import * as policy from './views/policy.js';
import * as products from './views/products.js';
import * as users from './views/users.js';
import * as subscriptions from './views/subscriptions.js';
import * as gateways from './views/gateways.js';
import * as consoleView from './views/console.js';
import * as developer from './views/developer.js';
import * as analytics from './views/analytics.js';
import * as live from './views/live.js';
import * as connlog from './views/connlog.js';

const SVC = 'svc/:sub/:rg/:name';

// routes: pattern, view, who may open it ("staff" = admin or tenant, "consumer").
const routes = [
  { pattern: 'services', view: services, who: 'staff' },
  { pattern: `${SVC}`, redirect: (p) => svcHash(p, 'apis'), who: 'staff' },
  { pattern: `${SVC}/apis`, view: apis, who: 'staff', section: 'apis' },
  { pattern: `${SVC}/apis/:api`, view: apiDetail, who: 'staff', section: 'apis' },
  { pattern: `${SVC}/apis/:api/policy`, view: policy, who: 'staff', section: 'apis' },
  { pattern: `${SVC}/apis/:api/console`, view: consoleView, who: 'staff', section: 'apis' },
  { pattern: `${SVC}/products`, view: products, who: 'staff', section: 'products' },
  { pattern: `${SVC}/users`, view: users, who: 'staff', section: 'users' },
  { pattern: `${SVC}/subscriptions`, view: subscriptions, who: 'staff', section: 'subscriptions' },
  { pattern: `${SVC}/gateways`, view: gateways, who: 'staff', section: 'gateways' },
  { pattern: `${SVC}/gateways/:gateway`, view: gateways, who: 'staff', section: 'gateways' },
  { pattern: `${SVC}/analytics`, view: analytics, who: 'staff', section: 'analytics' },
  { pattern: `${SVC}/live`, view: live, who: 'staff', section: 'live' },
  { pattern: `${SVC}/log`, view: connlog, who: 'staff', section: 'log' },
  { pattern: 'dev', view: developer, who: 'consumer', section: 'dev' },
  { pattern: 'dev/usage', view: analytics, who: 'consumer', section: 'dev-usage' },
  { pattern: 'dev/log', view: connlog, who: 'consumer', section: 'dev-log' },
  { pattern: 'dev/console/:api', view: consoleView, who: 'consumer', section: 'dev' },
];

const SECTIONS = [
  ['apis', 'APIs'], ['products', 'Products'], ['users', 'Users'], ['subscriptions', 'Subscriptions'], ['gateways', 'Gateways'],
  ['analytics', 'Analytics'], ['live', 'Live now'], ['log', 'Connection log'],
];

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');

let cleanup = null;
let firstRender = true;
let generation = 0; // bumped by every render, so a slower earlier one does not touch the page

// svcHash is the hash of a section of the service named by params p.
export function svcHash(p, ...rest) {
  return `#/svc/${[p.sub, p.rg, p.name].map(encodeURIComponent).join('/')}${rest.length ? `/${rest.map(encodeURIComponent).join('/')}` : ''}`;
}

function match(pattern, path) {
  const want = pattern.split('/');
  const got = path.split('/');
  if (want.length !== got.length) return null;
  const params = {};
  for (let i = 0; i < want.length; i++) {
    if (want[i].startsWith(':')) {
      try {
        params[want[i].slice(1)] = decodeURIComponent(got[i]);
      } catch {
        return null;
      }
      if (!params[want[i].slice(1)]) return null;
    } else if (want[i] !== got[i]) {
      return null;
    }
  }
  return params;
}

function currentPath() {
  return window.location.hash.replace(/^#\/?/, '').replace(/\/+$/, '');
}

function homeHash(me) {
  return me.kind === 'consumer' ? '#/dev' : '#/services';
}

async function render() {
  generation += 1;
  const gen = generation;
  if (cleanup) {
    try {
      cleanup();
    } catch { /* a view's cleanup must not block navigation */ }
    cleanup = null;
  }
  if (!session.token()) {
    renderSignIn();
    return;
  }
  let me = session.me();
  if (!me) {
    try {
      me = await portal.me();
      session.setMe(me);
    } catch (err) {
      if (session.token() && gen === generation) renderFailure(err);
      return;
    }
    if (gen !== generation) return;
  }
  renderHeader(me);
  const path = currentPath();
  if (path === '') {
    window.location.replace(homeHash(me));
    return;
  }
  for (const r of routes) {
    const params = match(r.pattern, path);
    if (!params) continue;
    const staff = me.kind !== 'consumer';
    if ((r.who === 'staff') !== staff) {
      window.location.replace(homeHash(me));
      return;
    }
    if (r.redirect) {
      window.location.replace(r.redirect(params));
      return;
    }
    const ctx = context(me, params, r);
    renderNav(me, ctx);
    // Each render draws into a page of its own: one that lost the race draws off-screen.
    const page = h('div', { class: 'page' });
    replace(main, page);
    try {
      const done = await r.view.render(page, ctx);
      if (typeof done === 'function') {
        if (gen !== generation) done();
        else cleanup = done;
      }
    } catch (err) {
      if (!session.token() || gen !== generation) return;
      page.append(notice('error', `Could not load this page: ${err.message}`));
    }
    if (gen === generation) afterRender();
    return;
  }
  renderNav(me, { section: null });
  replace(main, h('h1', { tabindex: '-1' }, 'Not found'), h('p', null, 'No page has this address. ', h('a', { href: homeHash(me) }, 'Go to the start page.')));
  afterRender();
}

// context is what a view gets: the route's params, who is signed in, and the service in view.
function context(me, params, route) {
  let svc = null;
  if (params.sub) {
    svc = { id: serviceId(params.sub, params.rg, params.name), name: params.name, subscriptionId: params.sub, resourceGroup: params.rg };
  } else if (me.kind === 'consumer' && me.services && me.services.length) {
    svc = { ...me.services[0] };
  }
  return {
    me, params, svc, section: route.section,
    canWrite: me.kind === 'consumer' || me.role !== 'Reader',
    hash: (...rest) => svcHash(params, ...rest),
  };
}

// afterRender names the page after its heading and, after a navigation, moves focus to the
// heading so keyboard and screen-reader users start at the new content.
function afterRender() {
  const h1 = main.querySelector('h1');
  document.title = h1 ? `${h1.textContent} — Gatehouse portal` : 'Gatehouse portal';
  if (h1 && !firstRender && !main.contains(document.activeElement)) {
    if (!h1.hasAttribute('tabindex')) h1.setAttribute('tabindex', '-1');
    h1.focus();
  }
  firstRender = false;
}

function renderHeader(me) {
  const label = me.kind === 'consumer'
    ? [me.user && (me.user.firstName || me.user.lastName) ? `${me.user.firstName || ''} ${me.user.lastName || ''}`.trim() : me.subject]
    : [me.subject, ` (${me.role})`];
  replace(who,
    h('span', { class: 'who-name' }, h('span', { class: 'sr-only' }, 'Signed in as '), ...label),
    h('button', { type: 'button', class: 'secondary small', id: 'sign-out', onclick: signOut }, 'Sign out'));
}

function renderNav(me, ctx) {
  const links = [];
  const link = (href, text, current) => h('a', { href, 'aria-current': current ? 'page' : null }, text);
  if (me.kind === 'consumer') {
    links.push(link('#/dev', 'Developer portal', ctx.section === 'dev'));
    links.push(link('#/dev/usage', 'Usage', ctx.section === 'dev-usage'));
    links.push(link('#/dev/log', 'Connection log', ctx.section === 'dev-log'));
  } else {
    links.push(link('#/services', 'Services', !ctx.svc));
    if (ctx.svc) {
      links.push(h('span', { class: 'nav-svc', title: ctx.svc.id }, ctx.svc.name));
      for (const [section, text] of SECTIONS) links.push(link(ctx.hash(section), text, ctx.section === section));
    }
  }
  replace(nav, h('ul', null, links.map((l) => h('li', null, l))));
}

function renderSignIn(message) {
  replace(nav);
  replace(who);
  const input = h('input', { id: 'signin-token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true });
  const status = h('div', { id: 'signin-status' });
  if (message) status.append(notice('error', message));
  const form = h('form', {
    class: 'card narrow',
    onsubmit: async (e) => {
      e.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      const button = form.querySelector('button');
      button.disabled = true;
      replace(status, notice('info', 'Signing in…'));
      try {
        const me = await portal.me(token);
        session.signIn(token);
        session.setMe(me);
        firstRender = false;
        if (currentPath() === '') window.location.replace(homeHash(me));
        else render();
      } catch (err) {
        button.disabled = false;
        replace(status, notice('error', err.status === 401 ? `The token was not accepted: ${err.message}` : `Could not sign in: ${err.message}`));
        input.focus();
      }
    },
  },
  field('Bearer token', input, 'The admin token, a tenant token (JWT), or the consumer token your API provider gave you. It is kept in this browser tab only, until you sign out or close the tab.'),
  h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Sign in')),
  status);
  replace(main, h('h1', null, 'Sign in to Gatehouse'), form);
  document.title = 'Sign in — Gatehouse portal';
  input.focus();
}

function renderFailure(err) {
  replace(main, h('h1', null, 'Gatehouse portal'), notice('error', `Management did not answer: ${err.message}`),
    h('button', { type: 'button', onclick: () => render() }, 'Try again'));
}

function signOut() {
  if (cleanup) {
    try {
      cleanup();
    } catch { /* ignore */ }
    cleanup = null;
  }
  session.signOut();
  window.history.replaceState(null, '', `${window.location.pathname}${window.location.search}`);
  renderSignIn();
  replace(main.querySelector('#signin-status'), notice('ok', 'You are signed out.'));
}

session.onExpired((err) => {
  if (cleanup) {
    try {
      cleanup();
    } catch { /* ignore */ }
    cleanup = null;
  }
  renderSignIn(`Your session ended: ${err.message} Sign in again.`);
});

window.addEventListener('hashchange', render);
render();
