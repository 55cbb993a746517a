package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"gatehouse.dev/pkg/policy"
)

// Failed returns a pipeline that refuses every request: the effective policy it stands for
// could not be compiled (err, usually a *CompileError), so nothing it asked for can be
// enforced. Run answers 500 with APIM's body and logs err, failing closed rather than serving
// an older policy or none (issue 11).
func Failed(err error, log *slog.Logger) *Pipeline {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pipeline{failure: err, log: log, now: time.Now}
}

// Failure returns the compile error of a pipeline made by Failed, or nil.
func (p *Pipeline) Failure() error {
	if p == nil {
		return nil
	}
	return p.failure
}

// refuse is Run for a pipeline made by Failed.
func (p *Pipeline) refuse(ctx context.Context, req *Request) *Response {
	p.log.LogAttrs(ctx, slog.LevelError, "policy not compiled on this node; request refused",
		slog.String("api", req.API.Name), slog.String("operation", req.Operation.Name), slog.String("error", p.failure.Error()))
	return &Response{
		Status:  http.StatusInternalServerError,
		Message: "Internal server error",
		Source:  "configuration",
		Reason:  "PolicyCompileFailure",
	}
}

// Check compiles one policy document as the only scope that exists, with env, and returns the
// first *CompileError. It is what management runs on every policy it stores: composition
// through <base/> cannot make a document that compiles alone fail, because every compile
// error belongs to one element of one document (TestCompositionAddsNoErrors), so a document
// Check accepts compiles in every scope and product context a node composes it into, given
// the same named values, backends and certificates. scope names the document in errors
// ("global", "product:starter", "api:echo", "operation:echo/onHandshake").
func Check(doc *policy.Document, scope string, env Env) error {
	if env.Counters == nil {
		env.Counters = noCounters{}
	}
	if env.Keys == nil {
		env.Keys = NewKeySource(nil, nil) // never asked for a key: nothing Check compiles runs
	}
	b := &builder{env: env, reg: policy.NewRegistry(), docs: [4]*policy.Document{3: doc}, scopes: [4]string{3: scope}}
	if env.Log == nil {
		b.env.Log = slog.New(slog.DiscardHandler)
	}
	if env.Now == nil {
		b.env.Now = time.Now
	}
	_, err := b.section(3)
	return err
}

// noCounters stands in for the counters of a pipeline that Check compiles and nobody runs.
type noCounters struct{}

func (noCounters) Sliding(context.Context, string, int64, time.Duration, int64) (bool, int64, time.Duration) {
	return false, 0, 0
}

func (noCounters) Fixed(context.Context, string, int64, time.Duration, time.Time, int64) (bool, int64, time.Duration) {
	return false, 0, 0
}

// redact replaces every secret named value in err's message with "***", so that a compile
// error quoting substituted text can go to a log, a heartbeat or an API answer. Values shorter
// than four bytes are left alone: they would blank out ordinary words and give nothing away.
func redact(err error, secrets []string) error {
	msg := err.Error()
	out := msg
	// Longest first, so that a secret that begins another leaves nothing of the longer one;
	// trimmed too, as parsers quote a value without its surrounding space.
	var forms []string
	for _, s := range secrets {
		forms = append(forms, s, strings.TrimSpace(s))
	}
	slices.SortFunc(forms, func(a, b string) int { return len(b) - len(a) })
	for _, s := range forms {
		if len(s) >= 4 {
			out = strings.ReplaceAll(out, s, "***")
		}
	}
	if out == msg {
		return err
	}
	return errors.New(out)
}
