// harness.mjs: what the portal's browser tests share: settings from the environment, a
// browser page (Debian's chromium through playwright-core) that fails the test on any page or
// console error, checks, numbered screenshots, and the list of secrets the test saw, printed
// as one JSON line on stdout ({"secrets":[...]}) so that the Go test can check no log holds
// them.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

// env returns the environment variable name, which must be set.
export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}
export const PORTAL_URL = env('PORTAL_URL');
const ARTIFACTS = env('PORTAL_ARTIFACTS');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const TIMEOUT = 30000;

mkdirSync(ARTIFACTS, { recursive: true });
export const secrets = [];

// secret records value as something no log may hold, and returns it.
export function secret(value, what) {
  if (value) secrets.push({ value, what });
  return value;
}

let shot = 0;
// page is the test's browser page, set by runBrowser.
export let page;

export function log(...args) {
  console.error(`[browser test ${new Date().toISOString().slice(11, 23)}]`, ...args);
}

export function check(cond, message) {
  if (!cond) throw new Error(`check failed: ${message}`);
}

// screenshot saves the page as NN-name.png.
export async function screenshot(name) {
  shot += 1;
  const file = join(ARTIFACTS, `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log('screenshot', file);
}

// noSecretsOutsideSession checks the address bar and the browser's storage: the one token in
// sessionStorage is all the page may keep.
export async function noSecretsOutsideSession(where) {
  const url = page.url();
  for (const s of secrets) check(!url.includes(s.value), `${where}: the address bar holds ${s.what}: ${url}`);
  const storage = await page.evaluate(() => ({
    local: window.localStorage.length,
    session: Object.keys(window.sessionStorage),
    cookies: document.cookie,
  }));
  check(storage.local === 0, `${where}: localStorage has ${storage.local} entries`);
  check(storage.cookies === '', `${where}: cookies set: ${storage.cookies}`);
  check(storage.session.length <= 1 && storage.session.every((k) => k === 'gatehouse.portal.token'),
    `${where}: sessionStorage holds ${storage.session.join(', ')}`);
}

// nav is a link of the main navigation.
export function nav(name) {
  return page.locator('#nav').getByRole('link', { name, exact: true });
}

export async function text(locator) {
  return (await locator.innerText()).trim();
}

// waitText waits until locator's text contains want.
export async function waitText(locator, want, what) {
  try {
    await locator.filter({ hasText: want }).first().waitFor({ timeout: TIMEOUT });
  } catch {
    const got = (await locator.count()) ? await locator.first().innerText() : '(nothing)';
    throw new Error(`${what}: waited for "${want}", the page shows: ${got}`);
  }
}

export async function signIn(token, expectHeading) {
  await page.getByLabel('Bearer token').fill(token);
  await page.getByLabel('Bearer token').press('Enter'); // forms submit with Enter
  await page.getByRole('heading', { level: 1, name: expectHeading }).waitFor();
}

export async function noHorizontalScroll(where) {
  const { scroll, client } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
  check(scroll <= client + 1, `${where}: the page is ${scroll}px wide in a ${client}px window`);
}

// runBrowser launches chromium, opens page, runs run, and exits the process: 0 when run
// succeeded and the page logged no error, 1 otherwise (after a "failure" screenshot).
export function runBrowser(run) {
  main(run).then(() => {
    process.stdout.write(`${JSON.stringify({ secrets })}\n`);
  }, (err) => {
    log('FAILED:', err.stack || err.message);
    process.stdout.write(`${JSON.stringify({ secrets })}\n`);
    process.exit(1);
  });
}

async function main(run) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(PORTAL_URL).origin });
    page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    const consoleErrors = [];
    page.on('pageerror', (err) => consoleErrors.push(`page error: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error' && !/the server responded with a status of 4\d\d/.test(msg.text())) consoleErrors.push(`console error: ${msg.text()}`);
    });
    try {
      await run();
    } catch (err) {
      try {
        await screenshot('failure');
      } catch { /* the page may be gone */ }
      throw err;
    }
    check(consoleErrors.length === 0, `the page logged errors:\n${consoleErrors.join('\n')}`);
  } finally {
    await browser.close();
  }
}

