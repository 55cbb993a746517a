// dom.js: building the page from data without ever parsing data as HTML.

// h creates an element. attrs: "class", "for", "on<event>" handlers, boolean properties
// (disabled, checked, required, hidden, selected, readOnly, multiple), "value", "dataset"; any
// other key is set as an attribute (aria-*, role, type, id...). null, undefined and false
// attributes are left out. Children may be nodes, strings, numbers, arrays of them, or null.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'for') el.htmlFor = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (['disabled', 'checked', 'required', 'hidden', 'selected', 'readOnly', 'multiple', 'value'].includes(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// replace empties el and appends children.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let ids = 0;

// uid returns a fresh id for pairing labels, hints and errors with inputs.
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

// field wraps an input (or select/textarea) with its label, an optional hint and an error slot
// the input is described by. The input must carry an id.
export function field(label, input, hint) {
  const errId = `${input.id}-error`;
  const hintId = hint ? `${input.id}-hint` : null;
  input.setAttribute('aria-describedby', [hintId, errId].filter(Boolean).join(' '));
  return h('div', { class: 'field', dataset: { field: input.id } },
    h('label', { for: input.id }, label),
    input,
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null,
    h('p', { class: 'field-error', id: errId, hidden: true }));
}

// setFieldError shows message under the input with id (or clears it when message is empty).
export function setFieldError(form, id, message) {
  const input = form.querySelector(`#${CSS.escape(id)}`);
  const slot = form.querySelector(`#${CSS.escape(id)}-error`);
  if (!input || !slot) return false;
  slot.textContent = message || '';
  slot.hidden = !message;
  if (message) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
  return true;
}

// clearErrors removes every field error and the form's summary.
export function clearErrors(form) {
  for (const slot of form.querySelectorAll('.field-error')) {
    slot.textContent = '';
    slot.hidden = true;
  }
  for (const input of form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
  const summary = form.querySelector('.form-summary');
  if (summary) replace(summary).hidden = true;
}

// notice returns a status or alert paragraph; kind is "ok", "error" or "info".
export function notice(kind, ...children) {
  return h('div', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, ...children);
}

// table renders rows as a table whose cells carry their column's label, so narrow screens can
// show each row as a card. columns: [{label, cell(row) -> node|string}].
export function table(caption, columns, rows, empty) {
  if (!rows.length) return h('p', { class: 'muted empty' }, empty || 'None yet.');
  return h('div', { class: 'table-wrap' },
    h('table', null,
      h('caption', { class: 'sr-only' }, caption),
      h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col' }, c.label)))),
      h('tbody', null, rows.map((r) => h('tr', null,
        columns.map((c) => h('td', { dataset: { label: c.label } }, c.cell(r))))))));
}

// copyButton copies the value of the input it is given.
export function copyButton(input, label) {
  return h('button', {
    type: 'button', class: 'small', 'aria-label': label || 'Copy',
    onclick: async (e) => {
      const b = e.currentTarget;
      try {
        await navigator.clipboard.writeText(input.value);
        b.textContent = 'Copied';
      } catch {
        input.select();
        b.textContent = 'Press Ctrl+C';
      }
      setTimeout(() => { b.textContent = 'Copy'; }, 2000);
    },
  }, 'Copy');
}

// time formats an RFC 3339 timestamp (or Date) as local time with milliseconds, in a <time>.
export function timeEl(value) {
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return h('span', null, String(value || ''));
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  const text = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  return h('time', { datetime: d.toISOString(), title: d.toISOString() }, text);
}

// shortDate formats an RFC 3339 timestamp as a local date and time, or "" for none.
export function shortDate(value) {
  if (!value) return '';
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : d.toLocaleString();
}
