package api

import (
	"time"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/reports"
)

// reportRoutes registers APIM's usage reports of a service.
func (s *Server) reportRoutes(g *echo.Group) {
	g.GET(ServicePrefix+"/reports/byApi", s.report(reports.ByAPI))
	g.GET(ServicePrefix+"/reports/bySubscription", s.report(reports.BySubscription))
	g.GET(ServicePrefix+"/reports/byTime", s.report(reports.ByTime))
}

// reportRecord is APIM's ReportRecordContract with the fields WebSocket usage fills, and the
// WebSocket counts beside them. A handshake is a call: callCountSuccess counts 101s,
// callCountBlocked 401, 403 and 429, callCountFailed 5xx, callCountOther the rest; bandwidth
// is the payload bytes both ways.
type reportRecord struct {
	Name           string     `json:"name,omitempty"`
	Timestamp      *time.Time `json:"timestamp,omitempty"`
	Interval       string     `json:"interval,omitempty"`
	APIID          string     `json:"apiId,omitempty"`
	SubscriptionID string     `json:"subscriptionId,omitempty"`

	CallCountSuccess int64 `json:"callCountSuccess"`
	CallCountBlocked int64 `json:"callCountBlocked"`
	CallCountFailed  int64 `json:"callCountFailed"`
	CallCountOther   int64 `json:"callCountOther"`
	CallCountTotal   int64 `json:"callCountTotal"`
	Bandwidth        int64 `json:"bandwidth"`

	HandshakesSuccess  int64   `json:"handshakesSuccess"`
	HandshakesRejected int64   `json:"handshakesRejected"`
	MessagesIn         int64   `json:"messagesIn"`
	MessagesOut        int64   `json:"messagesOut"`
	BytesIn            int64   `json:"bytesIn"`
	BytesOut           int64   `json:"bytesOut"`
	ConnectionSeconds  float64 `json:"connectionSeconds"`
}

// report serves one report: $filter (required; timestamp bounds, apiId, subscriptionId),
// $top, $skip, $orderby, and for byTime interval (required).
func (s *Server) report(by reports.GroupBy) echo.HandlerFunc {
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
		ctx := c.Request().Context()
		svc, err := s.cat.GetService(ctx, ref(c))
		if err != nil {
			return err
		}
		var rows []reports.Row
		total := 0
		if s.cfg.Reports != nil {
			if rows, total, err = s.cfg.Reports.Report(ctx, svc.ID, q); err != nil {
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
	}
	switch by {
	case reports.ByAPI:
		rec.Name, rec.APIID = r.API, "/apis/"+r.API
	case reports.BySubscription:
		rec.Name = r.Subscription
		if r.Subscription != "" {
			rec.SubscriptionID = "/subscriptions/" + r.Subscription
		}
	case reports.ByTime:
		ts := r.Timestamp.UTC()
		rec.Timestamp, rec.Interval = &ts, reports.FormatInterval(interval)
	}
	return rec
}
