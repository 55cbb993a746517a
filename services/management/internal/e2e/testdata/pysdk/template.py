"""template.py applies a WebSocket-API template to Gatehouse's management service with the Azure
SDK for Python (azure-mgmt-apimanagement 3.x from Debian's python3-azure, api-version 2021-08-01)
and reads every resource back, as a deployment tool would. pysdk_test.go runs it against a live
stack, then handshakes through a real gateway node with the subscription key this script prints.

2021-08-01 has no policy fragments and no portal settings beyond sign-in/sign-up/delegation, so
the tenant check sits in the onHandshake policy itself; it has tags, revisions, releases, loggers
and diagnostics, which the template uses.

Environment: MANAGEMENT_URL (plain http on loopback), ADMIN_TOKEN, ARM_SUBSCRIPTION,
RESOURCE_GROUP, SERVICE, GATEWAY (an existing gateway resource), BACKEND_URL (a WebSocket
backend). Any failed call or unexpected read-back raises, and python exits non-zero. The last
stdout line is JSON: {"primaryKey", "calls", "secrets": [{"value", "what"}]}.
"""

import json
import os
import time

from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.apimanagement import ApiManagementClient
from azure.mgmt.apimanagement import models as m


def env(name):
    """env returns the environment variable name, raising when it is unset or empty."""
    v = os.environ.get(name)
    if not v:
        raise RuntimeError(f"{name} is not set")
    return v


rg = env("RESOURCE_GROUP")
svc = env("SERVICE")
gateway = env("GATEWAY")
token = env("ADMIN_TOKEN")
service_id = f"/subscriptions/{env('ARM_SUBSCRIPTION')}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{svc}"


class StaticToken:
    """StaticToken is a credential that answers with the stack's admin token."""

    def get_token(self, *scopes, **kwargs):
        return AccessToken(token, int(time.time()) + 3600)


class BearerOverHTTP(SansIOHTTPPolicy):
    """BearerOverHTTP sets the admin token on every request. azure-core's bearer policy refuses
    plain http; the stack serves plain http on loopback, so this takes its place through the
    client's documented authentication_policy setting."""

    def on_request(self, request):
        request.http_request.headers["Authorization"] = f"Bearer {token}"


client = ApiManagementClient(StaticToken(), env("ARM_SUBSCRIPTION"), base_url=env("MANAGEMENT_URL"),
                             authentication_policy=BearerOverHTTP(), retry_total=0, polling_interval=0)

calls = 0


def call(what, fn):
    """call runs one SDK call, naming it in the error when it fails."""
    global calls
    calls += 1
    try:
        return fn()
    except HttpResponseError as err:
        raise RuntimeError(f"{what}: {err.status_code} {err.error.code if err.error else ''} {err.message}") from err


def names(what, pager):
    """names collects a pager's item names, sorted."""
    return sorted(item.name for item in call(what, lambda: list(pager)))


def body(model):
    """body is model as the JSON bytes of a request body. Most create_or_update operations of
    azure-mgmt-apimanagement 3.1.0b1 serialize a model argument with is_xml=True and crash in
    json.dumps (TypeError: Object of type Element is not JSON serializable) before sending; their
    documented IO overload takes the JSON instead, as a template tool using this SDK must."""
    return json.dumps(model.serialize()).encode()


def check(got, want, what):
    """check raises when got is not want."""
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


tenant = "contoso-py"
handshake_policy = ('<policies><inbound><base /><check-header name="X-Tenant" failed-check-httpcode="403" '
                    'failed-check-error-message="Unknown tenant" ignore-case="true"><value>{{tenant}}</value></check-header>'
                    '<set-backend-service backend-id="chat-backend" /></inbound><backend><base /></backend>'
                    '<outbound><base /></outbound><on-error><base /></on-error></policies>')
instrumentation_key = "0f9e8d7c-6b5a-4f3e-2d1c-0b9a8f7e6d5c"
client_secret = "py-sdk-aad-client-secret"

# The template.
call("named value", lambda: client.named_value.begin_create_or_update(rg, svc, "tenant", body(m.NamedValueCreateContract(
    display_name="tenant", value=tenant, secret=True, tags=["py"]))).result())
call("backend", lambda: client.backend.create_or_update(rg, svc, "chat-backend", body(m.BackendContract(
    url=env("BACKEND_URL"), protocol="http", title="Chat hub"))))
call("version set", lambda: client.api_version_set.create_or_update(rg, svc, "chat-versions", body(m.ApiVersionSetContract(
    display_name="Chat", versioning_scheme="Segment"))))
call("API", lambda: client.api.begin_create_or_update(rg, svc, "chat", m.ApiCreateOrUpdateParameter(
    display_name="Chat", path="chat", soap_api_type="websocket", protocols=["ws", "wss"], service_url="ws://unused.invalid/",
    api_version="v1", api_version_set_id=f"{service_id}/apiVersionSets/chat-versions")).result())
call("onHandshake policy", lambda: client.api_operation_policy.create_or_update(rg, svc, "chat", "onHandshake", "policy", body(m.PolicyContract(format="xml", value=handshake_policy))))
call("revision 2", lambda: client.api.begin_create_or_update(rg, svc, "chat;rev=2", m.ApiCreateOrUpdateParameter(
    source_api_id=f"{service_id}/apis/chat", api_revision_description="applied by the Python SDK")).result())
call("revision 2 onHandshake policy", lambda: client.api_operation_policy.create_or_update(
    rg, svc, "chat;rev=2", "onHandshake", "policy", body(m.PolicyContract(format="xml", value=handshake_policy))))
call("release", lambda: client.api_release.create_or_update(rg, svc, "chat", "go-live", body(m.ApiReleaseContract(
    api_id=f"{service_id}/apis/chat;rev=2", notes="revision 2 goes live"))))
call("tag", lambda: client.tag.create_or_update(rg, svc, "realtime", m.TagCreateUpdateParameters(display_name="Realtime")))
call("API tag", lambda: client.tag.assign_to_api(rg, svc, "chat", "realtime"))
call("logger", lambda: client.logger.create_or_update(rg, svc, "appinsights", body(m.LoggerContract(
    logger_type="applicationInsights", description="App Insights", credentials={"instrumentationKey": instrumentation_key}))))
call("diagnostic", lambda: client.diagnostic.create_or_update(rg, svc, "applicationinsights", body(m.DiagnosticContract(
    logger_id=f"{service_id}/loggers/appinsights", always_log="allErrors", log_client_ip=True, verbosity="information",
    sampling=m.SamplingSettings(sampling_type="fixed", percentage=100)))))
call("API diagnostic", lambda: client.api_diagnostic.create_or_update(rg, svc, "chat", "applicationinsights", body(m.DiagnosticContract(
    logger_id=f"{service_id}/loggers/appinsights", log_client_ip=False))))
call("product", lambda: client.product.create_or_update(rg, svc, "starter", body(m.ProductContract(
    display_name="Starter", subscription_required=True, approval_required=False, state="published"))))
call("product API", lambda: client.product_api.create_or_update(rg, svc, "starter", "chat"))
call("subscription", lambda: client.subscription.create_or_update(rg, svc, "py-sub", m.SubscriptionCreateParameters(
    scope="/products/starter", display_name="Python SDK", state="active")))
call("gateway", lambda: client.gateway.create_or_update(rg, svc, gateway, body(m.GatewayContract(
    location_data=m.ResourceLocationDataContract(name="e2e"), description="applied by the Python SDK"))))
call("gateway API", lambda: client.gateway_api.create_or_update(rg, svc, gateway, "chat"))
call("identity provider", lambda: client.identity_provider.create_or_update(rg, svc, "aad", body(m.IdentityProviderCreateContract(
    client_id="py-app", client_secret=client_secret, allowed_tenants=["contoso.onmicrosoft.com"],
    signin_tenant="contoso.onmicrosoft.com"))))

# Everything read back.
nv = call("get named value", lambda: client.named_value.get(rg, svc, "tenant"))
check(nv.secret, True, "named value secret")
check(nv.value, None, "a secret named value's GET returns no value")
check(call("named value list_value", lambda: client.named_value.list_value(rg, svc, "tenant")).value, tenant, "named value")
check(call("get backend", lambda: client.backend.get(rg, svc, "chat-backend")).url, env("BACKEND_URL"), "backend url")
check(call("get version set", lambda: client.api_version_set.get(rg, svc, "chat-versions")).versioning_scheme, "Segment",
      "versioning scheme")
api = call("get API", lambda: client.api.get(rg, svc, "chat"))
check(api.api_type, "websocket", "API type")
check(api.api_version, "v1", "API version")
check(api.api_revision, "2", "current revision after the release")
check(api.api_version_set_id, f"{service_id}/apiVersionSets/chat-versions", "version set id")
check(names("API operations", client.api_operation.list_by_api(rg, svc, "chat")), ["onHandshake"], "API operations")
pol = call("get onHandshake policy", lambda: client.api_operation_policy.get(rg, svc, "chat", "onHandshake", "policy", format="rawxml"))
if "{{tenant}}" not in pol.value:
    raise AssertionError(f"the onHandshake policy reads back as {pol.value!r}")
revisions = call("revisions", lambda: list(client.api_revision.list_by_service(rg, svc, "chat")))
check(sorted((r.api_revision, r.is_current) for r in revisions), [("1", False), ("2", True)], "revisions")
check(call("get release", lambda: client.api_release.get(rg, svc, "chat", "go-live")).notes, "revision 2 goes live", "release")
check(names("API tags", client.tag.list_by_api(rg, svc, "chat")), ["realtime"], "API tags")
check(call("get tag", lambda: client.tag.get(rg, svc, "realtime")).display_name, "Realtime", "tag")
logger = call("get logger", lambda: client.logger.get(rg, svc, "appinsights"))
check(logger.logger_type, "applicationInsights", "logger type")
check(logger.credentials, {"instrumentationKey": "{{Logger-Credentials--appinsights-instrumentationKey}}"}, "logger credentials")
diag = call("get diagnostic", lambda: client.diagnostic.get(rg, svc, "applicationinsights"))
check((diag.logger_id, diag.sampling.percentage, diag.log_client_ip), (f"{service_id}/loggers/appinsights", 100, True), "diagnostic")
check(names("API diagnostics", client.api_diagnostic.list_by_service(rg, svc, "chat")), ["applicationinsights"], "API diagnostics")
check(call("get product", lambda: client.product.get(rg, svc, "starter")).state, "published", "product state")
check(names("product APIs", client.product_api.list_by_product(rg, svc, "starter")), ["chat"], "product APIs")
sub = call("get subscription", lambda: client.subscription.get(rg, svc, "py-sub"))
check(sub.state, "active", "subscription state")
check(sub.primary_key, None, "a subscription's GET returns no key")
keys = call("subscription list_secrets", lambda: client.subscription.list_secrets(rg, svc, "py-sub"))
if not (keys.primary_key and keys.secondary_key):
    raise AssertionError("list_secrets returns both keys")
check(call("get gateway", lambda: client.gateway.get(rg, svc, gateway)).description, "applied by the Python SDK", "gateway")
check(names("gateway APIs", client.gateway_api.list_by_service(rg, svc, gateway)), ["chat"], "gateway APIs")
idp = call("get identity provider", lambda: client.identity_provider.get(rg, svc, "aad"))
check((idp.client_id, idp.client_secret), ("py-app", None), "identity provider")
check(call("identity provider list_secrets", lambda: client.identity_provider.list_secrets(rg, svc, "aad")).client_secret,
      client_secret, "identity provider secret")
check(names("APIs", client.api.list_by_service(rg, svc)), ["chat"], "APIs")
check(names("named values", client.named_value.list_by_service(rg, svc)), ["tenant"], "named values")

# What a refusal looks like through the SDK: an ARM error with a code, not a crash.
try:
    client.api.begin_create_or_update(rg, svc, "bad", m.ApiCreateOrUpdateParameter(
        display_name="Bad", path="bad", soap_api_type="websocket", protocols=["wss"])).result()
    raise AssertionError("a WebSocket API without serviceUrl was accepted")
except HttpResponseError as err:
    check((err.status_code, err.error.code if err.error else None), (400, "ValidationError"), "refusal")

print(json.dumps({
    "primaryKey": keys.primary_key,
    "calls": calls,
    "secrets": [
        {"value": keys.primary_key, "what": "the subscription's primary key"},
        {"value": keys.secondary_key, "what": "the subscription's secondary key"},
        {"value": tenant, "what": "the secret named value"},
        {"value": client_secret, "what": "the identity provider's client secret"},
        {"value": instrumentation_key, "what": "the logger's instrumentation key"},
    ],
}))
