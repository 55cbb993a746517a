// policy.js: an API's policy in an XML editor with line numbers. For a WebSocket API it is the
// onHandshake operation's policy; management validates the document on save, and its error
// is shown with the line it names, marked in the editor.

import { arm } from '../api.js';
import { h, replace, notice } from '../dom.js';

const TEMPLATE = `<policies>
    <inbound>
        <base />
    </inbound>
    <backend>
        <base />
    </backend>
    <outbound>
        <base />
    </outbound>
    <on-error>
        <base />
    </on-error>
</policies>
`;

// errorPosition finds the line (and column) a policy validation message names: APIM words it
// "... Line 12, position 5."; Gatehouse's own checks say "(line 3)" or "on line 3, column 7".
export function errorPosition(message) {
  let m = /Line (\d+), position (\d+)\.?\s*$/.exec(message);
  if (!m) m = /\bline (\d+)(?:,? (?:column|position) (\d+))?/i.exec(message);
  return m ? { line: Number(m[1]), column: m[2] ? Number(m[2]) : 0 } : null;
}

export async function render(page, ctx) {
  const id = ctx.params.api;
  const api = await arm.get(ctx.svc.id, `apis/${encodeURIComponent(id)}`);
  const ws = api.properties.type === 'websocket';
  const rel = ws ? `apis/${encodeURIComponent(id)}/operations/onHandshake/policies/policy` : `apis/${encodeURIComponent(id)}/policies/policy`;
  let value = TEMPLATE;
  let exists = true;
  try {
    value = (await arm.get(ctx.svc.id, rel, { format: 'rawxml' })).properties.value;
  } catch (err) {
    if (err.status !== 404) throw err;
    exists = false;
  }
  const ed = editor(value, !ctx.canWrite);
  const status = h('div', { id: 'policy-status' });
  const form = h('form', {
    id: 'policy-form', class: 'card',
    onsubmit: async (e) => {
      e.preventDefault();
      if (!ctx.canWrite) return;
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      ed.mark(null);
      replace(status, notice('info', 'Saving…'));
      try {
        await arm.put(ctx.svc.id, rel, { format: 'rawxml', value: ed.textarea.value });
        value = ed.textarea.value;
        replace(status, notice('ok', 'Policy saved. Gateways apply it on their next handshake.'));
      } catch (err) {
        const detail = err.details && err.details.length ? err.details[0] : err;
        const pos = errorPosition(detail.message || '');
        ed.mark(pos && pos.line);
        replace(status, notice('error',
          h('p', null, h('strong', null, pos ? `Line ${pos.line}${pos.column ? `, column ${pos.column}` : ''}: ` : 'Not saved: '), detail.message),
          pos ? h('button', { type: 'button', class: 'small secondary', onclick: () => ed.goTo(pos.line) }, `Go to line ${pos.line}`) : null));
      } finally {
        button.disabled = false;
      }
    },
  },
  h('label', { for: 'policy-xml', class: 'editor-label' }, ws ? 'onHandshake policy (XML)' : 'API policy (XML)'),
  ed.el,
  h('p', { class: 'hint', id: 'policy-xml-hint' }, exists ? '' : 'This API has no policy yet: the template below inherits the product and global policies (<base />). ',
    'Ctrl+Enter saves. Tab moves focus out of the editor.'),
  ctx.canWrite ? h('div', { class: 'actions' },
    h('button', { type: 'submit' }, 'Save'),
    h('button', { type: 'button', class: 'secondary', onclick: () => { ed.set(value); ed.mark(null); replace(status); } }, 'Revert')) : null,
  status);
  ed.textarea.setAttribute('aria-describedby', 'policy-xml-hint policy-status');
  ed.textarea.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  page.append(
    h('p', { class: 'crumbs' }, h('a', { href: ctx.hash('apis') }, 'APIs'), ' / ', h('a', { href: ctx.hash('apis', id) }, id), ' / policy'),
    h('h1', null, `Policy of ${api.properties.displayName || id}`),
    form);
  ed.refresh();
}

// editor is a textarea with a line-number gutter that scrolls with it.
function editor(initial, readOnly) {
  const gutter = h('div', { class: 'gutter', 'aria-hidden': 'true' });
  const textarea = h('textarea', { id: 'policy-xml', class: 'code', spellcheck: 'false', wrap: 'off', rows: '22', autocapitalize: 'off', readOnly });
  textarea.value = initial;
  const el = h('div', { class: 'editor' }, gutter, textarea);
  let marked = null;
  const refresh = () => {
    const lines = textarea.value.split('\n').length;
    if (gutter.childElementCount !== lines) {
      replace(gutter, Array.from({ length: lines }, (_, i) => h('div', { class: i + 1 === marked ? 'err' : null }, String(i + 1))));
    }
    gutter.scrollTop = textarea.scrollTop;
  };
  textarea.addEventListener('input', refresh);
  textarea.addEventListener('scroll', () => { gutter.scrollTop = textarea.scrollTop; });
  return {
    el, textarea, refresh,
    set(v) {
      textarea.value = v;
      refresh();
    },
    // mark highlights line (1-based) in the gutter, or nothing.
    mark(line) {
      marked = line || null;
      [...gutter.children].forEach((d, i) => d.classList.toggle('err', i + 1 === marked));
      if (marked) textarea.setAttribute('aria-invalid', 'true');
      else textarea.removeAttribute('aria-invalid');
    },
    // goTo selects line and scrolls it into view.
    goTo(line) {
      const lines = textarea.value.split('\n');
      const n = Math.min(Math.max(line, 1), lines.length);
      let start = 0;
      for (let i = 0; i < n - 1; i++) start += lines[i].length + 1;
      textarea.focus();
      textarea.setSelectionRange(start, start + lines[n - 1].length);
      const lh = parseFloat(getComputedStyle(textarea).lineHeight) || 20;
      textarea.scrollTop = Math.max(0, (n - 3) * lh);
      gutter.scrollTop = textarea.scrollTop;
    },
  };
}
