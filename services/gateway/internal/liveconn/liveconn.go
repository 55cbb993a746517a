// Package liveconn answers management's live-connection requests on a gateway node: it lists
// the node's open WebSocket sessions and closes those an administrator names, over core NATS
// on bus.ConnectionsSubject.
package liveconn

import (
	"cmp"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"gatehouse.dev/gateway/internal/traffic"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
)

// Options configure a Responder.
type Options struct {
	// NodeID is the id the node reports in its heartbeats; required.
	NodeID string
	// Gateway returns the name of the gateway resource the node serves now; optional.
	Gateway func() string
	Log     *slog.Logger
	// Verifier returns the Verifier of management's signing keys (configsync.Syncer.Verifier);
	// required. A request it does not verify is dropped unanswered: anyone on the bus could
	// otherwise list the node's sessions or close them.
	Verifier func() *configwire.Verifier
	// Key returns the node key replies are authenticated with (configsync.Syncer.NodeKey);
	// required. Without one the node does not answer.
	Key func() (configwire.NodeKey, bool)
	// Dropped, if set, is told the reason ("unsigned" or "forged") of each request dropped.
	Dropped func(reason string)
}

// Responder answers live-connection requests from the sessions of a traffic.Registry. It is
// safe for concurrent use.
type Responder struct {
	reg *traffic.Registry
	opt Options
}

// New returns a Responder over reg.
func New(reg *traffic.Registry, opt Options) *Responder {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	return &Responder{reg: reg, opt: opt}
}

// Subscribe answers the requests for the service serviceID (its internal id) that arrive on
// nc, until the returned subscription is unsubscribed or nc closes. When Subscribe returns
// while nc is connected, the server knows the subscription.
func (r *Responder) Subscribe(nc *nats.Conn, serviceID string) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(bus.ConnectionsSubject(serviceID), func(m *nats.Msg) { r.receive(nc, m) })
	if err != nil {
		return nil, err
	}
	// A disconnected nc re-sends the subscription when it reconnects: not an error.
	_ = nc.FlushTimeout(5 * time.Second)
	return sub, nil
}

// receive answers one request, cutting the list until the reply fits a NATS message.
func (r *Responder) receive(nc *nats.Conn, m *nats.Msg) {
	if m.Reply == "" {
		return // nobody to answer
	}
	if err := r.opt.Verifier().VerifyRequest(m.Subject, m.Reply, m.Data, m.Header.Get(bus.HeaderSignature)); err != nil {
		reason := "forged"
		if errors.Is(err, configwire.ErrUnsigned) {
			reason = "unsigned"
		}
		if r.opt.Dropped != nil {
			r.opt.Dropped(reason)
		}
		r.opt.Log.Warn("live-connection request dropped", "reason", reason, "subject", m.Subject, "err", err)
		return
	}
	key, ok := r.opt.Key()
	if !ok {
		return // management would not take the answer
	}
	var req configwire.ConnectionsRequest
	var reply configwire.ConnectionsReply
	if err := json.Unmarshal(m.Data, &req); err != nil {
		reply = r.refuse("undecodable request")
	} else {
		reply = r.Answer(req)
	}
	data, err := json.Marshal(reply)
	for err == nil && int64(len(data)) > nc.MaxPayload() && len(reply.Connections) > 0 {
		reply.Connections, reply.Truncated = reply.Connections[:len(reply.Connections)/2], true
		data, err = json.Marshal(reply)
	}
	if err != nil {
		r.opt.Log.Warn("encoding a connections reply failed", "err", err)
		return
	}
	resp := &nats.Msg{Subject: m.Reply, Data: data, Header: nats.Header{}}
	resp.Header.Set(bus.HeaderNodeAuth, key.Sign(m.Reply, data))
	if err := nc.PublishMsg(resp); err != nil {
		r.opt.Log.Warn("answering a connections request failed", "err", err)
	}
}

func (r *Responder) refuse(msg string) configwire.ConnectionsReply {
	rep := r.reply()
	rep.Error = msg
	return rep
}

func (r *Responder) reply() configwire.ConnectionsReply {
	rep := configwire.ConnectionsReply{Node: r.opt.NodeID}
	if r.opt.Gateway != nil {
		rep.Gateway = r.opt.Gateway()
	}
	return rep
}

// Answer carries out req on this node: it lists the matching sessions, oldest first, or
// closes them with req's code and reason. A request whose filter names another node matches
// nothing here; an invalid request is refused with Error set and changes nothing.
func (r *Responder) Answer(req configwire.ConnectionsRequest) configwire.ConnectionsReply {
	if err := req.Validate(); err != nil {
		return r.refuse(err.Error())
	}
	rep := r.reply()
	if req.Filter.Node != "" && req.Filter.Node != r.opt.NodeID {
		return rep
	}
	match := func(c traffic.ConnInfo) bool { return matches(req.Filter, c) }
	// A session that is closing already is on its way out: neither listed nor closed again.
	open := slices.DeleteFunc(r.reg.List(match), func(o traffic.Open) bool { return o.Stats.ClosedBy != "" })
	slices.SortFunc(open, func(a, b traffic.Open) int {
		return cmp.Or(a.Since.Compare(b.Since), strings.Compare(a.RequestID, b.RequestID))
	})
	if len(open) > configwire.MaxListedConnections {
		open, rep.Truncated = open[:configwire.MaxListedConnections], true
	}
	rep.Connections = make([]configwire.Connection, len(open))
	for i, o := range open {
		rep.Connections[i] = describe(o)
	}
	if req.Op == configwire.ConnectionsClose {
		rep.Closed = r.reg.CloseWhere(match, req.Code, req.Reason)
		for _, c := range rep.Connections {
			r.opt.Log.Info("websocket closed by an administrator", "correlation_id", c.ID, "api", c.API,
				"subscription", c.Subscription, "close_code", int(req.Code), "reason", req.Reason)
		}
	}
	return rep
}

// matches reports whether the session described by c passes f (its node already matched).
func matches(f configwire.ConnectionFilter, c traffic.ConnInfo) bool {
	return (f.ID == "" || f.ID == c.RequestID) &&
		(f.API == "" || strings.EqualFold(f.API, c.API)) &&
		(f.Subscription == "" || strings.EqualFold(f.Subscription, c.Subscription))
}

// describe is what a reply tells of a session: never its key or counters.
func describe(o traffic.Open) configwire.Connection {
	c := configwire.Connection{ID: o.RequestID, API: o.API, Subscription: o.Subscription, Product: o.Product,
		Since: o.Since.UTC(), MessagesIn: o.Stats.MessagesIn, MessagesOut: o.Stats.MessagesOut,
		BytesIn: o.Stats.BytesIn, BytesOut: o.Stats.BytesOut}
	if o.ClientIP.IsValid() {
		c.ClientIP = o.ClientIP.String()
	}
	return c
}
