package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
)

// ConnectionsWait bounds how long a live-connection request waits for the nodes' answers.
const ConnectionsWait = time.Second

// ErrUnreachable is returned when a live-connection request cannot be sent to the gateway nodes
// or their answers cannot be read (NATS is away): the caller should try again later.
var ErrUnreachable = errors.New("fleet: gateway nodes unreachable")

// Connections lists and closes the WebSocket sessions open on the gateway nodes, by
// request/reply on bus.ConnectionsSubject. It asks only the nodes its Registry knows as live.
// A nil *Connections, or one without a NATS connection, asks no node. It is safe for
// concurrent use.
type Connections struct {
	nc     *nats.Conn
	reg    *Registry
	signer func() *configwire.Signer
	log    *slog.Logger
}

// NewConnections returns a Connections asking the live nodes of reg over nc, its requests
// signed by the Signer signer returns (nodes answer only those); replies count only when
// authenticated with the node key of the gateway reg knows the answering node by. A nil log
// discards logs.
func NewConnections(nc *nats.Conn, reg *Registry, signer func() *configwire.Signer, log *slog.Logger) *Connections {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Connections{nc: nc, reg: reg, signer: signer, log: log}
}

// List returns the answers of the nodes of the service with internal id serviceID to a list
// request for the sessions f selects. A node that answers late or refuses is left out.
func (c *Connections) List(ctx context.Context, serviceID string, f configwire.ConnectionFilter) ([]configwire.ConnectionsReply, error) {
	return c.ask(ctx, serviceID, configwire.ConnectionsRequest{Op: configwire.ConnectionsList, Filter: f})
}

// Close asks the nodes of the service to close the sessions f selects with 1008 "closed by an
// administrator" (configwire.AdminCloseCode) and returns how many they closed. When the request
// fails part-way, the count so far comes with the error.
func (c *Connections) Close(ctx context.Context, serviceID string, f configwire.ConnectionFilter) (int, error) {
	replies, err := c.ask(ctx, serviceID, configwire.ConnectionsRequest{Op: configwire.ConnectionsClose, Filter: f,
		Code: configwire.AdminCloseCode, Reason: configwire.AdminCloseReason})
	n := 0
	for _, r := range replies {
		n += r.Closed
	}
	return n, err
}

// ask sends req to every node of the service on bus.ConnectionsSubject and gathers the answers
// until each live node the Registry knows (only the filter's node, if it names one) answered or
// ConnectionsWait passed; a node that answers late is left out. Without a NATS connection or a
// live node no node is asked. A node's refusal is logged and left out. A failure to send or
// receive wraps ErrUnreachable.
func (c *Connections) ask(ctx context.Context, serviceID string, req configwire.ConnectionsRequest) ([]configwire.ConnectionsReply, error) {
	if c == nil || c.nc == nil {
		return nil, nil
	}
	// waiting maps each node asked to its gateway, whose node key its reply must carry.
	waiting := map[string]string{}
	for _, n := range c.reg.Nodes(serviceID, "") {
		if n.Live && (req.Filter.Node == "" || n.NodeID == req.Filter.Node) {
			waiting[n.NodeID] = n.Gateway
		}
	}
	if len(waiting) == 0 {
		return nil, nil
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	unreachable := func(err error) error {
		c.log.WarnContext(ctx, "live-connection request failed", "op", req.Op, "err", err)
		return fmt.Errorf("%w: live-connection request %s: %w", ErrUnreachable, req.Op, err)
	}
	inbox := c.nc.NewRespInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, unreachable(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	subject := bus.ConnectionsSubject(serviceID)
	msg := &nats.Msg{Subject: subject, Reply: inbox, Data: body, Header: nats.Header{}}
	msg.Header.Set(bus.HeaderSignature, c.signer().SignRequest(subject, inbox, body))
	if err := c.nc.PublishMsg(msg); err != nil {
		return nil, unreachable(err)
	}
	wctx, cancel := context.WithTimeout(ctx, ConnectionsWait)
	defer cancel()
	var replies []configwire.ConnectionsReply
	answered := map[string]bool{}
	for len(waiting) > 0 {
		m, err := sub.NextMsgWithContext(wctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
				return replies, unreachable(err)
			}
			c.log.WarnContext(ctx, "gateway nodes did not answer a live-connection request in time", "op", req.Op,
				"missing", len(waiting), "wait", ConnectionsWait)
			break
		}
		var r configwire.ConnectionsReply
		if err := json.Unmarshal(m.Data, &r); err != nil || r.Node == "" || answered[r.Node] {
			continue
		}
		gateway, asked := waiting[r.Node]
		if !asked {
			continue
		}
		if err := c.reg.authenticate(m, serviceID, gateway); err != nil {
			c.reg.reject("reply", err)
			c.log.WarnContext(ctx, "unauthenticated live-connection reply dropped", "node", r.Node, "op", req.Op, "err", err)
			continue
		}
		answered[r.Node] = true
		delete(waiting, r.Node)
		switch {
		case r.Error != "":
			c.log.WarnContext(ctx, "a gateway node refused a live-connection request", "node", r.Node, "op", req.Op, "err", r.Error)
		case r.Truncated:
			c.log.InfoContext(ctx, "a gateway node listed only part of its connections", "node", r.Node,
				"listed", len(r.Connections))
			fallthrough
		default:
			replies = append(replies, r)
		}
	}
	return replies, nil
}
