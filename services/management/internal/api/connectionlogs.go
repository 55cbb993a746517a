package api

import (
	"encoding/csv"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/connlog"
	"gatehouse.dev/management/internal/reports"
	"gatehouse.dev/pkg/apierror"
	"gatehouse.dev/pkg/configwire"
)

// connectionLogRoutes registers the connection log of a service, a Gatehouse extension.
func (s *Server) connectionLogRoutes(g *echo.Group) {
	g.GET(ServicePrefix+"/connectionLogs", s.connectionLogs(false))
}

// connectionLogEntry is the JSON form of one ended WebSocket session: the node's record, the
// gateway and node that sent it, and its duration.
type connectionLogEntry struct {
	configwire.ConnectionLogRecord
	Gateway         string  `json:"gateway"`
	NodeID          string  `json:"nodeId"`
	DurationSeconds float64 `json:"durationSeconds"`
}

func entryOf(e connlog.Entry) connectionLogEntry {
	return connectionLogEntry{ConnectionLogRecord: e.ConnectionLogRecord, Gateway: e.Gateway, NodeID: e.NodeID,
		DurationSeconds: e.Closed.Sub(e.Opened).Seconds()}
}

// connectionLogs serves the log of the service the route names, newest first: $filter
// (reports.ParseLogFilter), $top, $skip, and CSV with $format=csv or Accept: text/csv. For a
// consumer (own) it admits only the entries of the consumer's own subscriptions.
func (s *Server) connectionLogs(own bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, filter, err := page(c)
		if err != nil {
			return err
		}
		q := connlog.Query{Top: p.Top, Skip: p.Skip}
		if q.Filter, err = reports.ParseLogFilter(filter); err != nil {
			return err
		}
		asCSV, err := wantsCSV(c)
		if err != nil {
			return err
		}
		if asCSV {
			q.Limit = connlog.MaxExport
		}
		serviceID, subs, err := s.usageScope(c, own)
		if err != nil {
			return err
		}
		q.Subscriptions = subs
		var entries []connlog.Entry
		total := 0
		if s.cfg.ConnectionLog != nil {
			if entries, total, err = s.cfg.ConnectionLog.List(c.Request().Context(), serviceID, q); err != nil {
				return err
			}
		}
		if asCSV {
			return writeConnectionLogCSV(c, entries)
		}
		items := make([]any, 0, len(entries))
		for _, e := range entries {
			items = append(items, entryOf(e))
		}
		return s.writeList(c, catalog.Page{Top: p.Top, Skip: p.Skip}, items, total)
	}
}

// wantsCSV reports whether the caller asked for CSV: $format=csv, or $format absent and
// text/csv in Accept. $format takes json or csv.
func wantsCSV(c echo.Context) (bool, error) {
	switch f := strings.ToLower(c.QueryParam("$format")); f {
	case "csv":
		return true, nil
	case "json":
		return false, nil
	case "":
		return strings.Contains(strings.ToLower(c.Request().Header.Get(echo.HeaderAccept)), "text/csv"), nil
	}
	return false, apierror.Validation("$format", "$format is json or csv")
}

// csvHeader names the columns of the CSV export.
var csvHeader = []string{"closed", "opened", "durationSeconds", "correlationId", "api", "operation", "product", "subscription",
	"user", "gateway", "nodeId", "clientIp", "messagesIn", "messagesOut", "bytesIn", "bytesOut", "closeCode", "closedBy",
	"reason", "detail"}

// writeConnectionLogCSV answers entries as RFC 4180 CSV with a header row.
func writeConnectionLogCSV(c echo.Context, entries []connlog.Entry) error {
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "text/csv; charset=utf-8")
	h.Set(echo.HeaderContentDisposition, `attachment; filename="connection-log.csv"`)
	c.Response().WriteHeader(http.StatusOK)
	w := csv.NewWriter(c.Response())
	_ = w.Write(csvHeader)
	i64 := func(n int64) string { return strconv.FormatInt(n, 10) }
	for _, e := range entries {
		_ = w.Write([]string{e.Closed.Format(time.RFC3339Nano), e.Opened.Format(time.RFC3339Nano),
			strconv.FormatFloat(e.Closed.Sub(e.Opened).Seconds(), 'f', 3, 64), e.CorrelationID,
			cell(e.API), cell(e.Operation), cell(e.Product), cell(e.Subscription), cell(e.User), cell(e.Gateway), cell(e.NodeID),
			e.ClientIP, i64(e.MessagesIn), i64(e.MessagesOut), i64(e.BytesIn), i64(e.BytesOut), strconv.Itoa(e.CloseCode),
			cell(e.ClosedBy), cell(e.Reason), cell(e.Detail)})
	}
	w.Flush()
	return w.Error()
}

// cell guards a text cell against formula injection in spreadsheets: a value starting with
// =, +, -, @, a tab or a carriage return gets a leading apostrophe (OWASP's advice).
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// maxOwnSubscriptions bounds the subscriptions of a consumer that scope its log and reports.
const maxOwnSubscriptions = 1000

// usageScope returns the internal id of the service the route names and, for a consumer
// (own), the names of its subscriptions, whose usage and log entries are the only ones it
// reads; nil otherwise.
func (s *Server) usageScope(c echo.Context, own bool) (string, []string, error) {
	svc, err := s.cat.GetService(c.Request().Context(), ref(c))
	if err != nil || !own {
		return svc.ID, nil, err
	}
	subs, err := s.ownSubscriptionNames(c)
	return svc.ID, subs, err
}

// ownSubscriptionNames returns the names of the subscriptions of the consumer the route names
// (asConsumer): its log and usage entries are theirs only.
func (s *Server) ownSubscriptionNames(c echo.Context) ([]string, error) {
	rs, _, err := s.cat.SubscriptionsOf(c.Request().Context(), ref(c), catalog.KindUser, c.Param("userId"), "ownerId", "",
		catalog.Page{Top: maxOwnSubscriptions})
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(rs))
	for _, r := range rs {
		names = append(names, r.Name)
	}
	return names, nil
}
