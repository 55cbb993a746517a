// console.js: the WebSocket test console. A browser can neither set headers on a WebSocket nor
// read a refused handshake's body, so management relays: the page opens
// /gatehouse/portal/v1/console on this origin (no secret in its URL), sends one frame naming the
// API, the gateway node and the query, and gets the handshake result (status, headers, body),
// then every message, each way.

import { arm, portal, PORTAL, scopeLabel } from '../api.js';
import { h, replace, notice, timeEl, uid } from '../dom.js';
import { session } from '../session.js';

const STATUS_TEXT = {
  101: 'Switching Protocols', 200: 'OK', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
  409: 'Conflict', 410: 'Gone', 429: 'Too Many Requests', 500: 'Internal Server Error', 502: 'Bad Gateway',
  503: 'Service Unavailable', 504: 'Gateway Timeout',
};

// MAX_LOG bounds the messages kept on the page; the oldest go first.
const MAX_LOG = 5000;

export async function render(page, ctx) {
  const consumer = ctx.me.kind === 'consumer';
  const apiId = ctx.params.api;
  let api;
  if (consumer) {
    api = (await portal.apis()).find((a) => a.name === apiId);
    if (!api) {
      page.append(h('h1', null, 'Test console'), notice('error', `The API '${apiId}' is not reachable with your subscriptions.`),
        h('p', null, h('a', { href: '#/dev' }, 'Back to the developer portal')));
      return undefined;
    }
  } else {
    api = await arm.get(ctx.svc.id, `apis/${encodeURIComponent(apiId)}`);
  }
  const p = api.properties || {};
  page.append(
    consumer
      ? h('p', { class: 'crumbs' }, h('a', { href: '#/dev' }, 'Developer portal'), ' / ', apiId, ' / test console')
      : h('p', { class: 'crumbs' }, h('a', { href: ctx.hash('apis') }, 'APIs'), ' / ', h('a', { href: ctx.hash('apis', apiId) }, apiId), ' / test console'),
    h('h1', null, `Test console: ${p.displayName || apiId}`));
  if (p.type && p.type !== 'websocket') {
    page.append(notice('info', 'The test console is for WebSocket APIs.'));
    return undefined;
  }
  const keySource = consumer
    ? { list: async () => (await portal.subscriptions()).filter((s) => s.properties.state === 'active'), secrets: (s) => portal.listSecrets(s.name) }
    : ctx.canWrite
      ? { list: async () => (await arm.list(ctx.svc.id, 'subscriptions')).filter((s) => s.properties.state === 'active'), secrets: (s) => arm.post(ctx.svc.id, `subscriptions/${encodeURIComponent(s.name)}/listSecrets`) }
      : null;
  const c = new Console(ctx.svc, apiId, p, keySource);
  page.append(c.el);
  await c.start();
  return () => c.dispose();
}

class Console {
  constructor(svc, apiId, props, keySource) {
    this.svc = svc;
    this.apiId = apiId;
    this.keyName = (props.subscriptionKeyParameterNames && props.subscriptionKeyParameterNames.query) || 'subscription-key';
    this.path = props.path || '';
    this.keySource = keySource;
    this.ws = null;
    this.state = 'idle'; // idle, connecting, open, closing
    this.rows = 0;
    this.build();
  }

  build() {
    this.nodeSelect = h('select', { id: 'console-node', required: true });
    this.nodeHint = h('p', { class: 'hint', id: 'console-node-hint' });
    this.nodeSelect.setAttribute('aria-describedby', 'console-node-hint');
    this.extraPath = h('input', { id: 'console-path', autocomplete: 'off', spellcheck: 'false', placeholder: 'optional' });
    this.paramRows = h('div', { class: 'params', id: 'console-params' });
    this.preview = h('p', { class: 'mono preview', id: 'console-preview' });
    this.connectBtn = h('button', { type: 'submit', id: 'console-connect' }, 'Connect');
    this.disconnectBtn = h('button', { type: 'button', id: 'console-disconnect', class: 'secondary', disabled: true, onclick: () => this.disconnect() }, 'Disconnect');
    this.stateEl = h('span', { class: 'conn-state', id: 'console-state', role: 'status' }, 'Not connected');
    const datalist = h('datalist', { id: 'console-param-names' },
      [this.keyName, 'access_token', 'token', 'hub', 'id'].map((v) => h('option', { value: v })));
    this.keysArea = h('div', { class: 'key-fill' });
    this.connectForm = h('form', {
      id: 'console-connect-form', class: 'card', 'aria-labelledby': 'console-request-h',
      onsubmit: (e) => { e.preventDefault(); this.connect(); },
    },
    h('h2', { id: 'console-request-h' }, 'Request'),
    h('div', { class: 'grid' },
      h('div', { class: 'field' },
        h('label', { for: 'console-node' }, 'Gateway node'),
        h('div', { class: 'inline' }, this.nodeSelect, h('button', { type: 'button', class: 'small secondary', onclick: () => this.loadNodes() }, 'Refresh nodes')),
        this.nodeHint),
      h('div', { class: 'field' },
        h('label', { for: 'console-path' }, `Path after /${this.path}`),
        this.extraPath)),
    h('fieldset', { class: 'params-set' },
      h('legend', null, 'Query parameters'),
      this.paramRows,
      datalist,
      h('div', { class: 'row-actions' },
        h('button', { type: 'button', class: 'small secondary', id: 'console-add-param', onclick: () => this.addRow('', '', true) }, 'Add parameter')),
      this.keysArea),
    h('p', { class: 'hint' }, 'The request goes through management to the node you pick. Keys and tokens stay out of the address bar and of logs; the URL below shows them as ***.'),
    this.preview,
    h('div', { class: 'actions' }, this.connectBtn, this.disconnectBtn, this.stateEl));

    this.handshake = h('div', { id: 'console-handshake' }, h('p', { class: 'muted' }, 'Not connected yet.'));
    this.message = h('input', { id: 'console-message', autocomplete: 'off', spellcheck: 'false', disabled: true });
    this.sendBtn = h('button', { type: 'submit', id: 'console-send', disabled: true }, 'Send');
    this.sendForm = h('form', {
      id: 'console-send-form', class: 'send', 'aria-label': 'Send a message',
      onsubmit: (e) => { e.preventDefault(); this.send(); },
    },
    h('label', { for: 'console-message' }, 'Message (text)'),
    h('div', { class: 'inline' }, this.message, this.sendBtn));
    this.log = h('ol', { id: 'console-log', class: 'log', role: 'log', 'aria-live': 'polite', 'aria-label': 'Messages', tabindex: '0' });
    this.el = h('div', { class: 'console' },
      this.connectForm,
      h('section', { class: 'card', 'aria-labelledby': 'console-handshake-h' }, h('h2', { id: 'console-handshake-h' }, 'Handshake'), this.handshake),
      h('section', { class: 'card', 'aria-labelledby': 'console-messages-h' },
        h('div', { class: 'section-head' }, h('h2', { id: 'console-messages-h' }, 'Messages'),
          h('button', { type: 'button', class: 'small secondary', onclick: () => replace(this.log) }, 'Clear')),
        this.sendForm,
        this.log));
    this.addRow(this.keyName, '', false);
    this.connectForm.addEventListener('input', () => this.updatePreview());
  }

  async start() {
    await Promise.all([this.loadNodes(), this.loadKeys()]);
    this.updatePreview();
  }

  async loadNodes() {
    const previous = this.nodeSelect.value;
    let nodes = [];
    try {
      nodes = await portal.consoleNodes(this.svc);
    } catch (err) {
      replace(this.nodeSelect);
      this.nodeHint.textContent = `Could not list the gateway nodes: ${err.message}`;
      return;
    }
    replace(this.nodeSelect, nodes.map((n) => h('option', { value: n.nodeId, selected: n.nodeId === previous, dataset: { url: n.url } },
      `${n.gateway} · ${n.url} · revision ${n.revision}${n.healthy ? '' : ' · unhealthy'}`)));
    this.nodeHint.textContent = nodes.length
      ? `${nodes.length} live node${nodes.length === 1 ? '' : 's'} of this service's gateways.`
      : 'No live gateway node of this service advertises a URL. Start a node of a gateway this API is on, then refresh.';
    this.updatePreview();
  }

  // loadKeys offers the keys of the caller's active subscriptions for the key parameter.
  async loadKeys() {
    if (!this.keySource) return;
    let subs = [];
    try {
      subs = await this.keySource.list();
    } catch {
      return;
    }
    if (!subs.length) {
      replace(this.keysArea, h('p', { class: 'hint' }, 'No active subscription to take a key from.'));
      return;
    }
    const select = h('select', { id: 'console-key-sub' }, subs.map((s) => h('option', { value: s.name }, `${s.properties.displayName || s.name} (${scopeLabel(s.properties.scope)})`)));
    const which = h('select', { id: 'console-key-which', 'aria-label': 'Which key' }, h('option', { value: 'primaryKey' }, 'Primary key'), h('option', { value: 'secondaryKey' }, 'Secondary key'));
    const status = h('span', { class: 'hint', role: 'status' });
    const use = h('button', {
      type: 'button', class: 'small secondary', id: 'console-use-key',
      onclick: async () => {
        status.textContent = '';
        const sub = subs.find((s) => s.name === select.value);
        try {
          const keys = await this.keySource.secrets(sub);
          this.setParam(this.keyName, keys[which.value]);
          status.textContent = `${this.keyName} set to the ${which.value === 'primaryKey' ? 'primary' : 'secondary'} key of ${sub.name}.`;
        } catch (err) {
          status.textContent = `Could not read the key: ${err.message}`;
        }
      },
    }, `Use as ${this.keyName}`);
    replace(this.keysArea, h('div', { class: 'field' }, h('label', { for: 'console-key-sub' }, 'Key from subscription'),
      h('div', { class: 'inline wrap' }, select, which, use), status));
  }

  addRow(name, value, focus) {
    this.rows += 1;
    const n = this.rows;
    const nameIn = h('input', { class: 'param-name', id: uid('param-name'), 'aria-label': `Parameter ${n} name`, list: 'console-param-names', autocomplete: 'off', spellcheck: 'false', value: name });
    const valueIn = h('input', { class: 'param-value', id: uid('param-value'), 'aria-label': `Parameter ${n} value`, autocomplete: 'off', spellcheck: 'false', value });
    const row = h('div', { class: 'param-row' }, nameIn, h('span', { 'aria-hidden': 'true' }, '='), valueIn,
      h('button', {
        type: 'button', class: 'small secondary', 'aria-label': `Remove parameter ${n}`,
        onclick: () => { row.remove(); this.updatePreview(); },
      }, 'Remove'));
    this.paramRows.append(row);
    if (focus) nameIn.focus();
    this.updatePreview();
    return row;
  }

  setParam(name, value) {
    let row = [...this.paramRows.querySelectorAll('.param-row')].find((r) => r.querySelector('.param-name').value === name);
    if (!row) row = this.addRow(name, '', false);
    row.querySelector('.param-value').value = value;
    this.updatePreview();
  }

  query() {
    const q = {};
    for (const r of this.paramRows.querySelectorAll('.param-row')) {
      const name = r.querySelector('.param-name').value.trim();
      if (name) q[name] = r.querySelector('.param-value').value;
    }
    return q;
  }

  // updatePreview shows the URL the relay will dial, with secret values as ***.
  updatePreview() {
    const opt = this.nodeSelect.selectedOptions[0];
    const base = opt ? opt.dataset.url : '{node}';
    const extra = this.extraPath.value.trim().replace(/^\/+/, '');
    const secret = new Set([this.keyName.toLowerCase(), 'subscription-key', 'access_token', 'sig', 'token', 'key', 'code']);
    const qs = Object.entries(this.query())
      .map(([k, v]) => `${encodeURIComponent(k)}=${secret.has(k.toLowerCase()) && v ? '***' : encodeURIComponent(v)}`).join('&');
    this.preview.textContent = `${base.replace(/\/+$/, '')}/${this.path}${extra ? `/${extra}` : ''}${qs ? `?${qs}` : ''}`;
  }

  setState(state) {
    this.state = state;
    const open = state === 'open';
    this.connectBtn.disabled = state !== 'idle';
    this.disconnectBtn.disabled = state === 'idle';
    this.message.disabled = !open;
    this.sendBtn.disabled = !open;
    this.stateEl.textContent = { idle: 'Not connected', connecting: 'Connecting…', open: 'Connected', closing: 'Disconnecting…' }[state];
    this.stateEl.className = `conn-state conn-${state}`;
  }

  connect() {
    if (this.state !== 'idle') return;
    const node = this.nodeSelect.value;
    if (!node) {
      this.nodeHint.textContent = 'Pick a gateway node first (refresh the list if it is empty).';
      this.nodeSelect.focus();
      return;
    }
    replace(this.handshake, h('p', { class: 'muted' }, 'Connecting…'));
    this.setState('connecting');
    this.closedLogged = false;
    this.answered = false; // a handshake result or an error came
    const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${window.location.host}${PORTAL}/console`);
    this.ws = ws;
    const first = {
      authorization: `Bearer ${session.token()}`, service: this.svc.id, api: this.apiId, node,
      query: this.query(), path: this.extraPath.value.trim().replace(/^\/+/, ''),
    };
    ws.addEventListener('open', () => ws.send(JSON.stringify(first)));
    ws.addEventListener('message', (e) => {
      if (ws !== this.ws) return;
      let m;
      try {
        m = JSON.parse(e.data);
      } catch {
        return;
      }
      this.onRelay(m);
    });
    ws.addEventListener('close', (e) => {
      if (ws !== this.ws) return;
      if (!this.closedLogged) {
        this.entry('info', new Date(), `Connection closed${e.code ? ` (${e.code}${e.reason ? ` ${e.reason}` : ''})` : ''}.`);
      }
      if (!this.answered) replace(this.handshake, notice('error', 'The console relay closed before the handshake finished.'));
      this.ws = null;
      clearTimeout(this.closeTimer);
      this.setState('idle');
    });
  }

  onRelay(m) {
    switch (m.type) {
      case 'handshake': {
        this.answered = true;
        this.showHandshake(m);
        if (m.status === 101) {
          this.setState('open');
          this.entry('info', new Date(), `Connected to ${m.url || 'the gateway'} in ${m.ms} ms.`);
          this.message.focus();
        } else {
          this.entry('error', new Date(), `Handshake refused: ${m.status} ${STATUS_TEXT[m.status] || ''}`.trim());
        }
        break;
      }
      case 'message':
        this.entry('in', m.time || new Date(), m.binary ? `[binary] ${m.data}` : m.data);
        break;
      case 'close':
        this.closedLogged = true;
        this.entry('info', new Date(), `Closed by ${this.state === 'closing' ? 'you' : 'the gateway'}: code ${m.code}${m.reason ? `, reason "${m.reason}"` : ''}.`);
        break;
      case 'error':
        // Before the handshake an error ends the session; after it, the relay refused one frame.
        if (this.state !== 'open') this.closedLogged = true;
        if (!this.answered) replace(this.handshake, notice('error', `${m.message}${m.code ? ` (${m.code})` : ''}`));
        this.answered = true;
        this.entry('error', new Date(), `${m.message}${m.code ? ` (${m.code})` : ''}`);
        break;
      default:
    }
  }

  showHandshake(m) {
    const ok = m.status === 101;
    const headers = Object.entries(m.headers || {}).sort(([a], [b]) => a.localeCompare(b));
    let body = m.body || '';
    try {
      if (body) body = JSON.stringify(JSON.parse(body), null, 2);
    } catch { /* not JSON: shown as sent */ }
    replace(this.handshake,
      h('p', { class: `hs-status ${ok ? 'hs-ok' : 'hs-fail'}`, id: 'console-hs-status' },
        h('strong', null, `${m.status} ${STATUS_TEXT[m.status] || ''}`.trim()), ` in ${m.ms} ms`),
      m.url ? h('p', { class: 'mono preview' }, m.url) : null,
      headers.length ? h('details', { open: true },
        h('summary', null, `Response headers (${headers.length})`),
        h('dl', { class: 'headers' }, headers.map(([k, v]) => [h('dt', null, k), h('dd', { class: 'mono' }, String(v))]))) : null,
      body ? [h('h3', null, 'Response body'), h('pre', { class: 'body', id: 'console-hs-body', tabindex: '0' }, body)] : null);
  }

  send() {
    if (this.state !== 'open' || !this.ws) return;
    const data = this.message.value;
    this.ws.send(JSON.stringify({ type: 'send', data }));
    this.entry('out', new Date(), data);
    this.message.value = '';
    this.message.focus();
  }

  disconnect() {
    if (!this.ws) return;
    if (this.state === 'open') {
      this.setState('closing');
      this.ws.send(JSON.stringify({ type: 'close' }));
      this.closeTimer = setTimeout(() => { if (this.ws) this.ws.close(1000); }, 5000);
    } else {
      this.ws.close(1000);
    }
  }

  entry(kind, time, text) {
    const label = { in: 'Received', out: 'Sent', info: 'Info', error: 'Error' }[kind];
    this.log.append(h('li', { class: `entry entry-${kind}` },
      timeEl(time), h('span', { class: 'dir' }, label), h('pre', { class: 'data' }, text)));
    while (this.log.childElementCount > MAX_LOG) this.log.firstElementChild.remove();
    this.log.scrollTop = this.log.scrollHeight;
  }

  dispose() {
    clearTimeout(this.closeTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000);
    }
  }
}
