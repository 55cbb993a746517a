// api.js: the portal's calls to management: the ARM API for admins and tenants, the portal API
// (/gatehouse/portal/v1) for identity, consumers and the console. Every call carries the
// session's bearer token in the Authorization header, never in a URL.

import { session } from './session.js';

// API_VERSION is the api-version sent on every ARM call.
export const API_VERSION = '2024-05-01';

// PORTAL is the root of the portal API.
export const PORTAL = '/gatehouse/portal/v1';

// ApiError is a failed call: the HTTP status and the ARM envelope's code, message, target and
// details ({code, message, target}).
export class ApiError extends Error {
  constructor(status, code, message, target, details) {
    super(message);
    this.status = status;
    this.code = code || '';
    this.target = target || '';
    this.details = details || [];
  }
}

// request sends method to path (below this origin) and returns {data, headers}; it throws an
// ApiError for any status >= 400 and for network failures. A 401 also signs the session out.
// token, when given, is sent instead of the session's (to try a token before keeping it).
export async function request(method, path, { body, headers, query, token } = {}) {
  const url = new URL(path, window.location.origin);
  if (url.pathname.startsWith('/subscriptions/') && !url.searchParams.has('api-version')) {
    url.searchParams.set('api-version', API_VERSION);
  }
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  }
  const h = { Accept: 'application/json', ...(headers || {}) };
  const bearer = token || session.token();
  if (bearer) h.Authorization = `Bearer ${bearer}`;
  let payload;
  if (body !== undefined) {
    h['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(url, { method, headers: h, body: payload, credentials: 'omit', cache: 'no-store' });
  } catch (err) {
    throw new ApiError(0, 'NetworkError', `Management did not answer: ${err.message}`);
  }
  const text = await resp.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!resp.ok) {
    const e = data && data.error ? data.error : {};
    const msg = e.message || (typeof data === 'string' && data) || `${resp.status} ${resp.statusText}`;
    const err = new ApiError(resp.status, e.code, msg, e.target, e.details);
    if (resp.status === 401) session.expired(err);
    throw err;
  }
  return { data, headers: resp.headers };
}

async function call(method, path, opts) {
  return (await request(method, path, opts)).data;
}

// listAll follows an ARM list's nextLink (same origin only) and returns every item.
async function listAll(path, query) {
  const out = [];
  let next = path;
  let q = { $top: 100, ...(query || {}) };
  for (let i = 0; next && i < 100; i++) {
    const page = await call('GET', next, { query: q });
    out.push(...(page.value || []));
    next = null;
    q = undefined;
    if (page.nextLink) {
      const u = new URL(page.nextLink, window.location.origin);
      if (u.origin === window.location.origin) next = u.pathname + u.search;
    }
  }
  return out;
}

// arm addresses the children of one service by its ARM id.
export const arm = {
  list: (svc, rel, query) => listAll(`${svc}/${rel}`, query),
  get: (svc, rel, query) => call('GET', `${svc}/${rel}`, { query }),
  raw: (svc, rel, query) => request('GET', `${svc}/${rel}`, { query }),
  exists: async (svc, rel) => {
    try {
      await request('HEAD', `${svc}/${rel}`);
      return true;
    } catch (err) {
      if (err.status === 404) return false;
      throw err;
    }
  },
  put: (svc, rel, properties, query) => call('PUT', `${svc}/${rel}`, { body: properties === null ? undefined : { properties }, query }),
  patch: (svc, rel, properties) => call('PATCH', `${svc}/${rel}`, { body: { properties }, headers: { 'If-Match': '*' } }),
  post: (svc, rel, body) => call('POST', `${svc}/${rel}`, { body: body === undefined ? {} : body }),
};

// portal is the /gatehouse/portal/v1 API.
export const portal = {
  me: (token) => call('GET', `${PORTAL}/me`, { token }),
  subscriptions: async () => (await call('GET', `${PORTAL}/subscriptions`)).value || [],
  listSecrets: (sid) => call('POST', `${PORTAL}/subscriptions/${encodeURIComponent(sid)}/listSecrets`),
  regenerate: (sid, which) => call('POST', `${PORTAL}/subscriptions/${encodeURIComponent(sid)}/regenerate${which === 'secondary' ? 'Secondary' : 'Primary'}Key`),
  apis: async () => (await call('GET', `${PORTAL}/apis`)).value || [],
  consoleNodes: async (svc) => (await call('GET', `${PORTAL}/services/${encodeURIComponent(svc.name)}/consolenodes`,
    { query: { subscriptionId: svc.subscriptionId, resourceGroup: svc.resourceGroup } })).value || [],
};

// serviceId is the ARM id of a service.
export function serviceId(sub, rg, name) {
  return `/subscriptions/${encodeURIComponent(sub)}/resourceGroups/${encodeURIComponent(rg)}/providers/Microsoft.ApiManagement/service/${encodeURIComponent(name)}`;
}

// lastSegment is the name at the end of an ARM id ("/.../apis/echo" -> "echo").
export function lastSegment(id) {
  const parts = String(id || '').split('/');
  return parts[parts.length - 1] || '';
}

// scopeLabel describes a subscription scope for people: "All APIs", "API echo", "Product starter".
export function scopeLabel(scope) {
  const m = /\/(apis|products)(?:\/([^/]+))?$/i.exec(scope || '');
  if (!m) return scope || '';
  if (!m[2]) return 'All APIs';
  return `${m[1].toLowerCase() === 'apis' ? 'API' : 'Product'} ${decodeURIComponent(m[2])}`;
}

// usage reads usage reports and the connection log: a service's through the ARM API for
// admins and tenants, a consumer's own (of its subscriptions only) through the portal API.
export function usage(ctx) {
  if (ctx.me.kind === 'consumer') {
    return {
      report: (by, query) => call('GET', `${PORTAL}/reports/${by}`, { query }),
      log: (query, headers) => request('GET', `${PORTAL}/connectionLogs`, { query, headers }),
    };
  }
  return {
    report: (by, query) => call('GET', `${ctx.svc.id}/reports/${by}`, { query }),
    log: (query, headers) => request('GET', `${ctx.svc.id}/connectionLogs`, { query, headers }),
  };
}
