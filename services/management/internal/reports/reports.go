// Package reports stores the usage gateway nodes publish over NATS JetStream
// (configwire.UsageBatch on bus.UsageStream) in Postgres, once per batch however often it is
// delivered, and answers APIM's usage reports by API, by subscription and by time.
package reports

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// GroupBy is what a report groups usage by.
type GroupBy int

// The reports.
const (
	ByAPI GroupBy = iota + 1
	BySubscription
	ByTime
)

// MaxTop is the largest page a report serves; a larger or no $top serves pages of MaxTop.
const MaxTop = 1000

// Query is one report request of a service.
type Query struct {
	By     GroupBy
	Filter Filter
	// Interval is ByTime's bucket width, a whole number of minutes; buckets start at
	// multiples of it since the Unix epoch (so P1D buckets are UTC days).
	Interval time.Duration
	// OrderBy is a field of Record's JSON form (see OrderFields), "" for the report's key.
	OrderBy string
	Desc    bool
	Top     int
	Skip    int
}

// Row is the usage of one group, summed over minutes and gateway nodes.
type Row struct {
	// API, Subscription or Timestamp is the group's key, by the Query's GroupBy.
	API          string
	Subscription string
	Timestamp    time.Time

	HandshakesSuccess, HandshakesBlocked, HandshakesFailed, HandshakesOther int64
	MessagesIn, MessagesOut, BytesIn, BytesOut                              int64
	ConnectionMillis                                                        int64
}

// sums are the SQL of the summed columns, in Row's order.
const sums = `sum(handshakes_success)::bigint AS handshakes_success, sum(handshakes_blocked)::bigint AS handshakes_blocked,
	sum(handshakes_failed)::bigint AS handshakes_failed, sum(handshakes_other)::bigint AS handshakes_other,
	sum(messages_in)::bigint AS messages_in, sum(messages_out)::bigint AS messages_out,
	sum(bytes_in)::bigint AS bytes_in, sum(bytes_out)::bigint AS bytes_out, sum(connection_ms)::bigint AS connection_ms`

// OrderFields maps the fields a report may be ordered by ($orderby) to their SQL.
var OrderFields = map[string]string{
	"name":               "key",
	"apiid":              "key",
	"subscriptionid":     "key",
	"timestamp":          "key",
	"callcountsuccess":   "handshakes_success",
	"callcountblocked":   "handshakes_blocked",
	"callcountfailed":    "handshakes_failed",
	"callcountother":     "handshakes_other",
	"callcounttotal":     "(handshakes_success + handshakes_blocked + handshakes_failed + handshakes_other)",
	"bandwidth":          "(bytes_in + bytes_out)",
	"handshakessuccess":  "handshakes_success",
	"handshakesrejected": "(handshakes_blocked + handshakes_failed + handshakes_other)",
	"messagesin":         "messages_in",
	"messagesout":        "messages_out",
	"bytesin":            "bytes_in",
	"bytesout":           "bytes_out",
	"connectionseconds":  "connection_ms",
}

// ParseOrderBy parses $orderby: one field of OrderFields (case-insensitive), optionally
// followed by asc or desc. An empty value orders by the report's key. Failures are *Error.
func ParseOrderBy(s string) (field string, desc bool, err error) {
	parts := strings.Fields(s)
	if len(parts) == 0 {
		return "", false, nil
	}
	bad := &Error{"$orderby", "$orderby is one report field, e.g. callCountTotal desc"}
	if len(parts) > 2 {
		return "", false, bad
	}
	if _, ok := OrderFields[strings.ToLower(parts[0])]; !ok {
		return "", false, bad
	}
	if len(parts) == 2 {
		switch strings.ToLower(parts[1]) {
		case "asc":
		case "desc":
			desc = true
		default:
			return "", false, bad
		}
	}
	return strings.ToLower(parts[0]), desc, nil
}

// Store reads the usage table. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store reading through pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Report answers q for the service with internal id serviceID: one page of rows and the
// number of rows of all pages.
func (s *Store) Report(ctx context.Context, serviceID string, q Query) ([]Row, int, error) {
	args := []any{serviceID}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	where := []string{"service_id = $1"}
	f := q.Filter
	if !f.From.IsZero() {
		where = append(where, "minute "+map[bool]string{false: ">=", true: ">"}[f.FromExclusive]+" "+arg(f.From))
	}
	if !f.To.IsZero() {
		where = append(where, "minute "+map[bool]string{false: "<=", true: "<"}[f.ToExclusive]+" "+arg(f.To))
	}
	if f.APISet {
		where = append(where, "api = "+arg(f.API))
	}
	if f.SubscriptionSet {
		where = append(where, "subscription = "+arg(f.Subscription))
	}
	var key string
	switch q.By {
	case ByAPI:
		key = "api"
	case BySubscription:
		key = "subscription"
	case ByTime:
		secs := int64(q.Interval / time.Second)
		if secs < 60 || secs%60 != 0 {
			return nil, 0, fmt.Errorf("reports: interval %s is not a whole number of minutes", q.Interval)
		}
		n := arg(secs)
		key = "to_timestamp(floor(extract(epoch FROM minute) / " + n + "::bigint) * " + n + "::bigint)"
	default:
		return nil, 0, fmt.Errorf("reports: unknown grouping %d", q.By)
	}
	grouped := "SELECT " + key + " AS key, " + sums + " FROM usage WHERE " + strings.Join(where, " AND ") + " GROUP BY 1"

	var total int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM ("+grouped+") g", args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("reports: count: %w", err)
	}
	order := "key"
	if q.OrderBy != "" {
		order = OrderFields[q.OrderBy]
		if order == "" {
			return nil, 0, fmt.Errorf("reports: unknown order field %q", q.OrderBy)
		}
	}
	dir := map[bool]string{false: " ASC", true: " DESC"}[q.Desc]
	top := q.Top
	if top <= 0 || top > MaxTop {
		top = MaxTop
	}
	sql := "SELECT * FROM (" + grouped + ") g ORDER BY " + order + dir + ", key" + dir +
		" LIMIT " + arg(top) + " OFFSET " + arg(max(q.Skip, 0))
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("reports: query: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Row, error) {
		var row Row
		dst := []any{&row.HandshakesSuccess, &row.HandshakesBlocked, &row.HandshakesFailed, &row.HandshakesOther,
			&row.MessagesIn, &row.MessagesOut, &row.BytesIn, &row.BytesOut, &row.ConnectionMillis}
		switch q.By {
		case ByAPI:
			dst = append([]any{&row.API}, dst...)
		case BySubscription:
			dst = append([]any{&row.Subscription}, dst...)
		default:
			dst = append([]any{&row.Timestamp}, dst...)
		}
		err := r.Scan(dst...)
		row.Timestamp = row.Timestamp.UTC()
		return row, err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("reports: query: %w", err)
	}
	return out, total, nil
}
