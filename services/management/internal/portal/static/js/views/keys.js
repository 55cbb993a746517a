// keys.js: a subscription's keys, hidden until asked for, with regeneration. The keys stay in
// the page only while shown: hiding them removes them.

import { h, replace, uid, copyButton } from '../dom.js';

// keysControl returns the control for subscription name. fetchKeys() -> {primaryKey,
// secondaryKey}; regenerate(which) with which "primary" or "secondary".
export function keysControl(name, { fetchKeys, regenerate, canRegenerate }) {
  const box = h('div', { class: 'keys-values', hidden: true });
  const status = h('p', { class: 'keys-status', role: 'status' });
  let shown = false;
  const toggle = h('button', { type: 'button', class: 'small', 'aria-expanded': 'false', dataset: { sub: name } }, 'Show keys');
  const setToggle = () => {
    toggle.textContent = shown ? 'Hide keys' : 'Show keys';
    toggle.setAttribute('aria-expanded', String(shown));
    toggle.setAttribute('aria-label', `${shown ? 'Hide' : 'Show'} keys of ${name}`);
  };
  const show = async () => {
    const keys = await fetchKeys();
    const row = (label, value) => {
      const id = uid('key');
      const input = h('input', { id, class: 'mono secret', readOnly: true, value, autocomplete: 'off', spellcheck: 'false', dataset: { key: label.toLowerCase().startsWith('primary') ? 'primary' : 'secondary' } });
      return h('div', { class: 'field' }, h('label', { for: id }, label), h('div', { class: 'inline' }, input, copyButton(input, `Copy ${label.toLowerCase()} of ${name}`)));
    };
    replace(box, row('Primary key', keys.primaryKey), row('Secondary key', keys.secondaryKey));
    box.hidden = false;
  };
  const hide = () => {
    replace(box);
    box.hidden = true;
  };
  setToggle();
  toggle.addEventListener('click', async () => {
    replace(status);
    try {
      if (shown) hide();
      else await show();
      shown = !shown;
      setToggle();
    } catch (err) {
      status.textContent = `Could not read the keys: ${err.message}`;
    }
  });
  const regen = (which) => h('button', {
    type: 'button', class: 'small secondary', 'aria-label': `Regenerate ${which} key of ${name}`,
    onclick: async (e) => {
      const b = e.currentTarget;
      b.disabled = true;
      replace(status);
      try {
        await regenerate(which);
        if (shown) await show();
        status.textContent = `${which === 'primary' ? 'Primary' : 'Secondary'} key regenerated. Connections that used the old key are closed.`;
      } catch (err) {
        status.textContent = `Could not regenerate the ${which} key: ${err.message}`;
      } finally {
        b.disabled = false;
      }
    },
  }, `Regenerate ${which}`);
  return h('div', { class: 'keys' },
    h('div', { class: 'row-actions' }, toggle, canRegenerate ? [regen('primary'), regen('secondary')] : null),
    box, status);
}
