// Package logexport sends connection records to the collectors of otlp loggers as OTLP/HTTP
// log records (JSON encoding, POST <endpoint>/v1/logs; issue 15, docs/observability.md). Records
// wait in a bounded queue and are sent in batches by one goroutine, off the hot path: a
// session's end never waits for a collector, and when the queue is full records are dropped
// and counted (gatehouse_gateway_log_export_records_total{result="dropped"}).
package logexport

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"gatehouse.dev/gateway/internal/metrics"
	"gatehouse.dev/pkg/diagnostic"
)

// Defaults of the Options.
const (
	DefaultQueue    = 4096
	DefaultBatch    = 512
	DefaultInterval = time.Second
	sendTimeout     = 10 * time.Second
)

// Options configure an Exporter.
type Options struct {
	// Client sends the batches; nil means http.DefaultClient. The node passes one that dials
	// through its egress dialer.
	Client *http.Client
	// Resource are the attributes of the resource every record comes from (the node).
	Resource []Attr
	// Queue bounds the records waiting to be sent, Batch the records of one request, and
	// Interval how long a record waits for a fuller batch; zero means the defaults.
	Queue    int
	Batch    int
	Interval time.Duration
	Metrics  *metrics.Gateway
	Log      *slog.Logger
}

// Record is one log record for the collector Target.
type Record struct {
	Target     *diagnostic.OTLP
	Time       time.Time
	Body       string
	Attributes []Attr
}

// Attr is an attribute: a string, an int or a list of strings, by which is set.
type Attr struct {
	Key     string
	Str     string
	Int     int64
	IsInt   bool
	Strings []string
}

// String is a string attribute.
func String(key, v string) Attr { return Attr{Key: key, Str: v} }

// Int is an int attribute.
func Int(key string, v int64) Attr { return Attr{Key: key, Int: v, IsInt: true} }

// Strings is a string list attribute (a header's values).
func Strings(key string, v []string) Attr { return Attr{Key: key, Strings: v} }

// Exporter queues records and sends them. Add is safe for concurrent use; Run runs once. A nil
// *Exporter drops every record silently.
type Exporter struct {
	opt   Options
	queue chan Record
}

// New returns an Exporter; records are sent once Run runs.
func New(opt Options) *Exporter {
	if opt.Client == nil {
		opt.Client = http.DefaultClient
	}
	if opt.Queue <= 0 {
		opt.Queue = DefaultQueue
	}
	if opt.Batch <= 0 {
		opt.Batch = DefaultBatch
	}
	if opt.Interval <= 0 {
		opt.Interval = DefaultInterval
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	return &Exporter{opt: opt, queue: make(chan Record, opt.Queue)}
}

// Add queues r without blocking; a full queue drops it and counts the drop.
func (e *Exporter) Add(r Record) {
	if e == nil {
		return
	}
	select {
	case e.queue <- r:
	default:
		e.opt.Metrics.LogExport(metrics.ExportDropped, 1)
	}
}

// Run sends queued records until ctx ends, then sends what is queued once more. It returns nil.
func (e *Exporter) Run(ctx context.Context) error {
	tick := time.NewTicker(e.opt.Interval)
	defer tick.Stop()
	b := batches{}
	// A batch being sent when ctx ends is still delivered (within sendTimeout): stopping the
	// node must not lose the records it already took.
	send := context.WithoutCancel(ctx)
	for {
		select {
		case r := <-e.queue:
			if b.add(r) >= e.opt.Batch {
				e.flush(send, b)
			}
		case <-tick.C:
			e.flush(send, b)
		case <-ctx.Done():
			e.drain(send, b)
			return nil
		}
	}
}

// drain sends what is batched and queued, within sendTimeout.
func (e *Exporter) drain(ctx context.Context, b batches) {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	for {
		select {
		case r := <-e.queue:
			b.add(r)
		default:
			e.flush(ctx, b)
			return
		}
	}
}

// batches groups records by their collector (URL and headers).
type batches map[*diagnostic.OTLP][]Record

// add adds r and returns the size of its batch.
func (b batches) add(r Record) int {
	b[r.Target] = append(b[r.Target], r)
	return len(b[r.Target])
}

// flush sends every batch and empties b.
func (e *Exporter) flush(ctx context.Context, b batches) {
	for target, recs := range b {
		delete(b, target)
		if err := e.send(ctx, target, recs); err != nil {
			e.opt.Metrics.LogExport(metrics.ExportFailed, len(recs))
			e.opt.Log.Warn("exporting connection records failed; they are dropped", slog.String("url", target.URL),
				slog.Int("records", len(recs)), slog.String("err", err.Error()))
			continue
		}
		e.opt.Metrics.LogExport(metrics.ExportExported, len(recs))
	}
}

// send POSTs recs to target as one OTLP/HTTP JSON request.
func (e *Exporter) send(ctx context.Context, target *diagnostic.OTLP, recs []Record) error {
	body, err := json.Marshal(e.encode(recs))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for name, values := range target.Header {
		req.Header[name] = values
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.opt.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the collector answered %s", resp.Status)
	}
	return nil
}

// The OTLP/HTTP JSON encoding of logs (opentelemetry-proto, logs/v1/logs.proto, and the
// protocol's JSON mapping: 64-bit integers as strings, lowerCamelCase names).
type (
	exportRequest struct {
		ResourceLogs []resourceLogs `json:"resourceLogs"`
	}
	resourceLogs struct {
		Resource  resource    `json:"resource"`
		ScopeLogs []scopeLogs `json:"scopeLogs"`
	}
	resource struct {
		Attributes []keyValue `json:"attributes"`
	}
	scopeLogs struct {
		Scope      scope       `json:"scope"`
		LogRecords []logRecord `json:"logRecords"`
	}
	scope struct {
		Name string `json:"name"`
	}
	logRecord struct {
		TimeUnixNano         string     `json:"timeUnixNano"`
		ObservedTimeUnixNano string     `json:"observedTimeUnixNano"`
		SeverityNumber       int        `json:"severityNumber"`
		SeverityText         string     `json:"severityText"`
		Body                 anyValue   `json:"body"`
		Attributes           []keyValue `json:"attributes"`
	}
	keyValue struct {
		Key   string   `json:"key"`
		Value anyValue `json:"value"`
	}
	anyValue struct {
		StringValue *string     `json:"stringValue,omitempty"`
		IntValue    *string     `json:"intValue,omitempty"`
		ArrayValue  *arrayValue `json:"arrayValue,omitempty"`
	}
	arrayValue struct {
		Values []anyValue `json:"values"`
	}
)

// Scope is the instrumentation scope of the records.
const Scope = "gatehouse.dev/gateway"

// severityInfo is OTLP's SeverityNumber INFO.
const severityInfo = 9

func (e *Exporter) encode(recs []Record) exportRequest {
	now := strconv.FormatInt(time.Now().UnixNano(), 10)
	out := make([]logRecord, len(recs))
	for i, r := range recs {
		out[i] = logRecord{TimeUnixNano: strconv.FormatInt(r.Time.UnixNano(), 10), ObservedTimeUnixNano: now,
			SeverityNumber: severityInfo, SeverityText: "INFO", Body: str(r.Body), Attributes: encodeAttrs(r.Attributes)}
	}
	return exportRequest{ResourceLogs: []resourceLogs{{Resource: resource{Attributes: encodeAttrs(e.opt.Resource)},
		ScopeLogs: []scopeLogs{{Scope: scope{Name: Scope}, LogRecords: out}}}}}
}

func encodeAttrs(attrs []Attr) []keyValue {
	out := make([]keyValue, len(attrs))
	for i, a := range attrs {
		switch {
		case a.IsInt:
			v := strconv.FormatInt(a.Int, 10)
			out[i] = keyValue{Key: a.Key, Value: anyValue{IntValue: &v}}
		case a.Strings != nil:
			vs := make([]anyValue, len(a.Strings))
			for j, s := range a.Strings {
				vs[j] = str(s)
			}
			out[i] = keyValue{Key: a.Key, Value: anyValue{ArrayValue: &arrayValue{Values: vs}}}
		default:
			out[i] = keyValue{Key: a.Key, Value: str(a.Str)}
		}
	}
	return out
}

func str(s string) anyValue { return anyValue{StringValue: &s} }
