// Package configwire is the wire model of configuration between management and gateways: the
// snapshot a gateway fetches at start and the revisioned changes it then receives over NATS.
// Plaintext subscription keys never appear here (only SHA-256 hashes), and secret named values
// travel only in snapshots fetched over the authenticated management API, never in changes.
package configwire

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// Entity kinds, as the resource collection names of the ARM API.
const (
	KindAPI          = "apis"
	KindOperation    = "operations"
	KindPolicy       = "policies"
	KindProduct      = "products"
	KindProductAPI   = "productApis"
	KindUser         = "users"
	KindSubscription = "subscriptions"
	KindGateway      = "gateways"
	KindGatewayAPI   = "gatewayApis"
	KindNamedValue   = "namedValues"
	// KindCertificate is a certificate; its chain and key (PEM) travel as SecretValue in
	// snapshots only.
	KindCertificate = "certificates"
	// KindGatewayHostname and KindGatewayCA are a gateway's hostname configurations and
	// certificate authorities; their parent is "gateways/{id}".
	KindGatewayHostname = "gatewayHostnameConfigurations"
	KindGatewayCA       = "gatewayCertificateAuthorities"
	KindBackend         = "backends"
	// KindPolicyFragment is a policy fragment: top-level, its properties hold the value and format.
	KindPolicyFragment = "policyFragments"
	// KindAPIVersionSet is an API version set: top-level, its properties name the versioning
	// scheme (Segment, Query, Header) and the query parameter or header carrying the version.
	KindAPIVersionSet = "apiVersionSets"
	// KindAPIRelease is a release of an API revision; its parent is "apis/{id}". Gateways
	// need none: the revision it made current is in the API entities.
	KindAPIRelease = "apiReleases"
	// KindLogger is a logger: top-level. An otlp logger's credentials (its collector's
	// endpoint and headers, JSON) travel as SecretValue in snapshots only; other loggers carry
	// no credentials to nodes (pkg/diagnostic).
	KindLogger = "loggers"
	// KindDiagnostic is a diagnostic: top-level for all APIs, or with parent "apis/{id}".
	KindDiagnostic = "diagnostics"
	// KindPortalSetting and KindIdentityProvider are the developer portal's settings (signin,
	// signup, delegation) and identity providers: management's records, which gateways skip.
	// Their secrets (validation key, client secret) never travel.
	KindPortalSetting    = "portalSettings"
	KindIdentityProvider = "identityProviders"
	// The tags and groups of issue 15 and their assignments: portal metadata that no gateway
	// uses. KindTag and KindGroup are top-level; the assignments are named by the tag, user or
	// group they assign, below "apis/{id}", "apis/{id}/operations/{op}", "products/{id}" or
	// "groups/{id}"; a tag description's parent is "apis/{id}".
	KindTag            = "tags"
	KindAPITag         = "apiTags"
	KindOperationTag   = "operationTags"
	KindProductTag     = "productTags"
	KindTagDescription = "apiTagDescriptions"
	KindGroup          = "groups"
	KindGroupUser      = "groupUsers"
	KindProductGroup   = "productGroups"
	// KindAPISchema is a schema of an API (apis/{id}/schemas); gateways need none.
	KindAPISchema = "apiSchemas"
)

// Op is what a change does to an entity.
type Op string

// Ops.
const (
	OpPut    Op = "put"
	OpDelete Op = "delete"
	// OpDeleteService removes the whole service; the entity of its item is empty.
	OpDeleteService Op = "deleteService"
	// OpResync stands for a change too large to send: gateways fetch a fresh snapshot.
	OpResync Op = "resync"
)

// MaxChangeBytes bounds a published change; a larger one is sent as a single OpResync item so
// it fits in a NATS message (1 MiB by default).
const MaxChangeBytes = 512 << 10

// Entity is one configuration entity. Parent is the resource path of its parent ("" at the top,
// "apis/echo", "products/starter"); Name is its ARM name; Properties are its ARM properties
// without secrets.
type Entity struct {
	Kind       string          `json:"kind"`
	Parent     string          `json:"parent,omitempty"`
	Name       string          `json:"name"`
	Properties json.RawMessage `json:"properties,omitempty"`
	// KeyHashes are KeyHash of a subscription's primary and secondary keys.
	KeyHashes []string `json:"keyHashes,omitempty"`
	// Secret is set on a secret named value and on a certificate. The value (for a
	// certificate, its chain and private key in PEM) is in SecretValue in snapshots and absent
	// from changes: a gateway refetches its snapshot to learn a changed secret.
	Secret      bool   `json:"secret,omitempty"`
	SecretValue string `json:"secretValue,omitempty"`
	// Revision is the service revision that last wrote the entity.
	Revision int64 `json:"revision"`
}

// Item is one entity change of a revision.
type Item struct {
	Op     Op     `json:"op"`
	Entity Entity `json:"entity"`
}

// Change is everything one committed write did to a service's configuration. Revisions of a
// service are consecutive: a gateway that sees revision R+2 after R has missed one and must
// fetch a snapshot.
type Change struct {
	ServiceID string `json:"serviceId"`
	Revision  int64  `json:"revision"`
	Items     []Item `json:"items"`
}

// NATSInfo tells a gateway where the change stream of its service is.
type NATSInfo struct {
	URLs    []string `json:"urls,omitempty"`
	Stream  string   `json:"stream"`
	Subject string   `json:"subject"`
	// InboxPrefix is the prefix of the node's reply subjects (bus.NodeInboxPrefix): the bus
	// lets a node subscribe to replies under it only. Empty on a bus without authorization.
	InboxPrefix string `json:"inboxPrefix,omitempty"`
}

// Snapshot is the complete configuration a gateway node needs at Revision: the APIs linked to
// its gateway resource with their operations and policies, the products containing them, their
// subscriptions, the global policy, the named values, and the gateway's hostname
// configurations and certificate authorities with the certificates they name.
type Snapshot struct {
	ServiceID string   `json:"serviceId"`
	Service   string   `json:"service"`
	Gateway   string   `json:"gateway"`
	Revision  int64    `json:"revision"`
	NATS      NATSInfo `json:"nats"`
	// SigningKeys are the public keys of management's signing keys: a node accepts a change
	// only when it carries a signature by one of them. Learned with the snapshot, over the
	// authenticated management API, and replaced by every later snapshot (key rotation).
	SigningKeys []VerifyKey `json:"signingKeys,omitempty"`
	Entities    []Entity    `json:"entities"`
	// Seal is the signature of a snapshot stream as ReadSnapshot read it; nil when the
	// snapshot was JSON or not sealed. Never encoded.
	Seal *Seal `json:"-"`
}

// Seal is a snapshot stream's signature: by the key KeyID, over the snapshot's service id,
// revision, and Digest, the SHA-256 of the stream's bytes before the seal.
type Seal struct {
	KeyID     string
	Signature []byte
	Digest    [32]byte
}

// KeyHash is the form in which a subscription key reaches a gateway: hex SHA-256 of the key.
// Keys are 256-bit random strings when generated, so an unsalted hash is safe to share.
func KeyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}
