// forms.js: showing management's validation errors next to the fields they name.

import { h, replace, setFieldError, clearErrors } from './dom.js';

// showError puts each of err's details under the input its target names (targets maps ARM
// targets such as "properties.serviceUrl" to input ids) and lists them all in the form's
// summary, which is announced. It focuses the first field in error.
export function showError(form, err, targets, what) {
  clearErrors(form);
  const details = err.details && err.details.length ? err.details : [{ code: err.code, message: err.message, target: err.target }];
  const items = [];
  let first = null;
  for (const d of details) {
    const t = d.target || err.target || '';
    const id = targets[t] || targets[t.replace(/^properties\./, '')];
    const input = id ? form.querySelector(`#${CSS.escape(id)}`) : null;
    if (input && setFieldError(form, id, d.message)) {
      const label = form.querySelector(`label[for="${CSS.escape(id)}"]`);
      first = first || input;
      items.push(h('li', null, h('button', { type: 'button', class: 'link', onclick: () => input.focus() }, label ? label.textContent : t), `: ${d.message}`));
    } else {
      items.push(h('li', null, t ? `${t}: ${d.message}` : d.message));
    }
  }
  const summary = form.querySelector('.form-summary');
  if (summary) {
    const lead = err.details && err.details.length ? err.message : `${what || 'The request'} failed (${err.status || 'no answer'} ${err.code}).`;
    replace(summary, h('p', null, h('strong', null, lead)), h('ul', null, items));
    summary.hidden = false;
  }
  (first || summary)?.focus();
}

// summary is the error summary slot of a form: an alert that can take focus.
export function summary() {
  return h('div', { class: 'form-summary notice notice-error', role: 'alert', tabindex: '-1', hidden: true });
}

// busy disables the form's buttons while fn runs and returns fn's result.
export async function busy(form, fn) {
  const buttons = [...form.querySelectorAll('button')];
  for (const b of buttons) b.disabled = true;
  form.setAttribute('aria-busy', 'true');
  try {
    return await fn();
  } finally {
    for (const b of buttons) b.disabled = false;
    form.removeAttribute('aria-busy');
  }
}

// slug turns a display name into a resource name: "Live Scores!" -> "live-scores".
export function slug(text) {
  return text.toLowerCase().normalize('NFKD').replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 80);
}

// checkboxes renders a fieldset of checkboxes named name for items [{value, label}].
export function checkboxes(legend, name, items, empty) {
  return h('fieldset', { class: 'checks', id: `${name}-set` },
    h('legend', null, legend),
    items.length
      ? items.map((it) => {
        const id = `${name}-${it.value}`;
        return h('div', { class: 'check' }, h('input', { type: 'checkbox', id, name, value: it.value }), h('label', { for: id }, it.label));
      })
      : h('p', { class: 'muted' }, empty));
}

// checked lists the values of the checked boxes named name in form.
export function checked(form, name) {
  return [...form.querySelectorAll(`input[name="${CSS.escape(name)}"]:checked`)].map((i) => i.value);
}

// required shows "X is required." under each empty input of fields ([[input, label]]) and
// returns false when any is empty; the inputs' ids must be values of targets.
export function required(form, fields, targets, what) {
  const details = fields.filter(([input]) => !input.value.trim())
    .map(([input, label]) => ({ target: Object.keys(targets).find((k) => targets[k] === input.id) || input.id, message: `${label} is required.` }));
  if (!details.length) return true;
  showError(form, { status: 0, code: 'ValidationError', message: 'One or more fields contain incorrect values:', details }, targets, what);
  return false;
}

// taken shows "already exists" under the name input (target "name") and returns true when
// exists() says the resource is there: the forms create, and a PUT would replace.
export async function taken(form, exists, what, id, targets) {
  if (!(await exists())) return false;
  showError(form, { status: 409, code: 'Conflict', message: 'One or more fields contain incorrect values:', details: [{ target: 'name', message: `${what} named '${id}' already exists.` }] }, targets, 'Creating it');
  return true;
}

// onCreate wires the submit of a form that creates one resource: it checks the required
// fields, refuses a name already taken (a PUT would replace it), creates, and shows the API's
// errors next to the fields. On success it shows what created(id) returns in result, resets the
// form and calls after(). opts: {what ("A product"), targets, required: [[input, label]],
// name() -> id, exists(id), create(id), created(id) -> node, after()}.
export function onCreate(form, result, opts) {
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    replace(result);
    const doing = `Creating ${opts.what.replace(/^an? /i, 'the ')}`;
    if (!required(form, opts.required, opts.targets, doing)) return;
    await busy(form, async () => {
      const id = opts.name();
      try {
        if (await taken(form, () => opts.exists(id), opts.what, id, opts.targets)) return;
        await opts.create(id);
      } catch (err) {
        showError(form, err, opts.targets, doing);
        return;
      }
      replace(result, await opts.created(id));
      form.reset();
      if (opts.after) await opts.after();
    });
  });
}
