package api

import (
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
)

// gatewayConfig writes the snapshot as it is read from the database: a million subscriptions
// are never held in memory, and the node loads them while they are still being read. A stream
// is sealed with management's active signing key; the header lists the keys nodes verify
// changes with, and the response carries the node key of the caller's gateway.
func (s *Server) gatewayConfig(c echo.Context) error {
	ctx := c.Request().Context()
	node, err := s.cat.VerifyGatewayToken(ctx, c.Request().Header.Get(echo.HeaderAuthorization))
	if err != nil {
		return err
	}
	format, contentType := configwire.SnapshotJSON, echo.MIMEApplicationJSON
	if acceptsStream(c.Request().Header.Values(echo.HeaderAccept)) {
		format, contentType = configwire.SnapshotStream, configwire.SnapshotStreamType
	}
	res := c.Response()
	var w *configwire.SnapshotWriter
	err = s.cat.Snapshot(ctx, node, format == configwire.SnapshotStream, func(h configwire.Snapshot) (catalog.SnapshotSink, error) {
		h.NATS = configwire.NATSInfo{URLs: s.cfg.NATSURLs, Stream: bus.ConfigStream, Subject: bus.ConfigSubject(h.ServiceID),
			InboxPrefix: bus.NodeInboxPrefix(h.ServiceID, node.Gateway.Name)}
		h.SigningKeys = s.cfg.Keys.VerifyKeys()
		res.Header().Set(echo.HeaderContentType, contentType)
		// The node key is a secret of this gateway's nodes: it goes in a header, never into
		// the snapshot a node caches. It is bound to the gateway key that signed the token, so
		// regenerating that key invalidates it.
		res.Header().Set(configwire.NodeKeyHeader, s.cfg.Keys.NodeKey(h.ServiceID, h.Gateway, node.KeyBinding).String())
		res.Header().Set("Cache-Control", "no-store")
		res.Header().Add(echo.HeaderVary, echo.HeaderAccept)
		var err error
		w, err = configwire.NewSnapshotWriter(res, format, h)
		if err == nil {
			w.Sign(s.cfg.Keys.Signer())
		}
		return w, err
	})
	if err == nil {
		err = w.Close()
	}
	if err != nil && res.Committed {
		// The node has a 200 and part of the snapshot. Cutting the response short is the one
		// way left to tell it: it then reads an incomplete snapshot, which it refuses.
		s.log.WarnContext(ctx, "the snapshot failed after its first bytes; aborting the response", "gateway", node.Gateway.Name, "err", err)
		panic(http.ErrAbortHandler)
	}
	return err
}

// acceptsStream reports whether Accept header values name the snapshot stream media type
// (with a quality above zero).
func acceptsStream(accept []string) bool {
	for _, v := range accept {
		for part := range strings.SplitSeq(v, ",") {
			t, params, err := mime.ParseMediaType(part)
			if err != nil || !strings.EqualFold(t, configwire.SnapshotStreamType) {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err != nil || f <= 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}
