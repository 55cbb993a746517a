package busauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// The system requests Revoke makes (nats-server's events.go).
const (
	connzPingSubject = "$SYS.REQ.SERVER.PING.CONNZ"
	kickSubjectT     = "$SYS.REQ.SERVER.%s.KICK"
)

// Timings of Revoke: every server of a cluster answers the connection listing, so Revoke
// collects answers until none came for listQuiet (listMax at most).
const (
	listQuiet = 200 * time.Millisecond
	listMax   = 2 * time.Second
	// connzLimit is the most connections one server lists per answer.
	connzLimit = 1 << 16
)

// ErrNoSystem means Revoke has no system connection: revoked nodes keep their connections
// until their JWT expires (Options.TTL).
var ErrNoSystem = errors.New("busauth: no system account connection; revoked nodes stay connected until their credentials expire")

// Revoke disconnects every node connection of gateway of service serviceID, on every server
// of the cluster, and returns how many it disconnected. The caller has already made the
// gateway's tokens invalid (keys regenerated, gateway deleted), so the nodes' reconnections are
// refused.
func (a *Authorizer) Revoke(ctx context.Context, serviceID, gateway string) (int, error) {
	sys := a.opt.System
	if sys == nil {
		return 0, ErrNoSystem
	}
	tag := Tag(serviceID, gateway)
	conns, err := listConnections(ctx, sys, tag)
	if err != nil {
		return 0, err
	}
	kicked := 0
	var errs []error
	for _, c := range conns {
		if c.user != tag {
			continue
		}
		if err := kick(ctx, sys, c.server, c.cid); err != nil {
			errs = append(errs, err)
			continue
		}
		kicked++
	}
	return kicked, errors.Join(errs...)
}

// conn is a client connection on a server.
type conn struct {
	server string
	cid    uint64
	user   string
}

// listConnections lists the open client connections of user in Account on every server.
func listConnections(ctx context.Context, sys *nats.Conn, user string) ([]conn, error) {
	body, err := json.Marshal(server.ConnzEventOptions{ConnzOptions: server.ConnzOptions{
		Account: Account, User: user, Username: true, State: server.ConnOpen, Limit: connzLimit}})
	if err != nil {
		return nil, err
	}
	inbox := sys.NewRespInbox()
	sub, err := sys.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := sys.PublishRequest(connzPingSubject, inbox, body); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, listMax)
	defer cancel()
	var out []conn
	wait := listMax
	for {
		mctx, mcancel := context.WithTimeout(ctx, wait)
		m, err := sub.NextMsgWithContext(mctx)
		mcancel()
		if err != nil {
			if len(out) == 0 && wait == listMax {
				return nil, fmt.Errorf("busauth: listing connections: no server answered: %w", err)
			}
			return out, nil
		}
		wait = listQuiet
		var res struct {
			Server *server.ServerInfo `json:"server"`
			Data   *server.Connz      `json:"data"`
			Error  *server.ApiError   `json:"error"`
		}
		if err := json.Unmarshal(m.Data, &res); err != nil {
			return nil, fmt.Errorf("busauth: listing connections: %w", err)
		}
		if res.Error != nil || res.Server == nil || res.Data == nil {
			return nil, fmt.Errorf("busauth: listing connections: %v", res.Error)
		}
		for _, c := range res.Data.Conns {
			out = append(out, conn{server: res.Server.ID, cid: c.Cid, user: c.AuthorizedUser})
		}
	}
}

// kick disconnects client cid of server id.
func kick(ctx context.Context, sys *nats.Conn, id string, cid uint64) error {
	body, err := json.Marshal(server.KickClientReq{CID: cid})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, listMax)
	defer cancel()
	m, err := sys.RequestWithContext(ctx, fmt.Sprintf(kickSubjectT, id), body)
	if err != nil {
		return fmt.Errorf("busauth: disconnecting client %d on %s: %w", cid, id, err)
	}
	var res struct {
		Error *server.ApiError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &res); err != nil {
		return fmt.Errorf("busauth: disconnecting client %d on %s: %w", cid, id, err)
	}
	if res.Error != nil {
		return fmt.Errorf("busauth: disconnecting client %d on %s: %s", cid, id, res.Error.Description)
	}
	return nil
}
