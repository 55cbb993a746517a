// analytics.test.mjs: the portal's analytics and troubleshooting pages in a real browser,
// after the Go test (services/management/internal/e2e/analytics_browser_test.go) sent real
// traffic through a real gateway node: Live now (close a session with the keyboard), a
// suspension's revoked session in the connection log with 1008 and its reason, the log's
// filters and CSV export, the analytics charts adding up to what was sent (read from the data
// each chart carries), breakdowns, a 400 px window, and a consumer who sees only their own.
//
// Environment: PORTAL_URL, ADMIN_TOKEN, ALICE_TOKEN (a consumer token of alice, who owns
// alice-sub and alice-sub2), EXPECT (JSON: the totals of all traffic and of alice's),
// PORTAL_ARTIFACTS, CHROMIUM.

import { readFileSync } from 'node:fs';
import {
  env, secret, page, log, check, screenshot, noSecretsOutsideSession, nav, waitText, signIn, noHorizontalScroll,
  runBrowser, PORTAL_URL,
} from './harness.mjs';

const ADMIN_TOKEN = secret(env('ADMIN_TOKEN'), 'the admin token');
const ALICE_TOKEN = secret(env('ALICE_TOKEN'), "alice's consumer token");
const EXPECT = JSON.parse(env('EXPECT'));
// Usage reaches the reports about a minute after it happens: the charts are polled that long.
const USAGE_WAIT = 150000;

// poll runs attempt until it returns "" or the wait ends, and fails with its last answer.
async function poll(what, wait, attempt) {
  const end = Date.now() + wait;
  let last = '';
  for (;;) {
    last = await attempt();
    if (last === '') return;
    if (Date.now() > end) throw new Error(`${what}: ${last}`);
    await page.waitForTimeout(1000); // a pause between polls, not a bound on the outcome
  }
}

// totals reads the data behind a chart.
async function totals(chart) {
  return JSON.parse(await page.locator(`figure[data-chart="${chart}"]`).getAttribute('data-totals'));
}

// chartsMatch is "" when the charts show want's totals, else what differs.
async function chartsMatch(want) {
  await page.locator('#an-form').getByRole('button', { name: 'Show' }).press('Enter');
  await waitText(page.locator('#an-status'), ' to ', 'the analytics range');
  const got = {
    connections: await totals('connections'),
    messages: await totals('messages'),
    bytes: await totals('bytes'),
    handshakes: await totals('handshakes'),
    seconds: await totals('connection-seconds'),
  };
  const wantCharts = {
    connections: { opened: want.opened, closed: want.closed },
    messages: { in: want.messagesIn, out: want.messagesOut },
    bytes: { in: want.bytesIn, out: want.bytesOut },
    handshakes: { 101: want.opened, ...(want.refused || {}) },
  };
  for (const [k, v] of Object.entries(wantCharts)) {
    if (JSON.stringify(sorted(got[k])) !== JSON.stringify(sorted(v))) return `${k}: chart ${JSON.stringify(got[k])}, sent ${JSON.stringify(v)}`;
  }
  if (!(got.seconds.seconds > 0)) return `connection time ${JSON.stringify(got.seconds)}`;
  return '';
}

const sorted = (o) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));

// logRows are the connection log table's rows as {close, reason, subscription}.
async function logRows() {
  return page.locator('#log-table tbody tr').evaluateAll((trs) => trs.map((tr) => {
    const cell = (label) => (tr.querySelector(`td[data-label="${label}"]`) || {}).textContent || '';
    return { close: cell('Close'), reason: cell('Reason'), subscription: cell('Subscription') };
  }));
}

async function run() {
  log('sign in as admin');
  await page.goto(PORTAL_URL);
  await signIn(ADMIN_TOKEN, 'Services');
  await page.getByRole('link', { name: 'svc', exact: true }).click();
  await page.getByRole('heading', { level: 1, name: 'APIs' }).waitFor();

  // Live now: two sessions open; close bob's with the keyboard.
  log('live now');
  await nav('Live now').click();
  await page.locator('#live-total[data-open="2"]').waitFor();
  await waitText(page.locator('[data-live="api"] td'), 'chat', 'sessions per API');
  await screenshot('live-now');
  const closeAll = page.getByRole('button', { name: 'Close every session of subscription bob-sub' });
  await closeAll.focus();
  await page.keyboard.press('Enter');
  await waitText(page.locator('#live-status'), 'of bob-sub closed', 'closing bob\'s sessions');
  await page.locator('#live-total[data-open="1"]').waitFor();
  await screenshot('live-now-closed');

  // Suspend alice-sub2: its open session is revoked, and the log says so within seconds.
  log('suspend a subscription');
  await nav('Subscriptions').click();
  await page.getByRole('button', { name: 'Suspend alice-sub2' }).click();
  await page.getByRole('button', { name: 'Activate alice-sub2' }).waitFor();
  await nav('Connection log').click();
  await page.getByRole('heading', { level: 1, name: 'Connection log' }).waitFor();
  await page.getByLabel('Close code').fill('1008');
  const started = Date.now();
  await poll('the revoked session in the log', 30000, async () => {
    await page.getByLabel('Close code').press('Enter');
    await waitText(page.locator('#log-status'), 'entr', 'the log');
    const rows = await logRows();
    return rows.some((r) => r.close === '1008' && r.subscription === 'alice-sub2' && /revoked/.test(r.reason)) ? '' : `rows ${JSON.stringify(rows)}`;
  });
  log(`the revoked session was in the log ${Date.now() - started} ms after the suspension`);
  const rows1008 = await logRows();
  check(rows1008.every((r) => r.close === '1008'), `the close code filter: ${JSON.stringify(rows1008)}`);
  check(rows1008.some((r) => /subscription/.test(r.reason)), `the reason names the subscription: ${JSON.stringify(rows1008)}`);
  await screenshot('log-revoked-1008');

  // Filters: a subscription, then none; CSV export of what they select.
  await page.getByLabel('Close code').fill('');
  await page.getByLabel('Subscription').fill('bob-sub');
  await page.getByLabel('Subscription').press('Enter');
  await waitText(page.locator('#log-status'), '2 entries', "bob's two sessions");
  const bobRows = await logRows();
  check(bobRows.length === 2 && bobRows.every((r) => r.subscription === 'bob-sub'), `the subscription filter: ${JSON.stringify(bobRows)}`);
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export CSV' }).click()]);
  const csv = readFileSync(await download.path(), 'utf8').trim().split('\n');
  check(csv[0].startsWith('closed,opened,durationSeconds,correlationId') && csv.length === 3 && csv.slice(1).every((l) => l.includes(',bob-sub,')),
    `the CSV export of bob's sessions: ${csv.join(' | ')}`);
  await page.getByLabel('Subscription').fill('');
  await page.getByLabel('Subscription').press('Enter');
  await waitText(page.locator('#log-status'), `${EXPECT.all.closed} entries`, 'every session');
  await screenshot('log-all');

  // Analytics: the charts add up to the traffic sent, once usage has arrived.
  log('analytics');
  await nav('Analytics').click();
  await page.getByRole('heading', { level: 1, name: 'Analytics' }).waitFor();
  await poll('the analytics charts', USAGE_WAIT, () => chartsMatch(EXPECT.all));
  await waitText(page.locator('[data-breakdown="byApi"] td'), 'chat', 'the API breakdown');
  await waitText(page.locator('[data-breakdown="bySubscription"] td'), 'alice-sub', 'the subscription breakdown');
  check(await page.locator('[data-breakdown="byNode"] tbody tr').count() === 1, 'one node in the node breakdown');
  check(await page.locator('figure[data-chart] canvas').count() >= 5, 'uPlot drew every chart');
  await screenshot('analytics');
  // Keyboard: the range form is reachable and usable without a mouse.
  await page.getByLabel('Range', { exact: true }).focus();
  await page.keyboard.press('ArrowDown'); // Last day
  await page.keyboard.press('Tab');
  check(await page.evaluate(() => document.activeElement.id) === 'an-interval', 'Tab moves from the range to the granularity');
  check(await page.getByLabel('Granularity').inputValue() === 'PT15M', 'the granularity follows the range');
  await page.keyboard.press('Tab'); // Top
  await page.keyboard.press('Tab');
  const onShow = await page.evaluate(() => `${document.activeElement.tagName}#${document.activeElement.id}:${document.activeElement.textContent.slice(0, 20)}`);
  check(onShow.endsWith(':Show'), `Tab reaches Show, not ${onShow}`);
  await page.keyboard.press('Enter');
  await waitText(page.locator('#an-status'), 'every PT15M', 'the last day');

  // 400 px.
  await page.setViewportSize({ width: 400, height: 900 });
  await noHorizontalScroll('analytics at 400px');
  await screenshot('narrow-analytics');
  await nav('Connection log').click();
  await page.getByRole('heading', { level: 1, name: 'Connection log' }).waitFor();
  await noHorizontalScroll('the connection log at 400px');
  await screenshot('narrow-log');
  await nav('Live now').click();
  await page.locator('#live-total').waitFor();
  await noHorizontalScroll('live now at 400px');
  await page.setViewportSize({ width: 1280, height: 900 });

  // The consumer: her usage and her log only.
  log('sign in as alice');
  await page.locator('#sign-out').click();
  await signIn(ALICE_TOKEN, 'Developer portal');
  await nav('Usage').click();
  await page.getByRole('heading', { level: 1, name: 'Your usage' }).waitFor();
  await poll("alice's charts", USAGE_WAIT, () => chartsMatch(EXPECT.alice));
  const subs = await page.locator('[data-breakdown="bySubscription"] td[data-label="Subscription"]').allInnerTexts();
  check(subs.length === 2 && subs.every((s) => s.startsWith('alice-sub')), `alice's subscriptions only: ${subs}`);
  check(await page.locator('[data-breakdown="byNode"]').count() === 0, 'a consumer sees no node breakdown');
  await screenshot('consumer-usage');
  await nav('Connection log').click();
  await page.getByRole('heading', { level: 1, name: 'Your connection log' }).waitFor();
  await waitText(page.locator('#log-status'), `${EXPECT.alice.closed} entries`, "alice's sessions");
  const mine = await logRows();
  check(mine.length === EXPECT.alice.closed && mine.every((r) => r.subscription.startsWith('alice-sub')), `alice's log: ${JSON.stringify(mine)}`);
  check(mine.some((r) => r.close === '1008'), 'alice sees her revoked session');
  await screenshot('consumer-log');
  await noSecretsOutsideSession('the end');
}

runBrowser(run);
