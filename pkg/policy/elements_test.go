package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// elementTest is one policy element inside <inbound>, which starts on line 3 of the document.
// A valid element decodes to want; an invalid one fails with an error containing wantErr on
// line 3 (or wantLine).
type elementTest struct {
	name     string
	xml      string
	want     Policy
	wantErr  string
	wantLine int
}

// elementTests is shared with FuzzParse as seed corpus.
var elementTests = []elementTest{
	// base
	{name: "base", xml: `<base />`, want: &Base{}},
	{name: "base with attribute", xml: `<base x="1"/>`, wantErr: "The attribute 'x' is not allowed."},

	// validate-jwt
	{
		name: "validate-jwt full",
		xml: `<validate-jwt header-name="Authorization" failed-validation-httpcode="401"
				failed-validation-error-message="Unauthorized. Access token is missing or invalid."
				require-expiration-time="true" require-scheme="Bearer" require-signed-tokens="True"
				clock-skew="30" output-token-variable-name="jwt" id="jwt-check">
			<openid-config url="https://login.microsoftonline.com/contoso/v2.0/.well-known/openid-configuration" />
			<openid-config url="{{second-oidc}}" />
			<issuer-signing-keys>
				<key>c2VjcmV0LWtleS0xMjM0NTY3ODkwMTIzNDU2Nzg5MA==</key>
				<key id="kid-1" n="0vx7agoebGcQSuu" e="AQAB" />
				<key certificate-id="my-cert" />
				<key>{{jwt-signing-key}}</key>
			</issuer-signing-keys>
			<decryption-keys><key certificate-id="dec" /></decryption-keys>
			<audiences>
				<audience>api://gatehouse</audience>
				<audience> spaced </audience>
			</audiences>
			<issuers><issuer>https://issuer.example.com/</issuer></issuers>
			<required-claims>
				<claim name="roles" match="any" separator=",">
					<value>admin</value>
					<value>reader</value>
				</claim>
				<claim name="tid" />
			</required-claims>
		</validate-jwt>`,
		want: &ValidateJWT{
			Meta:                         Meta{ID: "jwt-check"},
			HeaderName:                   "Authorization",
			FailedValidationHTTPCode:     "401",
			FailedValidationErrorMessage: "Unauthorized. Access token is missing or invalid.",
			RequireExpirationTime:        "true",
			RequireScheme:                "Bearer",
			RequireSignedTokens:          "True",
			ClockSkew:                    "30",
			OutputTokenVariableName:      "jwt",
			OpenIDConfigs: []OpenIDConfig{
				{URL: "https://login.microsoftonline.com/contoso/v2.0/.well-known/openid-configuration"},
				{URL: "{{second-oidc}}"},
			},
			IssuerSigningKeys: []JWTKey{
				{Value: "c2VjcmV0LWtleS0xMjM0NTY3ODkwMTIzNDU2Nzg5MA=="},
				{ID: "kid-1", N: "0vx7agoebGcQSuu", E: "AQAB"},
				{CertificateID: "my-cert"},
				{Value: "{{jwt-signing-key}}"},
			},
			DecryptionKeys: []JWTKey{{CertificateID: "dec"}},
			Audiences:      []string{"api://gatehouse", "spaced"},
			Issuers:        []string{"https://issuer.example.com/"},
			RequiredClaims: []Claim{
				{Name: "roles", Match: "any", Separator: ",", Values: []string{"admin", "reader"}},
				{Name: "tid"},
			},
		},
	},
	{
		name: "validate-jwt query parameter",
		xml:  `<validate-jwt query-parameter-name="access_token" />`,
		want: &ValidateJWT{QueryParameterName: "access_token"},
	},
	{
		name: "validate-jwt token-value expression",
		xml:  `<validate-jwt token-value="@(context.Request.Headers.GetValueOrDefault(&quot;X-Token&quot;,&quot;&quot;))" clock-skew="@(5)" />`,
		want: &ValidateJWT{TokenValue: `@(context.Request.Headers.GetValueOrDefault("X-Token",""))`, ClockSkew: "@(5)"},
	},
	{name: "validate-jwt without token source", xml: `<validate-jwt />`, wantErr: "Exactly one of the attributes 'header-name', 'query-parameter-name' and 'token-value' must be specified."},
	{name: "validate-jwt with two token sources", xml: `<validate-jwt header-name="a" query-parameter-name="b" />`, wantErr: "Exactly one of"},
	{name: "validate-jwt empty source is absent", xml: `<validate-jwt header-name="" />`, wantErr: "Exactly one of"},
	{name: "validate-jwt bad httpcode", xml: `<validate-jwt header-name="a" failed-validation-httpcode="4o1" />`, wantErr: "The attribute 'failed-validation-httpcode' must be an integer between 100 and 599."},
	{name: "validate-jwt httpcode out of range", xml: `<validate-jwt header-name="a" failed-validation-httpcode="99" />`, wantErr: "between 100 and 599"},
	{name: "validate-jwt bad bool", xml: `<validate-jwt header-name="a" require-expiration-time="yes" />`, wantErr: "The attribute 'require-expiration-time' must be one of: true, false."},
	{name: "validate-jwt negative clock skew", xml: `<validate-jwt header-name="a" clock-skew="-1" />`, wantErr: "The attribute 'clock-skew' must be an integer not less than 0."},
	{name: "validate-jwt unknown attribute", xml: `<validate-jwt header-name="a" audience="b" />`, wantErr: "The attribute 'audience' is not allowed."},
	{name: "validate-jwt unknown child", xml: "<validate-jwt header-name=\"a\">\n<audience>x</audience>\n</validate-jwt>", wantErr: "Error in element 'audience' on line 4, column 1: The element is not allowed in 'validate-jwt'.", wantLine: 4},
	{name: "validate-jwt openid-config without url", xml: `<validate-jwt header-name="a"><openid-config /></validate-jwt>`, wantErr: "The attribute 'url' is required."},
	{name: "validate-jwt openid-config relative url", xml: `<validate-jwt header-name="a"><openid-config url="/.well-known/openid-configuration" /></validate-jwt>`, wantErr: "must be an absolute http or https URL"},
	{name: "validate-jwt key with two forms", xml: `<validate-jwt header-name="a"><issuer-signing-keys><key certificate-id="c">a2V5</key></issuer-signing-keys></validate-jwt>`, wantErr: "A key must be exactly one of"},
	{name: "validate-jwt empty key", xml: `<validate-jwt header-name="a"><issuer-signing-keys><key /></issuer-signing-keys></validate-jwt>`, wantErr: "A key must be exactly one of"},
	{name: "validate-jwt n without e", xml: `<validate-jwt header-name="a"><issuer-signing-keys><key n="abc" /></issuer-signing-keys></validate-jwt>`, wantErr: "The attributes 'n' and 'e' must be specified together."},
	{name: "validate-jwt key not base64", xml: `<validate-jwt header-name="a"><issuer-signing-keys><key>not base64!</key></issuer-signing-keys></validate-jwt>`, wantErr: "The key is not a valid Base64 string."},
	{name: "validate-jwt wrong child in audiences", xml: `<validate-jwt header-name="a"><audiences><issuer>x</issuer></audiences></validate-jwt>`, wantErr: "The element is not allowed in 'audiences'."},
	{name: "validate-jwt claim without name", xml: `<validate-jwt header-name="a"><required-claims><claim><value>x</value></claim></required-claims></validate-jwt>`, wantErr: "The attribute 'name' is required."},
	{name: "validate-jwt claim bad match", xml: `<validate-jwt header-name="a"><required-claims><claim name="c" match="some" /></required-claims></validate-jwt>`, wantErr: "The attribute 'match' must be one of: all, any."},
	{name: "validate-jwt markup in value", xml: `<validate-jwt header-name="a"><audiences><audience><b/></audience></audiences></validate-jwt>`, wantErr: "Child elements are not allowed in 'audience'."},

	// check-header
	{
		name: "check-header",
		xml: `<check-header name="Authorization" failed-check-httpcode="401" failed-check-error-message="Not authorized" ignore-case="false">
			<value>f6dc69a089844cf6b2019bae6d36fac8</value>
			<value>@(context.Variables.GetValueOrDefault&lt;string&gt;("k"))</value>
		</check-header>`,
		want: &CheckHeader{
			Name: "Authorization", FailedCheckHTTPCode: "401", FailedCheckErrorMessage: "Not authorized", IgnoreCase: "false",
			Values: []string{"f6dc69a089844cf6b2019bae6d36fac8", `@(context.Variables.GetValueOrDefault<string>("k"))`},
		},
	},
	{
		name: "check-header presence only, empty message",
		xml:  `<check-header name="X-Key" failed-check-httpcode="{{code}}" failed-check-error-message="" ignore-case="TRUE" />`,
		want: &CheckHeader{Name: "X-Key", FailedCheckHTTPCode: "{{code}}", IgnoreCase: "TRUE"},
	},
	{name: "check-header missing ignore-case", xml: `<check-header name="a" failed-check-httpcode="401" failed-check-error-message="m" />`, wantErr: "The attribute 'ignore-case' is required."},
	{name: "check-header missing message", xml: `<check-header name="a" failed-check-httpcode="401" ignore-case="true" />`, wantErr: "The attribute 'failed-check-error-message' is required."},
	{name: "check-header bad code", xml: `<check-header name="a" failed-check-httpcode="abc" failed-check-error-message="m" ignore-case="true" />`, wantErr: "The attribute 'failed-check-httpcode' must be an integer between 100 and 599."},
	{name: "check-header text", xml: `<check-header name="a" failed-check-httpcode="401" failed-check-error-message="m" ignore-case="true">abc</check-header>`, wantErr: "Text is not allowed in this element."},

	// ip-filter
	{
		name: "ip-filter",
		xml: `<ip-filter action="allow">
			<address>13.66.201.169</address>
			<address>2001:db8::1</address>
			<address>{{office-ip}}</address>
			<address-range from="13.66.140.128" to="13.66.140.143" />
			<address-range from="2001:db8::" to="2001:db8::ffff" />
		</ip-filter>`,
		want: &IPFilter{
			Action:    "allow",
			Addresses: []string{"13.66.201.169", "2001:db8::1", "{{office-ip}}"},
			Ranges:    []AddressRange{{From: "13.66.140.128", To: "13.66.140.143"}, {From: "2001:db8::", To: "2001:db8::ffff"}},
		},
	},
	{name: "ip-filter forbid expression action", xml: `<ip-filter action="@(&quot;forbid&quot;)"><address>10.0.0.1</address></ip-filter>`, want: &IPFilter{Action: `@("forbid")`, Addresses: []string{"10.0.0.1"}}},
	{name: "ip-filter bad action", xml: `<ip-filter action="deny"><address>10.0.0.1</address></ip-filter>`, wantErr: "The attribute 'action' must be one of: allow, forbid."},
	{name: "ip-filter missing action", xml: `<ip-filter><address>10.0.0.1</address></ip-filter>`, wantErr: "The attribute 'action' is required."},
	{name: "ip-filter empty", xml: `<ip-filter action="allow" />`, wantErr: "At least one 'address' or 'address-range' element is required."},
	{name: "ip-filter bad address", xml: "<ip-filter action=\"allow\">\n<address>10.0.0.256</address>\n</ip-filter>", wantErr: "Error in element 'address' on line 4, column 1: '10.0.0.256' is not a valid IP address.", wantLine: 4},
	{name: "ip-filter cidr is not an address", xml: `<ip-filter action="allow"><address>10.0.0.0/8</address></ip-filter>`, wantErr: "'10.0.0.0/8' is not a valid IP address."},
	{name: "ip-filter bad range end", xml: `<ip-filter action="allow"><address-range from="10.0.0.1" to="x" /></ip-filter>`, wantErr: "'x' is not a valid IP address."},
	{name: "ip-filter reversed range", xml: `<ip-filter action="allow"><address-range from="10.0.0.9" to="10.0.0.1" /></ip-filter>`, wantErr: "is empty or mixes IPv4 and IPv6"},
	{name: "ip-filter mixed range", xml: `<ip-filter action="allow"><address-range from="10.0.0.1" to="::1" /></ip-filter>`, wantErr: "is empty or mixes IPv4 and IPv6"},
	{name: "ip-filter range missing to", xml: `<ip-filter action="allow"><address-range from="10.0.0.1" /></ip-filter>`, wantErr: "The attribute 'to' is required."},

	// rate-limit
	{
		name: "rate-limit",
		xml: `<rate-limit calls="20" renewal-period="90" retry-after-header-name="Retry-After" retry-after-variable-name="ra"
				remaining-calls-header-name="X-Remaining" remaining-calls-variable-name="rc" total-calls-header-name="X-Total">
			<api name="echo" calls="10" renewal-period="60">
				<operation name="onHandshake" calls="5" renewal-period="30" />
			</api>
			<api id="b" calls="{{n}}" renewal-period="300" />
		</rate-limit>`,
		want: &RateLimit{
			Calls: "20", RenewalPeriod: "90", RetryAfterHeaderName: "Retry-After", RetryAfterVariableName: "ra",
			RemainingCallsHeaderName: "X-Remaining", RemainingCallsVariableName: "rc", TotalCallsHeaderName: "X-Total",
			APIs: []LimitAPI{
				{Name: "echo", Calls: "10", RenewalPeriod: "60", Operations: []LimitOperation{{Name: "onHandshake", Calls: "5", RenewalPeriod: "30"}}},
				{ID: "b", Calls: "{{n}}", RenewalPeriod: "300"},
			},
		},
	},
	{name: "rate-limit trims numbers", xml: `<rate-limit calls=" 5 " renewal-period="60" />`, want: &RateLimit{Calls: "5", RenewalPeriod: "60"}},
	{name: "rate-limit period over 300", xml: `<rate-limit calls="5" renewal-period="301" />`, wantErr: "The attribute 'renewal-period' must be an integer between 1 and 300."},
	{name: "rate-limit expression calls", xml: `<rate-limit calls="@(5)" renewal-period="60" />`, wantErr: "Policy expressions are not allowed in the attribute 'calls'."},
	{name: "rate-limit missing calls", xml: `<rate-limit renewal-period="60" />`, wantErr: "The attribute 'calls' is required."},
	{name: "rate-limit api without name or id", xml: `<rate-limit calls="5" renewal-period="60"><api calls="1" renewal-period="1" /></rate-limit>`, wantErr: "One of the attributes 'name' and 'id' is required."},
	{name: "rate-limit api bad period", xml: `<rate-limit calls="5" renewal-period="60"><api name="a" calls="1" renewal-period="0" /></rate-limit>`, wantErr: "between 1 and 300"},
	{name: "rate-limit operation with bandwidth", xml: `<rate-limit calls="5" renewal-period="60"><api name="a" calls="1" renewal-period="1"><operation name="o" calls="1" renewal-period="1" bandwidth="3"/></api></rate-limit>`, wantErr: "The attribute 'bandwidth' is not allowed."},

	// rate-limit-by-key
	{
		name: "rate-limit-by-key",
		xml: `<rate-limit-by-key calls="10" renewal-period="60" counter-key="@(context.Request.IpAddress)"
				increment-condition="@(context.Response.StatusCode == 200)" increment-count="2"
				retry-after-header-name="ra" retry-after-variable-name="rv" remaining-calls-header-name="rh"
				remaining-calls-variable-name="rcv" total-calls-header-name="th" />`,
		want: &RateLimitByKey{
			Calls: "10", RenewalPeriod: "60", CounterKey: "@(context.Request.IpAddress)",
			IncrementCondition: "@(context.Response.StatusCode == 200)", IncrementCount: "2",
			RetryAfterHeaderName: "ra", RetryAfterVariableName: "rv", RemainingCallsHeaderName: "rh",
			RemainingCallsVariableName: "rcv", TotalCallsHeaderName: "th",
		},
	},
	{name: "rate-limit-by-key expressions", xml: `<rate-limit-by-key calls="@(10)" renewal-period="@{ return 60; }" counter-key="k" />`, want: &RateLimitByKey{Calls: "@(10)", RenewalPeriod: "@{ return 60; }", CounterKey: "k"}},
	{name: "rate-limit-by-key missing counter-key", xml: `<rate-limit-by-key calls="1" renewal-period="1" />`, wantErr: "The attribute 'counter-key' is required."},
	{name: "rate-limit-by-key bad calls", xml: `<rate-limit-by-key calls="ten" renewal-period="1" counter-key="k" />`, wantErr: "The attribute 'calls' must be an integer not less than 0."},
	{name: "rate-limit-by-key period", xml: `<rate-limit-by-key calls="1" renewal-period="3600" counter-key="k" />`, wantErr: "between 1 and 300"},

	// quota
	{
		name: "quota",
		xml: `<quota calls="10000" bandwidth="40000" renewal-period="3600">
			<api name="echo" calls="100" renewal-period="P1M"><operation id="op" bandwidth="5" renewal-period="0" /></api>
		</quota>`,
		want: &Quota{
			Calls: "10000", Bandwidth: "40000", RenewalPeriod: "3600",
			APIs: []LimitAPI{{Name: "echo", Calls: "100", RenewalPeriod: "P1M", Operations: []LimitOperation{{ID: "op", Bandwidth: "5", RenewalPeriod: "0"}}}},
		},
	},
	{name: "quota bandwidth only, ISO period", xml: `<quota bandwidth="1" renewal-period="P0Y4M0DT0H0M0S" />`, want: &Quota{Bandwidth: "1", RenewalPeriod: "P0Y4M0DT0H0M0S"}},
	{name: "quota neither calls nor bandwidth", xml: `<quota renewal-period="60" />`, wantErr: "At least one of the attributes 'calls' and 'bandwidth' is required."},
	{name: "quota bad period", xml: `<quota calls="1" renewal-period="1h" />`, wantErr: "must be a number of seconds or an ISO 8601 duration"},
	{name: "quota bare P", xml: `<quota calls="1" renewal-period="PT" />`, wantErr: "must be a number of seconds or an ISO 8601 duration"},
	{name: "quota expression", xml: `<quota calls="1" renewal-period="@(60)" />`, wantErr: "Policy expressions are not allowed in the attribute 'renewal-period'."},
	{name: "quota api needs calls or bandwidth", xml: `<quota calls="1" renewal-period="60"><api name="a" renewal-period="60" /></quota>`, wantErr: "At least one of the attributes 'calls' and 'bandwidth' is required."},
	{name: "quota api needs period", xml: `<quota calls="1" renewal-period="60"><api name="a" calls="1" /></quota>`, wantErr: "The attribute 'renewal-period' is required."},

	// quota-by-key
	{
		name: "quota-by-key",
		xml: `<quota-by-key calls="10000" bandwidth="40000" renewal-period="3600" counter-key="@(context.Request.IpAddress)"
				increment-condition="@(context.Response.StatusCode &gt;= 200)" increment-count="1" first-period-start="2024-01-01T00:00:00Z" />`,
		want: &QuotaByKey{
			Calls: "10000", Bandwidth: "40000", RenewalPeriod: "3600", CounterKey: "@(context.Request.IpAddress)",
			IncrementCondition: "@(context.Response.StatusCode >= 200)", IncrementCount: "1", FirstPeriodStart: "2024-01-01T00:00:00Z",
		},
	},
	{name: "quota-by-key infinite", xml: `<quota-by-key calls="1" renewal-period="0" counter-key="k" />`, want: &QuotaByKey{Calls: "1", RenewalPeriod: "0", CounterKey: "k"}},
	{name: "quota-by-key short period", xml: `<quota-by-key calls="1" renewal-period="60" counter-key="k" />`, wantErr: "must be 0 or a number of seconds not less than 300"},
	{name: "quota-by-key bad start", xml: `<quota-by-key calls="1" renewal-period="300" counter-key="k" first-period-start="yesterday" />`, wantErr: "The attribute 'first-period-start' must be a date and time"},
	{name: "quota-by-key expression start", xml: `<quota-by-key calls="1" renewal-period="300" counter-key="k" first-period-start="@(DateTime.Now)" />`, wantErr: "Policy expressions are not allowed in the attribute 'first-period-start'."},
	{name: "quota-by-key missing key", xml: `<quota-by-key calls="1" renewal-period="300" />`, wantErr: "The attribute 'counter-key' is required."},

	// set-header
	{
		name: "set-header",
		xml: `<set-header name="X-Forwarded-User" exists-action="append">
			<value>@(context.User.Id)</value>
			<value>static</value>
		</set-header>`,
		want: &SetHeader{Name: "X-Forwarded-User", ExistsAction: "append", Values: []string{"@(context.User.Id)", "static"}},
	},
	{name: "set-header delete, default action", xml: `<set-header name="X-Powered-By" exists-action="DELETE" /><set-header name="a"><value /></set-header>`},
	{name: "set-header expression name", xml: `<set-header name="@(&quot;X-&quot; + context.Api.Name)"><value>1</value></set-header>`, want: &SetHeader{Name: `@("X-" + context.Api.Name)`, Values: []string{"1"}}},
	{name: "set-header restricted", xml: `<set-header name="Connection" exists-action="override"><value>close</value></set-header>`, wantErr: "Error in element 'set-header' on line 3, column 1: Header name is invalid or restricted from modification"},
	{name: "set-header restricted .NET name", xml: `<set-header name="TransferEncoding"><value>x</value></set-header>`, wantErr: "Header name is invalid or restricted from modification"},
	{name: "set-header invalid name", xml: `<set-header name="X Bad"><value>x</value></set-header>`, wantErr: "Header name is invalid or restricted from modification"},
	{name: "set-header delete server", xml: `<set-header name="server" exists-action="delete" />`, wantErr: "Header 'Server' cannot be removed."},
	{name: "set-header bad action", xml: `<set-header name="a" exists-action="replace" />`, wantErr: "The attribute 'exists-action' must be one of: override, skip, append, delete."},
	{name: "set-header missing name", xml: `<set-header exists-action="override" />`, wantErr: "The attribute 'name' is required."},
	{name: "set-header blank name", xml: `<set-header name="  " />`, wantErr: "The attribute 'name' is required."},
	{name: "set-header wrong child", xml: `<set-header name="a"><values>x</values></set-header>`, wantErr: "The element is not allowed in 'set-header'."},

	// set-query-parameter
	{
		name: "set-query-parameter",
		xml:  `<set-query-parameter name="access_token" exists-action="skip"><value>{{token}}</value></set-query-parameter>`,
		want: &SetQueryParameter{Name: "access_token", ExistsAction: "skip", Values: []string{"{{token}}"}},
	},
	{name: "set-query-parameter any name", xml: `<set-query-parameter name="a b" exists-action="delete" />`, want: &SetQueryParameter{Name: "a b", ExistsAction: "delete"}},
	{name: "set-query-parameter bad action", xml: `<set-query-parameter name="a" exists-action="x" />`, wantErr: "must be one of: override, skip, append, delete"},

	// set-backend-service
	{name: "set-backend-service base-url", xml: `<set-backend-service base-url="wss://backend.example.com/hub" />`, want: &SetBackendService{BaseURL: "wss://backend.example.com/hub"}},
	{name: "set-backend-service backend-id", xml: `<set-backend-service backend-id="pubsub" sf-partition-key="@(1)" />`, want: &SetBackendService{BackendID: "pubsub", SFPartitionKey: "@(1)"}},
	{name: "set-backend-service expression url", xml: `<set-backend-service base-url="@(context.Variables[&quot;u&quot;])" />`, want: &SetBackendService{BaseURL: `@(context.Variables["u"])`}},
	{name: "set-backend-service both", xml: `<set-backend-service base-url="http://a" backend-id="b" />`, wantErr: "Exactly one of the attributes 'base-url' and 'backend-id' must be specified."},
	{name: "set-backend-service neither", xml: `<set-backend-service />`, wantErr: "Exactly one of the attributes 'base-url' and 'backend-id' must be specified."},
	{name: "set-backend-service relative", xml: `<set-backend-service base-url="/api" />`, wantErr: "The attribute 'base-url' must be an absolute URL."},
	{name: "set-backend-service scheme", xml: `<set-backend-service base-url="ftp://a/b" />`, wantErr: "must use the http, https, ws or wss scheme"},

	// return-response
	{
		name: "return-response",
		xml: `<return-response response-variable-name="existing">
			<set-status code="401" reason="Unauthorized" />
			<set-header name="WWW-Authenticate" exists-action="override">
				<value>Bearer error="invalid_token"</value>
			</set-header>
			<set-body template="liquid">  {"error": "{{context.Request.Url}}"} &lt;x&gt;  </set-body>
		</return-response>`,
		want: &ReturnResponse{
			ResponseVariableName: "existing",
			SetStatus:            &SetStatus{Code: "401", Reason: "Unauthorized"},
			SetHeaders:           []SetHeader{{Name: "WWW-Authenticate", ExistsAction: "override", Values: []string{`Bearer error="invalid_token"`}}},
			SetBody:              &SetBody{Template: "liquid", Body: `  {"error": "{{context.Request.Url}}"} <x>  `},
		},
	},
	{name: "return-response empty", xml: `<return-response />`, want: &ReturnResponse{}},
	{name: "return-response bad code", xml: `<return-response><set-status code="600" /></return-response>`, wantErr: "The attribute 'code' must be an integer between 100 and 599."},
	{name: "return-response two statuses", xml: "<return-response>\n<set-status code=\"200\"/>\n<set-status code=\"201\"/>\n</return-response>", wantErr: "The element may appear only once in 'return-response'.", wantLine: 5},
	{name: "return-response restricted header", xml: `<return-response><set-header name="Content-Length"><value>1</value></set-header></return-response>`, wantErr: "Header name is invalid or restricted from modification"},
	{name: "return-response markup body", xml: `<return-response><set-body><a/></set-body></return-response>`, wantErr: "Child elements are not allowed in 'set-body'"},
	{name: "return-response unknown child", xml: `<return-response><set-variable name="a" value="b" /></return-response>`, wantErr: "The element is not allowed in 'return-response'."},

	// choose
	{
		name: "choose",
		xml: `<choose>
			<when condition="@(context.Request.Headers.GetValueOrDefault(&quot;a&quot;,&quot;&quot;) != &quot;&quot;)">
				<set-variable name="v" value="1" />
				<choose><when condition="@(true)"><cors /></when></choose>
			</when>
			<when condition="@(false)" />
			<otherwise>
				<return-response><set-status code="403" reason="Forbidden" /></return-response>
			</otherwise>
		</choose>`,
		want: &Choose{
			Whens: []When{
				{
					Condition: `@(context.Request.Headers.GetValueOrDefault("a","") != "")`,
					Policies: []Policy{
						&SetVariable{Name: "v", Value: "1"},
						&Choose{Whens: []When{{Condition: "@(true)", Policies: []Policy{&Unsupported{Name: "cors", Raw: &Element{Name: "cors"}}}}}},
					},
				},
				{Condition: "@(false)"},
			},
			Otherwise: []Policy{&ReturnResponse{SetStatus: &SetStatus{Code: "403", Reason: "Forbidden"}}},
		},
	},
	{name: "choose without when", xml: `<choose><otherwise /></choose>`, wantErr: "The 'otherwise' element must follow at least one 'when' element."},
	{name: "choose empty", xml: `<choose />`, wantErr: "At least one 'when' element is required."},
	{name: "choose otherwise not last", xml: "<choose>\n<when condition=\"@(true)\"/>\n<otherwise/>\n<when condition=\"@(false)\"/>\n</choose>", wantErr: "The 'otherwise' element must be the last element of 'choose'.", wantLine: 6},
	{name: "choose when without condition", xml: `<choose><when /></choose>`, wantErr: "The attribute 'condition' is required."},
	{name: "choose nested invalid", xml: "<choose>\n<when condition=\"@(true)\">\n<set-header name=\"Connection\"/>\n</when>\n</choose>", wantErr: "Error in element 'set-header' on line 5, column 1", wantLine: 5},
	{name: "choose nested unknown", xml: `<choose><when condition="@(true)"><sleep /></when></choose>`, wantErr: "Error in element 'sleep' on line 3, column 35: Unknown policy."},
	{name: "choose other child", xml: `<choose><if condition="x"/></choose>`, wantErr: "The element is not allowed in 'choose'."},

	// set-variable
	{name: "set-variable", xml: `<set-variable name="isMobile" value="@(context.Request.Headers.GetValueOrDefault(&quot;User-Agent&quot;,&quot;&quot;).Contains(&quot;iPad&quot;))" />`, want: &SetVariable{Name: "isMobile", Value: `@(context.Request.Headers.GetValueOrDefault("User-Agent","").Contains("iPad"))`}},
	{name: "set-variable empty value", xml: `<set-variable name="a" value="" />`, want: &SetVariable{Name: "a"}},
	{name: "set-variable missing value", xml: `<set-variable name="a" />`, wantErr: "The attribute 'value' is required."},
	{name: "set-variable content", xml: `<set-variable name="a" value="b">c</set-variable>`, wantErr: "The element must be empty."},

	// limit-connections (Gatehouse extension)
	{name: "limit-connections defaults", xml: `<limit-connections max="5" />`, want: &LimitConnections{Max: "5"}},
	{
		name: "limit-connections by key evicting",
		xml:  `<limit-connections max="{{max-conns}}" per="key" counter-key="@(context.Request.IpAddress)" action="evict-oldest" id="c" />`,
		want: &LimitConnections{Meta: Meta{ID: "c"}, Max: "{{max-conns}}", Per: "key", CounterKey: "@(context.Request.IpAddress)", Action: "evict-oldest"},
	},
	{name: "limit-connections max missing", xml: `<limit-connections />`, wantErr: "The attribute 'max' is required."},
	{name: "limit-connections max zero", xml: `<limit-connections max="0" />`, wantErr: "must be an integer not less than 1"},
	{name: "limit-connections max expression", xml: `<limit-connections max="@(5)" />`, wantErr: "expression"},
	{name: "limit-connections bad per", xml: `<limit-connections max="1" per="user" />`, wantErr: "The attribute 'per' must be one of"},
	{name: "limit-connections bad action", xml: `<limit-connections max="1" action="drop" />`, wantErr: "The attribute 'action' must be one of"},
	{name: "limit-connections key without counter-key", xml: `<limit-connections max="1" per="key" />`, wantErr: "'counter-key' is required"},
	{name: "limit-connections counter-key without key", xml: `<limit-connections max="1" counter-key="x" />`, wantErr: "only allowed when per is 'key'"},
	{name: "limit-connections content", xml: `<limit-connections max="1"><x/></limit-connections>`, wantErr: "x"},

	// websocket-limits (Gatehouse extension)
	{
		name: "websocket-limits full",
		xml: `<websocket-limits max-message-size="1048576" idle-timeout=" 300 " ping-interval="30" max-lifetime="86400"
				close-on-token-expiry="True" id="ws">
			<message-rate direction="inbound" per="connection" messages="50" period="1" burst="100" />
			<message-rate direction="Outbound" per="SUBSCRIPTION" messages="{{out-rate}}" period="60" />
			<message-rate messages="10" period="3600" burst="10" />
		</websocket-limits>`,
		want: &WebSocketLimits{
			Meta:               Meta{ID: "ws"},
			MaxMessageSize:     "1048576",
			IdleTimeout:        "300",
			PingInterval:       "30",
			MaxLifetime:        "86400",
			CloseOnTokenExpiry: "True",
			Rates: []MessageRate{
				{Direction: "inbound", Per: "connection", Messages: "50", Period: "1", Burst: "100"},
				{Direction: "Outbound", Per: "SUBSCRIPTION", Messages: "{{out-rate}}", Period: "60"},
				{Messages: "10", Period: "3600", Burst: "10"},
			},
		},
	},
	{name: "websocket-limits empty", xml: `<websocket-limits />`, want: &WebSocketLimits{}},
	{name: "websocket-limits zeros turn limits off", xml: `<websocket-limits max-message-size="0" idle-timeout="0" ping-interval="0" max-lifetime="0" close-on-token-expiry="false" />`, want: &WebSocketLimits{MaxMessageSize: "0", IdleTimeout: "0", PingInterval: "0", MaxLifetime: "0", CloseOnTokenExpiry: "false"}},
	{name: "websocket-limits named values", xml: `<websocket-limits max-message-size="{{max}}" ping-interval="{{ping}}" close-on-token-expiry="{{expire}}"><message-rate messages="{{m}}" period="{{p}}" burst="1" direction="{{d}}" /></websocket-limits>`, want: &WebSocketLimits{MaxMessageSize: "{{max}}", PingInterval: "{{ping}}", CloseOnTokenExpiry: "{{expire}}", Rates: []MessageRate{{Direction: "{{d}}", Messages: "{{m}}", Period: "{{p}}", Burst: "1"}}}},
	{name: "websocket-limits ping-interval 5", xml: `<websocket-limits ping-interval="5" />`, want: &WebSocketLimits{PingInterval: "5"}},
	{name: "websocket-limits negative size", xml: `<websocket-limits max-message-size="-1" />`, wantErr: "The attribute 'max-message-size' must be an integer not less than 0."},
	{name: "websocket-limits size not a number", xml: `<websocket-limits max-message-size="1MB" />`, wantErr: "The attribute 'max-message-size' must be an integer not less than 0."},
	{name: "websocket-limits size expression", xml: `<websocket-limits max-message-size="@(1024)" />`, wantErr: "Policy expressions are not allowed in the attribute 'max-message-size'."},
	{name: "websocket-limits negative idle-timeout", xml: `<websocket-limits idle-timeout="-5" />`, wantErr: "The attribute 'idle-timeout' must be an integer between 0 and 2147483647."},
	{name: "websocket-limits fractional idle-timeout", xml: `<websocket-limits idle-timeout="1.5" />`, wantErr: "The attribute 'idle-timeout' must be an integer between 0 and 2147483647."},
	{name: "websocket-limits huge max-lifetime", xml: `<websocket-limits max-lifetime="2147483648" />`, wantErr: "The attribute 'max-lifetime' must be an integer between 0 and 2147483647."},
	{name: "websocket-limits ping-interval too short", xml: `<websocket-limits ping-interval="4" />`, wantErr: "The attribute 'ping-interval' must be 0 or an integer not less than 5."},
	{name: "websocket-limits ping-interval expression", xml: `<websocket-limits ping-interval="@(30)" />`, wantErr: "Policy expressions are not allowed in the attribute 'ping-interval'."},
	{name: "websocket-limits bad bool", xml: `<websocket-limits close-on-token-expiry="yes" />`, wantErr: "The attribute 'close-on-token-expiry' must be one of: true, false."},
	{name: "websocket-limits validate-utf8 and allow-compression", xml: `<websocket-limits validate-utf8="TRUE" allow-compression="false" />`, want: &WebSocketLimits{ValidateUTF8: "TRUE", AllowCompression: "false"}},
	{name: "websocket-limits bad validate-utf8", xml: `<websocket-limits validate-utf8="1" />`, wantErr: "The attribute 'validate-utf8' must be one of: true, false."},
	{name: "websocket-limits bad allow-compression", xml: `<websocket-limits allow-compression="yes" />`, wantErr: "The attribute 'allow-compression' must be one of: true, false."},
	{name: "websocket-limits bool expression", xml: `<websocket-limits close-on-token-expiry="@(true)" />`, wantErr: "Policy expressions are not allowed in the attribute 'close-on-token-expiry'."},
	{name: "websocket-limits unknown attribute", xml: `<websocket-limits max-connections="3" />`, wantErr: "The attribute 'max-connections' is not allowed."},
	{name: "websocket-limits text", xml: `<websocket-limits>10</websocket-limits>`, wantErr: "Text is not allowed in this element."},
	{name: "websocket-limits unknown child", xml: "<websocket-limits>\n<message-size max=\"1\" />\n</websocket-limits>", wantErr: "Error in element 'message-size' on line 4, column 1: The element is not allowed in 'websocket-limits'.", wantLine: 4},
	{name: "message-rate without messages", xml: "<websocket-limits>\n<message-rate period=\"1\" />\n</websocket-limits>", wantErr: "Error in element 'message-rate' on line 4, column 1: The attribute 'messages' is required.", wantLine: 4},
	{name: "message-rate without period", xml: `<websocket-limits><message-rate messages="1" /></websocket-limits>`, wantErr: "The attribute 'period' is required."},
	{name: "message-rate zero messages", xml: `<websocket-limits><message-rate messages="0" period="1" /></websocket-limits>`, wantErr: "The attribute 'messages' must be an integer not less than 1."},
	{name: "message-rate zero period", xml: `<websocket-limits><message-rate messages="1" period="0" /></websocket-limits>`, wantErr: "The attribute 'period' must be an integer between 1 and 3600."},
	{name: "message-rate period over an hour", xml: `<websocket-limits><message-rate messages="1" period="3601" /></websocket-limits>`, wantErr: "The attribute 'period' must be an integer between 1 and 3600."},
	{name: "message-rate burst below messages", xml: "<websocket-limits>\n\n<message-rate messages=\"50\" period=\"1\" burst=\"49\" />\n</websocket-limits>", wantErr: "Error in element 'message-rate' on line 5, column 1: The attribute 'burst' must not be less than 'messages'.", wantLine: 5},
	{name: "message-rate zero burst", xml: `<websocket-limits><message-rate messages="1" period="1" burst="0" /></websocket-limits>`, wantErr: "The attribute 'burst' must be an integer not less than 1."},
	{name: "message-rate bad direction", xml: `<websocket-limits><message-rate direction="in" messages="1" period="1" /></websocket-limits>`, wantErr: "The attribute 'direction' must be one of: inbound, outbound, both."},
	{name: "message-rate bad per", xml: `<websocket-limits><message-rate per="user" messages="1" period="1" /></websocket-limits>`, wantErr: "The attribute 'per' must be one of: connection, subscription."},
	{name: "message-rate expression", xml: `<websocket-limits><message-rate messages="@(5)" period="1" /></websocket-limits>`, wantErr: "Policy expressions are not allowed in the attribute 'messages'."},
	{name: "message-rate direction expression", xml: `<websocket-limits><message-rate direction="@(&quot;both&quot;)" messages="5" period="1" /></websocket-limits>`, wantErr: "Policy expressions are not allowed in the attribute 'direction'."},
	{name: "message-rate unknown attribute", xml: `<websocket-limits><message-rate messages="1" period="1" bytes="10" /></websocket-limits>`, wantErr: "The attribute 'bytes' is not allowed."},
	{name: "message-rate content", xml: `<websocket-limits><message-rate messages="1" period="1">x</message-rate></websocket-limits>`, wantErr: "The element must be empty."},

	// unsupported
	{name: "unsupported keeps content", xml: `<mock-response status-code="200" content-type="application/json" id="m" />`, want: &Unsupported{Meta: Meta{ID: "m"}, Name: "mock-response", Raw: &Element{Name: "mock-response", Attrs: []Attr{{"status-code", "200"}, {"content-type", "application/json"}, {"id", "m"}}}}},
	{name: "unsupported set-body", xml: `<set-body>@{ return "x"; }</set-body>`, want: &Unsupported{Name: "set-body", Raw: &Element{Name: "set-body", Nodes: []Node{{Text: `@{ return "x"; }`}}}}},
}

func TestElements(t *testing.T) {
	t.Parallel()
	for _, tc := range elementTests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc, err := Parse(inbound(tc.xml), FormatXML)
			if tc.wantErr != "" {
				var se *SyntaxError
				if !errors.As(err, &se) {
					t.Fatalf("Parse error = %v, want a *SyntaxError containing %q", err, tc.wantErr)
				}
				if !strings.Contains(se.Error(), tc.wantErr) {
					t.Errorf("Parse error = %q, want it to contain %q", se, tc.wantErr)
				}
				wantLine := tc.wantLine
				if wantLine == 0 {
					wantLine = 3
				}
				if se.Line != wantLine {
					t.Errorf("error line = %d, want %d", se.Line, wantLine)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tc.want != nil {
				if diff := cmp.Diff([]Policy{tc.want}, doc.Inbound.Policies, ignorePos); diff != "" {
					t.Errorf("policy mismatch (-want +got):\n%s", diff)
				}
			}
			if p := doc.Inbound.Policies[0]; p.Position() != (Pos{Line: 3, Column: 1}) {
				t.Errorf("Position() = %+v, want line 3 column 1", p.Position())
			}
		})
	}
}

// TestElementPositions checks the positions recorded on policies and their parts, which the
// gateway uses to report compile errors.
func TestElementPositions(t *testing.T) {
	t.Parallel()
	doc, err := Parse(`<policies>
  <inbound>
    <validate-jwt header-name="a">
      <issuer-signing-keys>
        <key>a2V5</key>
      </issuer-signing-keys>
    </validate-jwt>
    <choose>
      <when condition="@(true)">
        <set-variable name="a" value="b" />
      </when>
    </choose>
  </inbound>
</policies>`, FormatXML)
	if err != nil {
		t.Fatal(err)
	}
	jwt := doc.Inbound.Policies[0].(*ValidateJWT)
	choose := doc.Inbound.Policies[1].(*Choose)
	got := []Pos{doc.Inbound.Pos, jwt.Pos, jwt.IssuerSigningKeys[0].Pos, choose.Pos, choose.Whens[0].Pos, choose.Whens[0].Policies[0].Position()}
	want := []Pos{{2, 3}, {3, 5}, {5, 9}, {8, 5}, {9, 7}, {10, 9}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("positions (-want +got):\n%s", diff)
	}
}
