// Package busauth authorizes connections to the NATS bus through NATS auth callout: the
// server asks management about every client that is not one of management's own users, and
// management admits a gateway node that presents its gateway token, with a short-lived user
// JWT whose permissions cover its own service's subjects only (issue 12). Revoke disconnects
// a gateway's nodes when its keys are regenerated or it is deleted.
package busauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"gatehouse.dev/pkg/bus"
)

// The accounts of the bus: management and the gateway nodes share Account, where the streams
// live and where the callout is served; SystemAccount is the server's, through which Revoke
// disconnects clients. Every deployment's server configuration names them so.
const (
	Account       = "GATEHOUSE"
	SystemAccount = "SYS"
)

// DefaultTTL is how long a node's user JWT lasts when Options.TTL is zero. When it expires the
// server disconnects the node, which reconnects and is authorized again with its token: the
// bound on how long a node keeps the bus after its gateway's keys changed if Revoke did not
// reach it.
const DefaultTTL = 10 * time.Minute

// verifyTimeout bounds the check of a token; the server waits for the answer for its
// authorization timeout.
const verifyTimeout = 5 * time.Second

// queueGroup spreads callouts over management's replicas, each answering once.
const queueGroup = "gatehouse-busauth"

// Identity is who a valid gateway token belongs to.
type Identity struct {
	ServiceID string
	Gateway   string // the gateway resource's name
	// Expiry is the token's; zero means none. A node's JWT never outlives its token.
	Expiry time.Time
}

// ErrInvalidToken is what Verify returns for a token it refuses.
var ErrInvalidToken = errors.New("busauth: invalid gateway token")

// Options configure an Authorizer.
type Options struct {
	// IssuerSeed is the seed of the account nkey that signs the answers ("SA…"); the server
	// configuration names its public key as the callout's issuer.
	IssuerSeed string
	// XKeySeed is the seed of the curve key ("SX…") with which the server encrypts requests
	// (they carry the token) and management encrypts answers; the server configuration names
	// its public key as the callout's xkey. Empty: requests and answers travel in clear, which
	// the server refuses when it is configured with an xkey.
	XKeySeed string
	// Verify checks a gateway token.
	Verify func(ctx context.Context, token string) (Identity, error)
	// TTL is the life of a node's user JWT (DefaultTTL when zero).
	TTL time.Duration
	// System is a connection in SystemAccount, with which Revoke disconnects nodes; nil leaves
	// revoked nodes connected until their JWT expires.
	System *nats.Conn
	Log    *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Authorizer answers the server's authorization requests. It is safe for concurrent use.
type Authorizer struct {
	opt    Options
	issuer nkeys.KeyPair
	xkey   nkeys.KeyPair // nil without encryption
}

// New checks the keys of opt and returns an Authorizer.
func New(opt Options) (*Authorizer, error) {
	issuer, err := nkeys.FromSeed([]byte(opt.IssuerSeed))
	if err != nil {
		return nil, fmt.Errorf("busauth: issuer seed: %w", err)
	}
	if pub, _ := issuer.PublicKey(); !nkeys.IsValidPublicAccountKey(pub) {
		return nil, errors.New("busauth: the issuer seed is not an account seed (SA…)")
	}
	a := &Authorizer{opt: opt, issuer: issuer}
	if opt.XKeySeed != "" {
		if a.xkey, err = nkeys.FromCurveSeed([]byte(opt.XKeySeed)); err != nil {
			return nil, fmt.Errorf("busauth: xkey seed: %w", err)
		}
	}
	if opt.Verify == nil {
		return nil, errors.New("busauth: Verify is required")
	}
	if a.opt.TTL <= 0 {
		a.opt.TTL = DefaultTTL
	}
	if a.opt.Log == nil {
		a.opt.Log = slog.New(slog.DiscardHandler)
	}
	if a.opt.Now == nil {
		a.opt.Now = time.Now
	}
	return a, nil
}

// Serve answers authorization requests arriving on nc, a connection of one of the callout's
// auth users, until the subscription is drained or nc closes. ctx bounds each answer's checks.
func (a *Authorizer) Serve(ctx context.Context, nc *nats.Conn) (*nats.Subscription, error) {
	return nc.QueueSubscribe(server.AuthCalloutSubject, queueGroup, func(m *nats.Msg) { a.answer(ctx, m) })
}

// answer answers one request: a signed authorization response carrying the node's user JWT,
// or an error. A request that cannot be read gets no answer; the server refuses the client
// when its wait ends.
func (a *Authorizer) answer(ctx context.Context, m *nats.Msg) {
	data := m.Data
	serverXKey := m.Header.Get(server.AuthRequestXKeyHeader)
	if a.xkey != nil && serverXKey != "" {
		var err error
		if data, err = a.xkey.Open(data, serverXKey); err != nil {
			a.opt.Log.WarnContext(ctx, "bus authorization request not decryptable", "err", err)
			return
		}
	}
	req, err := jwt.DecodeAuthorizationRequestClaims(string(data))
	if err != nil {
		a.opt.Log.WarnContext(ctx, "bus authorization request not readable", "err", err)
		return
	}
	res := jwt.NewAuthorizationResponseClaims(req.UserNkey)
	res.Audience = req.Server.ID
	user, err := a.authorize(ctx, req)
	if err != nil {
		// The error goes to the server's log and the client sees "Authorization Violation";
		// it never names which part of the token was wrong.
		res.Error = "not authorized"
		a.opt.Log.InfoContext(ctx, "bus connection refused", "client_ip", req.ClientInformation.Host,
			"client_name", req.ClientInformation.Name, "err", err)
	} else {
		res.Jwt = user
	}
	out, err := res.Encode(a.issuer)
	if err != nil {
		a.opt.Log.ErrorContext(ctx, "signing a bus authorization response failed", "err", err)
		return
	}
	reply := []byte(out)
	if a.xkey != nil && serverXKey != "" {
		if reply, err = a.xkey.Seal(reply, serverXKey); err != nil {
			a.opt.Log.ErrorContext(ctx, "encrypting a bus authorization response failed", "err", err)
			return
		}
	}
	if err := m.Respond(reply); err != nil {
		a.opt.Log.WarnContext(ctx, "answering a bus authorization request failed", "err", err)
	}
}

// authorize returns the user JWT of the client of req, or why it is refused.
func (a *Authorizer) authorize(ctx context.Context, req *jwt.AuthorizationRequestClaims) (string, error) {
	token := req.ConnectOptions.Token
	if token == "" {
		return "", errors.New("no gateway token")
	}
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	id, err := a.opt.Verify(ctx, token)
	if err != nil {
		return "", err
	}
	now := a.opt.Now()
	expires := now.Add(a.opt.TTL)
	if !id.Expiry.IsZero() && id.Expiry.Before(expires) {
		expires = id.Expiry
	}
	if !expires.After(now) {
		return "", ErrInvalidToken
	}
	uc := jwt.NewUserClaims(req.UserNkey)
	uc.Audience = Account
	uc.Name = Tag(id.ServiceID, id.Gateway) // the connection's user name on the server
	uc.Expires = expires.Unix()
	uc.Permissions = NodePermissions(id.ServiceID, id.Gateway)
	a.opt.Log.DebugContext(ctx, "bus connection authorized", "service_id", id.ServiceID, "gateway", id.Gateway,
		"client_ip", req.ClientInformation.Host, "expires", expires)
	return uc.Encode(a.issuer)
}

// Tag is the user name of the connections of a gateway's nodes (the user JWT's name, which the
// server's connection monitor lists), so that Revoke finds them. Resource names are case-insensitive (ARM).
func Tag(serviceID, gateway string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(serviceID) + "\x00" + strings.ToLower(gateway)))
	return "gatehouse-gateway:" + hex.EncodeToString(sum[:20])
}

// NodePermissions are what a node of gateway of service serviceID may do on the bus: follow its
// service's change stream, publish its own heartbeats and its service's usage, answer
// live-connection requests for its service, share its service's fleet counters, and read
// replies under its inbox prefix. Everything else is denied, the configuration stream's
// subjects and other services' counters above all.
func NodePermissions(serviceID, gateway string) jwt.Permissions {
	var p jwt.Permissions
	// The change stream, through an ordered consumer (configsync): created with the service's
	// subject as its only filter, which the API subject carries, so no other filter passes.
	// Pulls, information and deletion address the consumer by its name, random per
	// consumer and not listable (the stream and consumer lists are denied).
	cfg := "$JS.API.CONSUMER.%s." + bus.ConfigStream
	p.Pub.Allow.Add(
		fmt.Sprintf(cfg, "CREATE")+".*."+bus.ConfigSubject(serviceID),
		fmt.Sprintf(cfg, "MSG.NEXT")+".*",
		fmt.Sprintf(cfg, "INFO")+".*",
		fmt.Sprintf(cfg, "DELETE")+".*",
		bus.HeartbeatSubject(serviceID, gateway),
		bus.UsageSubject(serviceID),
		bus.ConnectionLogSubject(serviceID, gateway),
		bus.EvictSubjects(serviceID),
		// The account's JetStream limits and usage, which a KV bucket with per-message TTLs
		// checks the server's API level with.
		"$JS.API.INFO",
	)
	addCounterPermissions(&p, serviceID)
	p.Sub.Allow.Add(
		bus.NodeInboxPrefix(serviceID, gateway)+".>",
		bus.ConnectionsSubject(serviceID),
		bus.EvictSubjects(serviceID),
	)
	// Replies to requests the node received (live connections, evictions) and to JetStream's
	// flow control.
	p.Resp = &jwt.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
	return p
}

// addCounterPermissions lets a node share the fleet counters of service serviceID
// (clustercount) and no other service's: every key of a service is under its token
// (bus.CounterKeys), and each JetStream API call the node makes names the key or filter in its
// subject, where the permission sees it. What the KV client calls, and so what is allowed:
// binding a bucket (STREAM.INFO, and $JS.API.INFO above), creating a missing one
// (STREAM.CREATE; a bucket that exists is never updated), a key's last value
// (DIRECT.GET.<stream>.<subject>, which refuses a body asking for another subject), writes
// (publishing on the key's subject: put, create, update with the expected revision, delete,
// purge), and, in the connections bucket only, watching the service's keys through an ordered
// push consumer created with the filter in its subject (the server refuses a body whose filter
// differs) and deleted when the watch stops. Denied: STREAM.MSG.GET and DIRECT.GET.<stream>
// (their body names any subject), STREAM.UPDATE, consumers without a filter or with another
// service's, and pulls and information of consumers by name.
func addCounterPermissions(p *jwt.Permissions, serviceID string) {
	for _, b := range []string{bus.RatesBucket, bus.QuotasBucket, bus.ConnectionsBucket} {
		stream, keys := counterSubjects(b, serviceID)
		p.Pub.Allow.Add(
			keys,
			"$JS.API.DIRECT.GET."+stream+"."+keys,
			"$JS.API.STREAM.INFO."+stream,
			"$JS.API.STREAM.CREATE."+stream,
		)
	}
	stream, keys := counterSubjects(bus.ConnectionsBucket, serviceID)
	p.Pub.Allow.Add(
		"$JS.API.CONSUMER.CREATE."+stream+".*."+keys,
		"$JS.API.CONSUMER.DELETE."+stream+".*",
	)
}

// counterSubjects are the stream of a counter bucket and the subject filter of service
// serviceID's keys in it.
func counterSubjects(bucket, serviceID string) (stream, keys string) {
	return "KV_" + bucket, "$KV." + bucket + "." + bus.CounterKeys(serviceID)
}
