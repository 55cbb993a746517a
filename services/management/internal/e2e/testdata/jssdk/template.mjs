// template.mjs applies a WebSocket-API template to Gatehouse's management service with the Azure
// SDK for JavaScript (@azure/arm-apimanagement, pinned in package.json) and reads every resource
// back, as a deployment tool would. jssdk_test.go runs it against a live stack, then handshakes
// through a real gateway node with the subscription key this script prints.
//
// The API is versioned (v1 of a Segment version set), tagged (on the API and its product, with
// a tag description), revisioned (revision 2 with its own onHandshake policy, released so that
// it is current) and diagnosed (an otlp logger, a service diagnostic and the API's own).
//
// Environment: MANAGEMENT_URL (plain http on loopback), ADMIN_TOKEN, ARM_SUBSCRIPTION,
// RESOURCE_GROUP, SERVICE, GATEWAY (an existing gateway resource), BACKEND_URL (a WebSocket
// backend), COLLECTOR_URL (an OTLP/HTTP collector, which wants X-Collector-Token: t0ken). Any failed call or unexpected read-back throws, and node exits non-zero. The last
// stdout line is JSON: {"primaryKey", "calls", "secrets": [{"value", "what"}]}.
import assert from "node:assert/strict";
import { ApiManagementClient } from "@azure/arm-apimanagement";
import { bearerTokenAuthenticationPolicyName } from "@azure/core-rest-pipeline";

const env = (name) => {
	const v = process.env[name];
	if (!v) throw new Error(`${name} is not set`);
	return v;
};
const rg = env("RESOURCE_GROUP");
const svc = env("SERVICE");
const gateway = env("GATEWAY");
const token = env("ADMIN_TOKEN");
// id is the ARM id of a resource of the service, as templates write references.
const id = (rel) => `/subscriptions/${env("ARM_SUBSCRIPTION")}/resourceGroups/${rg}/providers/Microsoft.ApiManagement/service/${svc}/${rel}`;

// The SDK's bearer policy refuses plain http; the stack serves plain http on loopback, so the
// token goes in through a policy of the same name in its place (the pipeline is the SDK's
// documented extension point).
const client = new ApiManagementClient({ getToken: async () => ({ token, expiresOnTimestamp: Date.now() + 3600_000 }) },
	env("ARM_SUBSCRIPTION"), { endpoint: env("MANAGEMENT_URL"), allowInsecureConnection: true, retryOptions: { maxRetries: 0 } });
client.pipeline.removePolicy({ name: bearerTokenAuthenticationPolicyName });
client.pipeline.addPolicy({
	name: bearerTokenAuthenticationPolicyName,
	sendRequest: (request, next) => {
		request.headers.set("Authorization", `Bearer ${token}`);
		return next(request);
	},
});

let calls = 0;
// call runs one SDK call, naming it in the error when it fails.
async function call(what, fn) {
	calls++;
	try {
		return await fn();
	} catch (err) {
		throw new Error(`${what}: ${err.statusCode ?? ""} ${err.code ?? ""} ${err.message}`);
	}
}
// list collects a pager.
async function list(what, iter) {
	calls++;
	const out = [];
	try {
		for await (const item of iter) out.push(item);
	} catch (err) {
		throw new Error(`${what}: ${err.statusCode ?? ""} ${err.code ?? ""} ${err.message}`);
	}
	return out;
}
const names = (items) => items.map((i) => i.name).sort();

const tenant = "contoso-js";
const fragment = `<fragment><check-header name="X-Tenant" failed-check-httpcode="403" failed-check-error-message="Unknown tenant" ignore-case="true"><value>{{tenant}}</value></check-header></fragment>`;
const handshakePolicy = `<policies><inbound><base /><include-fragment fragment-id="tenant-check" /><set-backend-service backend-id="chat-backend" /></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>`;
// Revision 2's policy also tells the backend which revision it came through.
const revision2Policy = `<policies><inbound><base /><include-fragment fragment-id="tenant-check" /><set-header name="X-Revision" exists-action="override"><value>2</value></set-header><set-backend-service backend-id="chat-backend" /></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>`;
const collectorToken = "X-Collector-Token=t0ken";
const sampleAll = { samplingType: "fixed", percentage: 100 };
const clientSecret = "js-sdk-aad-client-secret";
const validationKey = Buffer.from("js-sdk-delegation-key").toString("base64");

// The template.
await call("named value", () => client.namedValue.beginCreateOrUpdateAndWait(rg, svc, "tenant",
	{ displayName: "tenant", value: tenant, secret: true, tags: ["js"] }));
await call("backend", () => client.backend.createOrUpdate(rg, svc, "chat-backend",
	{ url: env("BACKEND_URL"), protocol: "http", title: "Chat hub" }));
await call("policy fragment", () => client.policyFragment.beginCreateOrUpdateAndWait(rg, svc, "tenant-check",
	{ format: "rawxml", value: fragment, description: "checks the tenant" }));
await call("version set", () => client.apiVersionSet.createOrUpdate(rg, svc, "chat-versions",
	{ displayName: "Chat", versioningScheme: "Segment" }));
await call("API", () => client.api.beginCreateOrUpdateAndWait(rg, svc, "chat", {
	displayName: "Chat", path: "chat", apiType: "websocket", protocols: ["ws", "wss"], serviceUrl: "ws://unused.invalid/",
	apiVersion: "v1", apiVersionSetId: id("apiVersionSets/chat-versions"),
}));
await call("onHandshake policy", () => client.apiOperationPolicy.createOrUpdate(rg, svc, "chat", "onHandshake", "policy",
	{ format: "xml", value: handshakePolicy }));
await call("product", () => client.product.createOrUpdate(rg, svc, "starter",
	{ displayName: "Starter", subscriptionRequired: true, approvalRequired: false, state: "published" }));
await call("product API", () => client.productApi.createOrUpdate(rg, svc, "starter", "chat"));
await call("tag", () => client.tag.createOrUpdate(rg, svc, "realtime", { displayName: "Realtime" }));
await call("API tag", () => client.tag.assignToApi(rg, svc, "chat", "realtime"));
await call("product tag", () => client.tag.assignToProduct(rg, svc, "starter", "realtime"));
await call("tag description", () => client.apiTagDescription.createOrUpdate(rg, svc, "chat", "realtime",
	{ description: "Sessions that stay open", externalDocsUrl: "https://docs.example.com/realtime", externalDocsDescription: "Realtime guide" }));
await call("logger", () => client.logger.createOrUpdate(rg, svc, "otel",
	{ loggerType: "otlp", description: "the test's collector", credentials: { endpoint: env("COLLECTOR_URL"), headers: collectorToken } }));
await call("service diagnostic", () => client.diagnostic.createOrUpdate(rg, svc, "applicationinsights",
	{ loggerId: id("loggers/otel"), sampling: sampleAll, logClientIp: true }));
await call("API diagnostic", () => client.apiDiagnostic.createOrUpdate(rg, svc, "chat", "applicationinsights",
	{ loggerId: id("loggers/otel"), sampling: sampleAll, logClientIp: false }));
await call("revision 2", () => client.api.beginCreateOrUpdateAndWait(rg, svc, "chat;rev=2",
	{ sourceApiId: id("apis/chat"), apiRevisionDescription: "tells the backend its revision" }));
await call("revision 2 onHandshake policy", () => client.apiOperationPolicy.createOrUpdate(rg, svc, "chat;rev=2", "onHandshake", "policy",
	{ format: "xml", value: revision2Policy }));
await call("release", () => client.apiRelease.createOrUpdate(rg, svc, "chat", "go-live",
	{ apiId: id("apis/chat;rev=2"), notes: "revision 2 goes live" }));
await call("subscription", () => client.subscription.createOrUpdate(rg, svc, "js-sub",
	{ scope: "/products/starter", displayName: "JS SDK", state: "active" }));
await call("gateway", () => client.gateway.createOrUpdate(rg, svc, gateway,
	{ locationData: { name: "e2e" }, description: "applied by the JS SDK" }));
await call("gateway API", () => client.gatewayApi.createOrUpdate(rg, svc, gateway, "chat"));
await call("sign-in settings", () => client.signInSettings.createOrUpdate(rg, svc, { enabled: true }));
await call("sign-up settings", () => client.signUpSettings.createOrUpdate(rg, svc,
	{ enabled: false, termsOfService: { text: "Be kind.", enabled: true, consentRequired: true } }));
await call("delegation settings", () => client.delegationSettings.createOrUpdate(rg, svc,
	{ url: "https://portal.example.com/delegate", validationKey }));
await call("identity provider", () => client.identityProvider.createOrUpdate(rg, svc, "aad",
	{ clientId: "js-app", clientSecret, allowedTenants: ["contoso.onmicrosoft.com"], signinTenant: "contoso.onmicrosoft.com" }));

// Everything read back.
const nv = await call("get named value", () => client.namedValue.get(rg, svc, "tenant"));
assert.equal(nv.secret, true);
assert.equal(nv.value, undefined, "a secret named value's GET must not return its value");
assert.equal((await call("named value listValue", () => client.namedValue.listValue(rg, svc, "tenant"))).value, tenant);
assert.equal((await call("get backend", () => client.backend.get(rg, svc, "chat-backend"))).url, env("BACKEND_URL"));
const frag = await call("get fragment", () => client.policyFragment.get(rg, svc, "tenant-check", { format: "rawxml" }));
assert.equal(frag.value, fragment);
assert.equal((await call("get version set", () => client.apiVersionSet.get(rg, svc, "chat-versions"))).versioningScheme, "Segment");
const api = await call("get API", () => client.api.get(rg, svc, "chat"));
assert.equal(api.apiType, "websocket");
assert.equal(api.apiVersion, "v1");
assert.match(api.apiVersionSetId, /\/apiVersionSets\/chat-versions$/);
assert.equal(api.apiRevision, "2", "the release made revision 2 current");
assert.equal(api.isCurrent, true);
const rev1 = await call("get revision 1", () => client.api.get(rg, svc, "chat;rev=1"));
assert.equal(rev1.isCurrent, false);
assert.equal(rev1.apiVersion, "v1");
const revisions = await list("API revisions", client.apiRevision.listByService(rg, svc, "chat"));
assert.deepEqual(revisions.map((r) => [r.apiRevision, r.isCurrent]).sort(), [["1", false], ["2", true]]);
const releases = await list("API releases", client.apiRelease.listByService(rg, svc, "chat"));
assert.deepEqual(names(releases), ["go-live"]);
assert.match((await call("get release", () => client.apiRelease.get(rg, svc, "chat", "go-live"))).apiId, /\/apis\/chat;rev=2$/);
assert.deepEqual(names(await list("API operations", client.apiOperation.listByApi(rg, svc, "chat"))), ["onHandshake"]);
const pol = await call("get onHandshake policy", () => client.apiOperationPolicy.get(rg, svc, "chat", "onHandshake", "policy", { format: "rawxml" }));
assert.match(pol.value, /include-fragment fragment-id="tenant-check"/);
assert.match(pol.value, /X-Revision/, "the current revision's policy is revision 2's");
const pol1 = await call("get revision 1 policy", () => client.apiOperationPolicy.get(rg, svc, "chat;rev=1", "onHandshake", "policy", { format: "rawxml" }));
assert.doesNotMatch(pol1.value, /X-Revision/, "revision 1 keeps its own policy");
assert.equal((await call("get tag", () => client.tag.get(rg, svc, "realtime"))).displayName, "Realtime");
assert.deepEqual(names(await list("API tags", client.tag.listByApi(rg, svc, "chat"))), ["realtime"]);
assert.deepEqual(names(await list("product tags", client.tag.listByProduct(rg, svc, "starter"))), ["realtime"]);
// A tag resource names its tag and resource by display name, as APIM does; the ids end in the names.
const lastSegment = (id) => id?.split("/").pop();
const byTags = await list("APIs by tags", client.api.listByTags(rg, svc));
assert.deepEqual(byTags.map((r) => [lastSegment(r.tag?.id), r.tag?.name, lastSegment(r.api?.id)]), [["realtime", "Realtime", "chat"]]);
const tagged = await list("tag resources", client.tagResource.listByService(rg, svc));
assert.deepEqual(tagged.map((r) => [lastSegment(r.tag?.id), lastSegment(r.api?.id ?? r.product?.id)]).sort(), [["realtime", "chat"], ["realtime", "starter"]]);
const desc = await call("get tag description", () => client.apiTagDescription.get(rg, svc, "chat", "realtime"));
assert.equal(desc.description, "Sessions that stay open");
assert.equal(desc.externalDocsUrl, "https://docs.example.com/realtime");
const logger = await call("get logger", () => client.logger.get(rg, svc, "otel"));
assert.equal(logger.loggerType, "otlp");
assert.notEqual(logger.credentials?.headers, collectorToken, "a logger's GET must not return its credentials");
const diag = await call("get service diagnostic", () => client.diagnostic.get(rg, svc, "applicationinsights"));
assert.match(diag.loggerId, /\/loggers\/otel$/);
assert.equal(diag.logClientIp, true);
const apiDiag = await call("get API diagnostic", () => client.apiDiagnostic.get(rg, svc, "chat", "applicationinsights"));
assert.equal(apiDiag.logClientIp, false);
assert.equal(apiDiag.sampling?.percentage, 100);
assert.equal((await call("get product", () => client.product.get(rg, svc, "starter"))).state, "published");
assert.deepEqual(names(await list("product APIs", client.productApi.listByProduct(rg, svc, "starter"))), ["chat"]);
const sub = await call("get subscription", () => client.subscription.get(rg, svc, "js-sub"));
assert.equal(sub.state, "active");
assert.equal(sub.primaryKey, undefined, "a subscription's GET must not return its keys");
const keys = await call("subscription listSecrets", () => client.subscription.listSecrets(rg, svc, "js-sub"));
assert.ok(keys.primaryKey && keys.secondaryKey, "listSecrets returns both keys");
assert.equal((await call("get gateway", () => client.gateway.get(rg, svc, gateway))).description, "applied by the JS SDK");
assert.deepEqual(names(await list("gateway APIs", client.gatewayApi.listByService(rg, svc, gateway))), ["chat"]);
assert.equal((await call("get sign-in", () => client.signInSettings.get(rg, svc))).enabled, true);
assert.equal((await call("get sign-up", () => client.signUpSettings.get(rg, svc))).termsOfService.text, "Be kind.");
const delegation = await call("get delegation", () => client.delegationSettings.get(rg, svc));
assert.equal(delegation.url, "https://portal.example.com/delegate");
assert.equal(delegation.validationKey, undefined, "the delegation's GET must not return its validation key");
assert.equal((await call("delegation listSecrets", () => client.delegationSettings.listSecrets(rg, svc))).validationKey, validationKey);
assert.equal((await call("portal settings", () => client.portalSettings.listByService(rg, svc))).value.length, 3);
const idp = await call("get identity provider", () => client.identityProvider.get(rg, svc, "aad"));
assert.equal(idp.clientId, "js-app");
assert.equal(idp.clientSecret, undefined, "an identity provider's GET must not return its client secret");
assert.equal((await call("identity provider listSecrets", () => client.identityProvider.listSecrets(rg, svc, "aad"))).clientSecret, clientSecret);
assert.deepEqual(names(await list("APIs", client.api.listByService(rg, svc))), ["chat"]);
assert.deepEqual(names(await list("named values", client.namedValue.listByService(rg, svc))), ["tenant"]);

// What a refusal looks like through the SDK: an ARM error with a code, not a crash.
await assert.rejects(client.signUpSettings.createOrUpdate(rg, svc, { enabled: true }),
	(err) => err.statusCode === 400 && err.code === "ValidationError");

console.log(JSON.stringify({
	primaryKey: keys.primaryKey,
	calls,
	secrets: [
		{ value: keys.primaryKey, what: "the subscription's primary key" },
		{ value: keys.secondaryKey, what: "the subscription's secondary key" },
		{ value: tenant, what: "the secret named value" },
		{ value: clientSecret, what: "the identity provider's client secret" },
		{ value: validationKey, what: "the delegation's validation key" },
		{ value: collectorToken, what: "the logger's credential" },
	],
}));
