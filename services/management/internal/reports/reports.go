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

// The reports. ByProduct groups by the product of each row's subscription as it is now
// (its scope): usage without a subscription, or of one scoped to APIs or since deleted,
// forms the product "". ByNode groups by the gateway node that counted the usage.
const (
	ByAPI GroupBy = iota + 1
	BySubscription
	ByTime
	ByProduct
	ByNode
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
	// Subscriptions, when not nil, admits only the usage of these subscriptions (a
	// consumer's own); an empty non-nil slice admits none.
	Subscriptions []string
	// OrderBy is a field of Record's JSON form (see OrderFields), "" for the report's key.
	OrderBy string
	Desc    bool
	Top     int
	Skip    int
}

// Row is the usage of one group, summed over minutes and gateway nodes.
type Row struct {
	// API, Subscription, Product, Node or Timestamp is the group's key, by the Query's
	// GroupBy.
	API          string
	Subscription string
	Product      string
	Node         string
	Timestamp    time.Time

	HandshakesSuccess, HandshakesBlocked, HandshakesFailed, HandshakesOther int64
	MessagesIn, MessagesOut, BytesIn, BytesOut                              int64
	ConnectionMillis                                                        int64
	// ConnectionsClosed counts sessions that ended (those opened are HandshakesSuccess).
	ConnectionsClosed int64
	// Refusals counts the handshakes not answered 101 by configwire.OutcomeKey; nil for none.
	Refusals map[string]int64
}

// sums are the SQL of the summed columns, in Row's order.
const sums = `sum(handshakes_success)::bigint AS handshakes_success, sum(handshakes_blocked)::bigint AS handshakes_blocked,
	sum(handshakes_failed)::bigint AS handshakes_failed, sum(handshakes_other)::bigint AS handshakes_other,
	sum(messages_in)::bigint AS messages_in, sum(messages_out)::bigint AS messages_out,
	sum(bytes_in)::bigint AS bytes_in, sum(bytes_out)::bigint AS bytes_out, sum(connection_ms)::bigint AS connection_ms,
	sum(connections_closed)::bigint AS connections_closed`

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
	"connectionsopened":  "handshakes_success",
	"connectionsclosed":  "connections_closed",
	"productid":          "key",
	"nodeid":             "key",
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
	where := append([]string{"service_id = $1"}, Conditions(q.Filter, q.Subscriptions, "minute", arg)...)
	key, from, err := groupKey(q, arg)
	if err != nil {
		return nil, 0, err
	}
	cond := strings.Join(where, " AND ")
	grouped := "SELECT " + key + " AS key, " + sums + " FROM " + from + " WHERE " + cond + " GROUP BY 1"

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
			&row.MessagesIn, &row.MessagesOut, &row.BytesIn, &row.BytesOut, &row.ConnectionMillis, &row.ConnectionsClosed}
		switch q.By {
		case ByAPI:
			dst = append([]any{&row.API}, dst...)
		case BySubscription:
			dst = append([]any{&row.Subscription}, dst...)
		case ByProduct:
			dst = append([]any{&row.Product}, dst...)
		case ByNode:
			dst = append([]any{&row.Node}, dst...)
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
	if err := s.addRefusals(ctx, q.By, out, "SELECT "+key+" AS key, o.key AS outcome, sum(o.value::bigint)::bigint FROM "+from+
		", jsonb_each_text(coalesce(refusals, '{}')) o WHERE "+cond+" GROUP BY 1, 2", args[:len(args)-2]); err != nil {
		return nil, 0, err
	}
	return out, total, nil
}

// Conditions returns the SQL conditions that select the rows f and subscriptions admit
// (Query.Subscriptions: nil admits any), with timeColumn the time f's range bounds; arg adds
// a parameter and returns its placeholder. Names compare case-insensitively, as ARM names
// do. The connection log selects its entries with them too.
func Conditions(f Filter, subscriptions []string, timeColumn string, arg func(any) string) []string {
	var where []string
	if !f.From.IsZero() {
		where = append(where, timeColumn+map[bool]string{false: " >= ", true: " > "}[f.FromExclusive]+arg(f.From))
	}
	if !f.To.IsZero() {
		where = append(where, timeColumn+map[bool]string{false: " <= ", true: " < "}[f.ToExclusive]+arg(f.To))
	}
	if f.APISet {
		where = append(where, "lower(api) = lower("+arg(f.API)+")")
	}
	if f.SubscriptionSet {
		where = append(where, "lower(subscription) = lower("+arg(f.Subscription)+")")
	}
	if f.Node != "" {
		where = append(where, "node_id = "+arg(f.Node))
	}
	if f.CloseCodeSet {
		where = append(where, "close_code = "+arg(f.CloseCode))
	}
	if subscriptions != nil {
		lower := make([]string, len(subscriptions))
		for i, s := range subscriptions {
			lower[i] = strings.ToLower(s)
		}
		where = append(where, "lower(subscription) = ANY("+arg(lower)+"::text[])")
	}
	return where
}

// groupKey returns the SQL of q's grouping key and of the rows it reads; arg adds a
// parameter and returns its placeholder.
func groupKey(q Query, arg func(any) string) (key, from string, err error) {
	switch q.By {
	case ByAPI:
		return "api", "usage", nil
	case BySubscription:
		return "subscription", "usage", nil
	case ByNode:
		return "node_id", "usage", nil
	case ByProduct:
		// The product of a subscription scoped to one ("/…/products/{id}"), looked up by the
		// unique index on its name.
		return "coalesce(p.product, '')", `usage LEFT JOIN LATERAL (
			SELECT substring(r.properties ->> 'scope' FROM '/products/([^/]+)$') AS product FROM resources r
			WHERE r.service_id = usage.service_id AND r.kind = 'subscriptions' AND lower(r.parent) = ''
				AND lower(r.name) = lower(usage.subscription)) p ON true`, nil
	case ByTime:
		secs := int64(q.Interval / time.Second)
		if secs < 60 || secs%60 != 0 {
			return "", "", fmt.Errorf("reports: interval %s is not a whole number of minutes", q.Interval)
		}
		n := arg(secs)
		return "to_timestamp(floor(extract(epoch FROM minute) / " + n + "::bigint) * " + n + "::bigint)", "usage", nil
	}
	return "", "", fmt.Errorf("reports: unknown grouping %d", q.By)
}

// addRefusals fills the Refusals of rows from sql, which sums the refused handshakes of
// every group by outcome (key, outcome, count), with args.
func (s *Store) addRefusals(ctx context.Context, by GroupBy, rows []Row, sql string, args []any) error {
	if len(rows) == 0 {
		return nil
	}
	index := make(map[string]int, len(rows))
	for i, r := range rows {
		index[r.groupKey(by)] = i
	}
	res, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("reports: refusals: %w", err)
	}
	defer res.Close()
	for res.Next() {
		var (
			key     any
			outcome string
			n       int64
		)
		if err := res.Scan(&key, &outcome, &n); err != nil {
			return fmt.Errorf("reports: refusals: %w", err)
		}
		k := fmt.Sprint(key)
		if t, ok := key.(time.Time); ok {
			k = t.UTC().Format(time.RFC3339)
		}
		if i, ok := index[k]; ok {
			if rows[i].Refusals == nil {
				rows[i].Refusals = map[string]int64{}
			}
			rows[i].Refusals[outcome] += n
		}
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("reports: refusals: %w", err)
	}
	return nil
}

// groupKey is the row's key under by, as addRefusals renders the keys it reads.
func (r Row) groupKey(by GroupBy) string {
	switch by {
	case ByAPI:
		return r.API
	case BySubscription:
		return r.Subscription
	case ByProduct:
		return r.Product
	case ByNode:
		return r.Node
	}
	return r.Timestamp.UTC().Format(time.RFC3339)
}
