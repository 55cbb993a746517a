package traffic

import (
	"net/http"
	"strings"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/gateway/internal/logexport"
	"gatehouse.dev/pkg/configwire"
)

// diagnosed applies an API's diagnostics (compiled.Config.Diagnostics) to one WebSocket
// session: the headers each asks for, picked as the handshake passes them, and at the end the
// export of the session's record to each otlp logger whose sampling keeps it.
type diagnosed struct {
	diags []*compiled.Diagnostic
	// headers holds, per diagnostic, the header attributes picked so far.
	headers [][]logexport.Attr
	// keyHeader is the API's subscription key header, never logged.
	keyHeader string
}

// newDiagnosed returns the diagnosed of a session under diags, nil when there are none: a nil
// *diagnosed picks and exports nothing and lets the connection log hold the client's address.
func newDiagnosed(diags []*compiled.Diagnostic, keyHeader string) *diagnosed {
	if len(diags) == 0 {
		return nil
	}
	return &diagnosed{diags: diags, headers: make([][]logexport.Attr, len(diags)), keyHeader: keyHeader}
}

// Attribute prefixes of the headers a diagnostic logs: OpenTelemetry's for the client's
// request and response, Gatehouse's for the backend's.
const (
	frontendRequest  = "http.request.header."
	frontendResponse = "http.response.header."
	backendRequest   = "gatehouse.backend.request.header."
	backendResponse  = "gatehouse.backend.response.header."
)

// pick records the values in h of the headers each diagnostic lists for one side (names
// returns the list), as attributes named prefix + the lower-cased header name.
func (d *diagnosed) pick(h http.Header, prefix string, names func(*compiled.Diagnostic) []string) {
	if d == nil {
		return
	}
	for i, diag := range d.diags {
		for _, name := range names(diag) {
			if strings.EqualFold(name, d.keyHeader) || strings.EqualFold(name, "Authorization") && prefix == frontendRequest {
				continue // the client's credentials are never logged
			}
			if v := h.Values(name); len(v) > 0 {
				d.headers[i] = append(d.headers[i], logexport.Strings(prefix+strings.ToLower(name), v))
			}
		}
	}
}

// clientIP reports whether the connection log may hold the client's address: yes, unless
// one of the API's diagnostics says not to log it (logClientIp false).
func (d *diagnosed) clientIP() bool {
	if d == nil {
		return true
	}
	for _, diag := range d.diags {
		if !diag.ClientIP {
			return false
		}
	}
	return true
}

// export queues rec, the record of a session whose client had the address ip, for each otlp
// logger whose diagnostic keeps it. A session ended in error when the gateway saw a protocol
// error or the close code was neither 1000, 1001 nor 1005 (no code).
func (d *diagnosed) export(exp *logexport.Exporter, rec configwire.ConnectionLogRecord, ip string) {
	if d == nil {
		return
	}
	failed := rec.Reason == "error" || rec.CloseCode != 1000 && rec.CloseCode != 1001 && rec.CloseCode != 1005
	for i, diag := range d.diags {
		if diag.Export == nil || !diag.Keeps(rec.CorrelationID, failed) {
			continue
		}
		attrs := recordAttrs(rec, diag)
		if diag.ClientIP && ip != "" {
			attrs = append(attrs, logexport.String("client.address", ip))
		}
		exp.Add(logexport.Record{Target: diag.Export, Time: rec.Closed, Body: "websocket closed", Attributes: append(attrs, d.headers[i]...)})
	}
}

// recordAttrs are the attributes of the exported record of rec under diag.
func recordAttrs(rec configwire.ConnectionLogRecord, diag *compiled.Diagnostic) []logexport.Attr {
	attrs := []logexport.Attr{
		logexport.String("gatehouse.correlation_id", rec.CorrelationID),
		logexport.String("gatehouse.diagnostic", diag.ID),
		logexport.String("gatehouse.api", rec.API),
		logexport.String("gatehouse.operation", rec.Operation),
		logexport.Int("gatehouse.opened_unix_nano", rec.Opened.UnixNano()),
		logexport.Int("gatehouse.duration_ms", rec.Closed.Sub(rec.Opened).Milliseconds()),
		logexport.Int("gatehouse.messages_in", rec.MessagesIn),
		logexport.Int("gatehouse.messages_out", rec.MessagesOut),
		logexport.Int("gatehouse.bytes_in", rec.BytesIn),
		logexport.Int("gatehouse.bytes_out", rec.BytesOut),
		logexport.Int("websocket.close_code", int64(rec.CloseCode)),
		logexport.String("gatehouse.closed_by", rec.ClosedBy),
		logexport.String("gatehouse.close_reason", rec.Reason),
	}
	for _, a := range []logexport.Attr{logexport.String("gatehouse.product", rec.Product), logexport.String("gatehouse.subscription", rec.Subscription),
		logexport.String("gatehouse.user", rec.User), logexport.String("gatehouse.detail", rec.Detail)} {
		if a.Str != "" {
			attrs = append(attrs, a)
		}
	}
	return attrs
}
