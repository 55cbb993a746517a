package api

import (
	"time"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/reports"
)

// reportRoutes registers APIM's usage reports of a service.
func (s *Server) reportRoutes(g *echo.Group) {
	g.GET(ServicePrefix+"/reports/byApi", s.report(reports.ByAPI, false))
	g.GET(ServicePrefix+"/reports/bySubscription", s.report(reports.BySubscription, false))
	g.GET(ServicePrefix+"/reports/byTime", s.report(reports.ByTime, false))
	g.GET(ServicePrefix+"/reports/byProduct", s.report(reports.ByProduct, false))
	// Gatehouse's extension: usage by the gateway node that counted it.
	g.GET(ServicePrefix+"/reports/byNode", s.report(reports.ByNode, false))
}

// reportRecord is APIM's ReportRecordContract with the fields WebSocket usage fills, and the
// WebSocket counts beside them. A handshake is a call: callCountSuccess counts 101s,
// callCountBlocked 401, 403 and 429, callCountFailed 5xx, callCountOther the rest; bandwidth
// is the payload bytes both ways. Refusals counts the handshakes not answered 101 by
// "<status> <reason>" (docs/observability.md).
type reportRecord struct {
	Name           string     `json:"name,omitempty"`
	Timestamp      *time.Time `json:"timestamp,omitempty"`
	Interval       string     `json:"interval,omitempty"`
	APIID          string     `json:"apiId,omitempty"`
	SubscriptionID string     `json:"subscriptionId,omitempty"`
	ProductID      string     `json:"productId,omitempty"`
	NodeID         string     `json:"nodeId,omitempty"`

	CallCountSuccess int64 `json:"callCountSuccess"`
	CallCountBlocked int64 `json:"callCountBlocked"`
	CallCountFailed  int64 `json:"callCountFailed"`
	CallCountOther   int64 `json:"callCountOther"`
	CallCountTotal   int64 `json:"callCountTotal"`
	Bandwidth        int64 `json:"bandwidth"`

	HandshakesSuccess  int64            `json:"handshakesSuccess"`
	HandshakesRejected int64            `json:"handshakesRejected"`
	MessagesIn         int64            `json:"messagesIn"`
	MessagesOut        int64            `json:"messagesOut"`
	BytesIn            int64            `json:"bytesIn"`
	BytesOut           int64            `json:"bytesOut"`
	ConnectionSeconds  float64          `json:"connectionSeconds"`
	ConnectionsOpened  int64            `json:"connectionsOpened"`
	ConnectionsClosed  int64            `json:"connectionsClosed"`
	Refusals           map[string]int64 `json:"refusals"`
}

// report serves one report: $filter (required; timestamp bounds, apiId, subscriptionId,
// nodeId), $top, $skip, $orderby, and for byTime interval (required). For a consumer (own)
// it counts the usage of the consumer's own subscriptions only.
func (s *Server) report(by reports.GroupBy, own bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, filter, err := page(c)
		if err != nil {
			return err
		}
		q := reports.Query{By: by, Top: p.Top, Skip: p.Skip}
		if q.Filter, err = reports.ParseFilter(filter); err != nil {
			return err
		}
		if q.OrderBy, q.Desc, err = reports.ParseOrderBy(c.QueryParam("$orderby")); err != nil {
			return err
		}
		if by == reports.ByTime {
			if q.Interval, err = reports.ParseInterval(c.QueryParam("interval")); err != nil {
				return err
			}
		}
		serviceID, subs, err := s.usageScope(c, own)
		if err != nil {
			return err
		}
		q.Subscriptions = subs
		var rows []reports.Row
		total := 0
		if s.cfg.Reports != nil {
			if rows, total, err = s.cfg.Reports.Report(c.Request().Context(), serviceID, q); err != nil {
				return err
			}
		}
		items := make([]any, 0, len(rows))
		for _, r := range rows {
			items = append(items, recordOf(by, q.Interval, r))
		}
		return s.writeList(c, catalog.Page{Top: p.Top, Skip: p.Skip}, items, total)
	}
}

func recordOf(by reports.GroupBy, interval time.Duration, r reports.Row) reportRecord {
	rec := reportRecord{
		CallCountSuccess: r.HandshakesSuccess, CallCountBlocked: r.HandshakesBlocked,
		CallCountFailed: r.HandshakesFailed, CallCountOther: r.HandshakesOther,
		CallCountTotal:    r.HandshakesSuccess + r.HandshakesBlocked + r.HandshakesFailed + r.HandshakesOther,
		Bandwidth:         r.BytesIn + r.BytesOut,
		HandshakesSuccess: r.HandshakesSuccess, HandshakesRejected: r.HandshakesBlocked + r.HandshakesFailed + r.HandshakesOther,
		MessagesIn: r.MessagesIn, MessagesOut: r.MessagesOut, BytesIn: r.BytesIn, BytesOut: r.BytesOut,
		ConnectionSeconds: float64(r.ConnectionMillis) / 1000,
		ConnectionsOpened: r.HandshakesSuccess, ConnectionsClosed: r.ConnectionsClosed, Refusals: r.Refusals,
	}
	if rec.Refusals == nil {
		rec.Refusals = map[string]int64{}
	}
	switch by {
	case reports.ByAPI:
		rec.Name, rec.APIID = r.API, "/apis/"+r.API
	case reports.BySubscription:
		rec.Name = r.Subscription
		if r.Subscription != "" {
			rec.SubscriptionID = "/subscriptions/" + r.Subscription
		}
	case reports.ByProduct:
		rec.Name = r.Product
		if r.Product != "" {
			rec.ProductID = "/products/" + r.Product
		}
	case reports.ByNode:
		rec.Name, rec.NodeID = r.Node, r.Node
	case reports.ByTime:
		ts := r.Timestamp.UTC()
		rec.Timestamp, rec.Interval = &ts, reports.FormatInterval(interval)
	}
	return rec
}
