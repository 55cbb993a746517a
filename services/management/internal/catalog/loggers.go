package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"gatehouse.dev/pkg/diagnostic"
)

// Loggers and diagnostics (issue 15, docs/observability.md): the shapes and structural rules
// live in pkg/diagnostic, which nodes read too; the catalog seals a logger's credentials,
// resolves a diagnostic's loggerId to a logger of the service, and refuses deleting a logger
// a diagnostic uses.

// credentialSecret is the Secrets key of a logger credential.
func credentialSecret(key string) string { return "credential:" + key }

// CredentialPlaceholder is what a logger's credential reads as once stored: APIM answers with
// a named-value reference in place of the value, and so does Gatehouse. A write that sends a
// credential's placeholder back keeps the stored value.
func CredentialPlaceholder(logger, key string) string {
	return "{{Logger-Credentials--" + logger + "-" + key + "}}"
}

var loggerBehaviour = behaviour{
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		var p diagnostic.Logger
		if err := decodeProps(in, &p); err != nil {
			return err
		}
		creds, err := loggerCredentials(r.Name, p.Credentials, old)
		if err != nil {
			return err
		}
		p.Credentials = creds
		if err := diagnostic.ValidateLogger(&p); err != nil {
			return asInvalid(err)
		}
		if p.LoggerType == diagnostic.TypeOTLP {
			if err := w.c.checkURLEgress("credentials.endpoint", creds[diagnostic.CredentialEndpoint]); err != nil {
				return err
			}
		}
		if old != nil {
			if err := w.checkLoggerTypeKept(ctx, r.Name, p.LoggerType); err != nil {
				return err
			}
		}
		r.Secrets = nil
		if len(creds) > 0 {
			r.Secrets = map[string]string{}
			p.Credentials = map[string]string{}
			for k, v := range creds {
				r.Secrets[credentialSecret(k)] = v
				p.Credentials[k] = CredentialPlaceholder(r.Name, k)
			}
		}
		r.Properties = mustJSON(p)
		return nil
	},
	beforeDelete: func(ctx context.Context, w *write, r Resource, opts Options) error {
		users, err := w.diagnosticsOf(ctx, r.Name)
		if err != nil || len(users) == 0 {
			return err
		}
		return &ConflictError{Message: fmt.Sprintf("Logger '%s' is used by the diagnostics %s; delete them or point them at another logger first.", r.Name, strings.Join(users, ", "))}
	},
}

// loggerCredentials returns the plaintext credentials of a write: a value equal to its own
// placeholder keeps the stored one (a GET sent back as a PUT), and any other named-value
// reference is refused, since Gatehouse does not resolve them in credentials.
func loggerCredentials(logger string, in map[string]string, old *Resource) (map[string]string, error) {
	out := make(map[string]string, len(in))
	for k, v := range in {
		if v == CredentialPlaceholder(logger, k) {
			kept, ok := "", false
			if old != nil {
				kept, ok = old.Secrets[credentialSecret(k)]
			}
			if !ok {
				return nil, invalid("properties.credentials."+k, "'%s' names no stored credential of this logger: send the value", v)
			}
			v = kept
		} else if strings.Contains(v, "{{") {
			return nil, invalid("properties.credentials."+k, "Gatehouse does not resolve named-value references in logger credentials: send the value (docs/observability.md)")
		}
		out[k] = v
	}
	return out, nil
}

// LoggerCredentials returns a logger's credentials in plaintext, for the snapshot of the nodes
// that export to it.
func LoggerCredentials(r Resource) map[string]string {
	out := map[string]string{}
	for k, v := range r.Secrets {
		if name, ok := strings.CutPrefix(k, "credential:"); ok {
			out[name] = v
		}
	}
	return out
}

// checkLoggerTypeKept refuses changing the type of a logger that the azuremonitor diagnostic
// uses away from azureMonitor.
func (w *write) checkLoggerTypeKept(ctx context.Context, logger, loggerType string) error {
	if loggerType == diagnostic.TypeAzureMonitor {
		return nil
	}
	users, err := w.diagnosticsOf(ctx, logger)
	if err != nil {
		return err
	}
	for _, u := range users {
		if strings.EqualFold(u[strings.LastIndexByte(u, '/')+1:], azureMonitorDiagnostic) {
			return invalid("properties.loggerType", "the diagnostic '%s' needs an azureMonitor logger", u)
		}
	}
	return nil
}

// diagnosticsOf returns the paths of the diagnostics, of every scope, whose loggerId names the
// logger.
func (w *write) diagnosticsOf(ctx context.Context, logger string) ([]string, error) {
	all, _, err := w.tx.List(ctx, Query{Kind: KindDiagnostic, AnyParent: true, All: true})
	if err != nil {
		return nil, err
	}
	id := w.scopeID(KindLogger.Segment + "/" + logger)
	var users []string
	for _, d := range all {
		var p diagnostic.Properties
		if json.Unmarshal(d.Properties, &p) == nil && strings.EqualFold(p.LoggerID, id) {
			users = append(users, d.Path())
		}
	}
	return users, nil
}

// azureMonitorDiagnostic is the diagnostic id APIM reserves for Azure Monitor: its loggerId
// must name an azureMonitor logger (reference/apim-surface.md §6).
const azureMonitorDiagnostic = "azuremonitor"

var diagnosticBehaviour = behaviour{
	parentKind: func(parent string) (*Kind, string, error) {
		if parent == "" {
			return nil, "", nil
		}
		return parentOf(KindAPI)(parent)
	},
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		if _, api := splitParent(r.Parent); api != "" {
			if _, _, isRev, _ := SplitRevision(api); isRev {
				// Nodes apply an API's diagnostics to every revision; one of a non-current
				// revision would be stored and never applied.
				return invalid("name", "diagnostics apply to every revision of an API: set them on apis/%s", strings.SplitN(api, ";", 2)[0])
			}
		}
		var p diagnostic.Properties
		if err := decodeProps(in, &p); err != nil {
			return err
		}
		if err := diagnostic.Validate(&p); err != nil {
			return asInvalid(err)
		}
		logger, err := w.loggerOf(ctx, p.LoggerID)
		if err != nil {
			return err
		}
		var lp diagnostic.Logger
		_ = json.Unmarshal(logger.Properties, &lp)
		if strings.EqualFold(r.Name, azureMonitorDiagnostic) && lp.LoggerType != diagnostic.TypeAzureMonitor {
			return invalid("properties.loggerId", "the azuremonitor diagnostic needs an azureMonitor logger; '%s' is %s", logger.Name, lp.LoggerType)
		}
		p.LoggerID = w.scopeID(logger.Path())
		r.Properties = mustJSON(p)
		return nil
	},
}

// loggerOf returns the logger a diagnostic's loggerId names: "/loggers/x", "loggers/x" or the
// full ARM id of a logger of this service.
func (w *write) loggerOf(ctx context.Context, id string) (Resource, error) {
	rel := strings.TrimPrefix(id, "/")
	if prefix := strings.TrimPrefix(ServiceID(w.svc.Ref), "/") + "/"; len(rel) > len(prefix) && strings.EqualFold(rel[:len(prefix)], prefix) {
		rel = rel[len(prefix):]
	}
	seg, name, ok := strings.Cut(rel, "/")
	if !ok || !strings.EqualFold(seg, KindLogger.Segment) || name == "" || strings.Contains(name, "/") {
		return Resource{}, invalid("properties.loggerId", "'%s' is not the id of a logger of this service", id)
	}
	r, err := w.tx.Get(ctx, KindLogger, "", name)
	if errors.Is(err, ErrNotFound) {
		return Resource{}, invalid("properties.loggerId", "the logger '%s' does not exist", name)
	}
	return r, err
}

// asInvalid turns a pkg/diagnostic rule's error into the catalog's ValidationError.
func asInvalid(err error) error {
	if de := (*diagnostic.Error)(nil); errors.As(err, &de) {
		return invalid(de.Field, "%s", de.Message)
	}
	return err
}
