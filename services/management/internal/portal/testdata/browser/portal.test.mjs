// portal.test.mjs: the portal in a real browser (Debian's chromium driven by playwright-core),
// against a real management, gateway node and backend that the Go test
// (services/management/internal/e2e/portal_browser_test.go) starts and describes in the
// environment. It screenshots every step into PORTAL_ARTIFACTS, prints one JSON line on stdout
// ({"secrets":[...]}: the keys and tokens it saw, so the Go test can check no log holds them)
// and exits non-zero on the first failed check.
//
// Environment: PORTAL_URL (management's /portal/), ADMIN_TOKEN, BACKEND_URL (ws:// of the demo
// backend), BACKEND_TOKEN (its access_token), NODE_URL (the URL the gateway node advertises),
// PORTAL_ARTIFACTS (screenshot folder), CHROMIUM (default /usr/bin/chromium). The harness
// (harness.mjs) launches the browser and holds the shared checks.

import {
  env, secret, page, log, check, screenshot, noSecretsOutsideSession, nav, text, waitText, signIn, noHorizontalScroll,
  runBrowser, PORTAL_URL, TIMEOUT,
} from './harness.mjs';

const ADMIN_TOKEN = env('ADMIN_TOKEN');
const BACKEND_URL = env('BACKEND_URL');
const BACKEND_TOKEN = env('BACKEND_TOKEN');
const NODE_URL = env('NODE_URL');

secret(ADMIN_TOKEN, 'the admin token');
secret(BACKEND_TOKEN, 'the backend access token');

async function run() {
  // 1. Sign in as the admin.
  log('sign in as admin');
  await page.goto(PORTAL_URL);
  await page.getByRole('heading', { name: 'Sign in to Gatehouse' }).waitFor();
  await screenshot('sign-in');
  // Keyboard: Tab moves from the token to the button, and the focus shows.
  await page.getByLabel('Bearer token').fill('not-a-token');
  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => {
    const el = document.activeElement;
    const style = getComputedStyle(el);
    return { text: el.textContent, outline: style.outlineStyle, width: parseFloat(style.outlineWidth) };
  });
  check(focused.text === 'Sign in' && focused.outline !== 'none' && focused.width >= 2, `Tab focuses the Sign in button visibly: ${JSON.stringify(focused)}`);
  await page.keyboard.press('Enter');
  await waitText(page.locator('#signin-status'), 'not accepted', 'a wrong token');
  await screenshot('sign-in-refused');
  await signIn(ADMIN_TOKEN, 'Services');
  await noSecretsOutsideSession('after sign-in');
  await screenshot('services');
  await page.getByRole('link', { name: 'svc', exact: true }).click();
  await page.getByRole('heading', { level: 1, name: 'APIs' }).waitFor();

  // A product for the API to join.
  await nav('Products').click();
  const pform = page.locator('#create-product');
  await pform.getByRole('button', { name: 'Create' }).click();
  await waitText(page.locator('#product-displayName-error'), 'Display name is required', 'an empty product form');
  await pform.getByLabel('Display name').fill('Starter');
  await pform.getByLabel('Display name').press('Enter');
  await waitText(page.locator('table'), 'starter', 'the new product');
  await nav('APIs').click();

  // 2. Create a WebSocket API through the form: first with a bad WebSocket URL.
  log('create a WebSocket API');
  const form = page.locator('#create-ws-api');
  await form.getByLabel('Display name').fill('Chat');
  check(await form.getByLabel('Name', { exact: true }).inputValue() === 'chat', 'the name is derived from the display name');
  await form.getByLabel('WebSocket URL').fill('http://not-a-websocket.example');
  await form.getByLabel('URL scheme').selectOption({ label: 'WS and WSS' });
  await form.getByLabel('API URL suffix').fill('chat');
  await form.getByLabel('gw', { exact: true }).check();
  await form.getByLabel('Starter', { exact: true }).check();
  await form.getByRole('button', { name: 'Create' }).click();
  await waitText(page.locator('#api-serviceUrl-error'), 'serviceUrl must be an absolute ws:// or wss:// URL', 'the WebSocket URL error');
  check(await form.getByLabel('WebSocket URL').getAttribute('aria-invalid') === 'true', 'the WebSocket URL is marked invalid');
  check(await page.evaluate(() => document.activeElement && document.activeElement.id) === 'api-serviceUrl', 'focus moves to the field in error');
  await screenshot('create-api-validation-error');
  await form.getByLabel('WebSocket URL').fill(`${BACKEND_URL}/client/hubs/chat`);
  await form.getByLabel('WebSocket URL').press('Enter');
  await waitText(page.locator('#api-create-result'), "API 'chat' created", 'creating the API');
  await page.locator('table').getByRole('link', { name: 'Chat' }).click();
  await page.getByRole('heading', { level: 1, name: 'Chat' }).waitFor();
  const props = await text(page.locator('dl.props'));
  check(/Products\s+Starter/.test(props) && /Gateways\s+gw/.test(props), `the API is in the product and on the gateway: ${props}`);
  await screenshot('api-created');

  // 3. A user and their consumer token.
  log('add a user and generate a consumer token');
  await nav('Users').click();
  await page.getByRole('heading', { level: 1, name: 'Users' }).waitFor();
  const uform = page.locator('#create-user');
  await uform.getByLabel('Name', { exact: true }).fill('alice');
  await uform.getByLabel('Email').fill('alice@example.com');
  await uform.getByLabel('First name').fill('Alice');
  await uform.getByLabel('Last name').fill('Liddell');
  await uform.getByRole('button', { name: 'Add user' }).click();
  await page.getByRole('button', { name: 'Generate token for alice' }).click();
  await page.locator('#user-token-form').getByRole('button', { name: 'Generate token' }).click();
  const consumerToken = secret(await page.getByLabel('Consumer token', { exact: true }).inputValue(), "alice's consumer token");
  check(consumerToken.length > 20, 'a consumer token is shown');
  await screenshot('consumer-token');

  // 4. A subscription for alice to the API.
  log('create a subscription');
  await nav('Subscriptions').click();
  await page.getByRole('heading', { level: 1, name: 'Subscriptions' }).waitFor();
  const sform = page.locator('#create-subscription');
  await sform.getByLabel('Display name').fill('Alice chat');
  await sform.getByLabel('Scope').selectOption({ label: 'Chat' });
  await sform.getByLabel('Owner').selectOption({ label: 'alice (alice@example.com)' });
  await sform.getByLabel('State').selectOption('active');
  await sform.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('button', { name: 'Show keys of alice-chat' }).click();
  const row = page.locator('tr', { hasText: 'alice-chat' });
  const adminKey = secret(await row.getByLabel('Primary key', { exact: true }).inputValue(), 'the primary key of alice-chat');
  secret(await row.getByLabel('Secondary key', { exact: true }).inputValue(), 'the secondary key of alice-chat');
  check(adminKey.length >= 16, 'the primary key is shown');
  await screenshot('subscription-keys');
  await page.getByRole('button', { name: 'Hide keys of alice-chat' }).click();
  check(await row.getByLabel('Primary key', { exact: true }).count() === 0, 'hiding the keys removes them from the page');
  await page.getByRole('button', { name: 'Suspend bob-sub' }).click();
  await page.getByRole('button', { name: 'Activate bob-sub' }).waitFor();
  await page.getByRole('button', { name: 'Activate bob-sub' }).click();
  await page.getByRole('button', { name: 'Suspend bob-sub' }).waitFor();

  // 5. The onHandshake policy: a broken document shows its line.
  log('policy editor');
  await nav('APIs').click();
  await page.getByRole('link', { name: 'Policy', exact: true }).click();
  await page.getByRole('heading', { level: 1, name: 'Policy of Chat' }).waitFor();
  const broken = ['<policies>', '    <inbound>', '        <base />', '        <set-header name="X-Portal" exists-action="override">',
    '            <value>yes</value>', '    </inbound>', '</policies>'].join('\n');
  await page.getByLabel('onHandshake policy (XML)').fill(broken);
  await page.getByRole('button', { name: 'Save' }).click();
  await waitText(page.locator('#policy-status'), 'Line ', 'the policy error');
  const errLine = await text(page.locator('.gutter .err'));
  check(/^\d+$/.test(errLine), `the gutter marks the line in error (got "${errLine}")`);
  check((await text(page.locator('#policy-status'))).includes(`Line ${errLine}`), 'the message names the marked line');
  await screenshot('policy-error');
  const fixed = broken.replace('<value>yes</value>', '<value>yes</value>\n        </set-header>');
  await page.getByLabel('onHandshake policy (XML)').fill(fixed);
  await page.getByLabel('onHandshake policy (XML)').press('Control+Enter');
  await waitText(page.locator('#policy-status'), 'Policy saved', 'saving the fixed policy');
  check(await page.locator('.gutter .err').count() === 0, 'the error mark is gone once saved');

  // 6. The gateway's nodes, with the URL the node advertises and its revision.
  log('gateway nodes');
  await nav('Gateways').click();
  await page.getByRole('link', { name: 'gw', exact: true }).click();
  await page.getByRole('heading', { level: 1, name: 'Gateway gw' }).waitFor();
  await waitText(page.locator('#gw-nodes'), NODE_URL, 'the node list');
  await page.getByRole('button', { name: 'Generate token' }).click();
  secret(await page.getByLabel('GATEWAY_TOKEN', { exact: true }).inputValue(), 'a gateway token');
  await screenshot('gateway-nodes');

  // 7. The test console: connect through the real node to the backend, send and receive.
  log('test console as admin');
  await nav('APIs').click();
  await page.getByRole('link', { name: 'Test console' }).first().click();
  await page.getByRole('heading', { level: 1, name: 'Test console: Chat' }).waitFor();
  await consoleConnect('Alice chat (API chat)');
  await screenshot('console-connected');
  await consoleSend('hello from the portal');
  await screenshot('console-messages');
  await page.getByRole('button', { name: 'Disconnect' }).click();
  await waitText(page.locator('#console-log'), 'Closed by you: code 1000', 'disconnecting');
  await waitText(page.locator('#console-state'), 'Not connected', 'the state after disconnecting');
  await screenshot('console-disconnected');

  // 8. A wrong key: the gateway's 401 body.
  log('wrong key');
  check(await page.getByLabel('Parameter 1 name').inputValue() === 'subscription-key', 'the first parameter is the key');
  await page.getByLabel('Parameter 1 value').fill('wrong-key');
  await page.getByRole('button', { name: 'Connect', exact: true }).click();
  await waitText(page.locator('#console-hs-status'), '401 Unauthorized', 'the handshake with a wrong key');
  await waitText(page.locator('#console-hs-body'), 'Access denied due to invalid subscription key', 'the 401 body');
  await waitText(page.locator('#console-state'), 'Not connected', 'the state after a refused handshake');
  await screenshot('console-wrong-key');
  await noSecretsOutsideSession('after the admin console');

  // The admin's pages on a narrow window too.
  await page.setViewportSize({ width: 400, height: 900 });
  await nav('Subscriptions').click();
  await page.getByRole('button', { name: 'Show keys of alice-chat' }).click();
  await noHorizontalScroll('the subscriptions at 400px');
  await screenshot('narrow-subscriptions');
  await nav('APIs').click();
  await page.locator('#create-ws-api').waitFor();
  await noHorizontalScroll('the APIs at 400px');
  await screenshot('narrow-apis');
  await page.setViewportSize({ width: 1280, height: 900 });

  // 9. Sign out: the token leaves the browser.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in to Gatehouse' }).waitFor();
  check(await page.evaluate(() => window.sessionStorage.length) === 0, 'signing out clears sessionStorage');

  // 10. The consumer: only their own subscriptions; regenerate a key; the same console.
  log('consumer');
  await signIn(consumerToken, 'Developer portal');
  await noSecretsOutsideSession('consumer sign-in');
  const subs = page.locator('section', { has: page.getByRole('heading', { name: 'Your subscriptions' }) });
  await waitText(subs, 'alice-chat', 'the consumer\'s subscriptions');
  const subsText = await text(subs);
  check(!subsText.includes('bob-sub') && !subsText.includes('shared-sub'), `the consumer sees only their own subscriptions: ${subsText}`);
  await page.getByRole('button', { name: 'Show keys of alice-chat' }).click();
  const before = await subs.getByLabel('Primary key', { exact: true }).inputValue();
  check(before === adminKey, 'the consumer sees the same primary key as the admin');
  await screenshot('developer-portal');
  await page.getByRole('button', { name: 'Regenerate primary key of alice-chat' }).click();
  await waitText(subs, 'Primary key regenerated', 'regenerating the primary key');
  const after = secret(await subs.getByLabel('Primary key', { exact: true }).inputValue(), 'the regenerated primary key of alice-chat');
  check(after !== before && after.length >= 16, 'regenerating shows a new primary key');
  await screenshot('developer-key-regenerated');
  await page.getByRole('link', { name: 'Test console' }).click();
  await page.getByRole('heading', { level: 1, name: 'Test console: Chat' }).waitFor();
  await consoleConnect('Alice chat (API chat)');
  await consoleSend('hello as a consumer');
  await screenshot('developer-console');

  // 11. A narrow window: one column, nothing wider than the window.
  log('narrow window');
  await page.setViewportSize({ width: 400, height: 900 });
  await noHorizontalScroll('the console at 400px');
  await screenshot('narrow-console');
  await page.getByRole('button', { name: 'Disconnect' }).click();
  await waitText(page.locator('#console-state'), 'Not connected', 'disconnecting on a narrow window');
  await nav('Developer portal').click();
  await page.getByRole('heading', { level: 1, name: 'Developer portal' }).waitFor();
  await page.getByRole('button', { name: 'Show keys of alice-chat' }).waitFor();
  await noHorizontalScroll('the developer portal at 400px');
  await screenshot('narrow-developer-portal');
  await noSecretsOutsideSession('the end');
}

// consoleConnect fills the console's request (the first node, the subscription's key, the
// backend's access_token), connects and waits for the 101 and the backend's hello.
async function consoleConnect(subscriptionLabel) {
  const node = page.getByLabel('Gateway node');
  await page.waitForFunction(() => document.querySelectorAll('#console-node option').length > 0, null, { timeout: TIMEOUT });
  check((await node.locator('option').first().innerText()).includes(NODE_URL), 'the node list shows the node\'s advertised URL');
  await page.getByLabel('Key from subscription').selectOption({ label: subscriptionLabel });
  await page.getByRole('button', { name: 'Use as subscription-key' }).click();
  await waitText(page.locator('.key-fill'), 'subscription-key set to the primary key', 'filling in the key');
  if (await page.locator('input.param-name').count() < 2) {
    await page.getByRole('button', { name: 'Add parameter' }).click();
    await page.getByLabel('Parameter 2 name').fill('access_token');
    await page.getByLabel('Parameter 2 value').fill(BACKEND_TOKEN);
  }
  const preview = await text(page.locator('#console-preview'));
  check(preview.includes('subscription-key=***') && preview.includes('access_token=***'), `the preview hides keys: ${preview}`);
  await page.getByRole('button', { name: 'Connect', exact: true }).click();
  await waitText(page.locator('#console-hs-status'), '101 Switching Protocols', 'the handshake');
  await waitText(page.locator('#console-state'), 'Connected', 'the console state');
  // The demo backend greets each connection with what it saw; the key must not reach it.
  await waitText(page.locator('#console-log .entry-in'), '"backend"', 'the backend\'s hello');
  const hello = await text(page.locator('#console-log .entry-in').first());
  check(!hello.includes('subscription-key'), `the gateway forwarded the subscription key to the backend: ${hello}`);
}

async function consoleSend(message) {
  await page.getByLabel('Message (text)').fill(message);
  await page.getByLabel('Message (text)').press('Enter');
  await waitText(page.locator('#console-log .entry-out'), message, 'the sent message');
  await waitText(page.locator('#console-log .entry-in'), message, 'the echoed message');
  const entry = page.locator('#console-log .entry-in', { hasText: message }).first();
  check(/^\d\d:\d\d:\d\d\.\d\d\d$/.test(await text(entry.locator('time'))), 'each message shows its time');
  check((await text(entry.locator('.dir'))).includes('Received'), 'each message shows its direction');
}

runBrowser(run);
