package catalog

import (
	"context"
	"encoding/json"
	"time"
)

// Store is the persistence the catalog needs; the store package implements it on Postgres.
// Every method that writes configuration does so inside Write, whose transaction bumps the
// service revision and records the outbox row of the change.
type Store interface {
	GetService(ctx context.Context, ref ServiceRef) (Service, error)
	GetServiceByID(ctx context.Context, id string) (Service, error)
	// ListServices lists a tenant's services; an empty resource group lists all of them.
	ListServices(ctx context.Context, subscription, resourceGroup string, page Page) ([]Service, int, error)
	// ListServicesIn lists the services of several tenants; "*" among them lists every tenant's.
	ListServicesIn(ctx context.Context, subscriptions []string, page Page) ([]Service, int, error)
	// ServiceSecrets returns the secrets of the service itself (sealed at rest like a resource's),
	// storing create's first when the service has none yet.
	ServiceSecrets(ctx context.Context, serviceID string, create func() map[string]string) (map[string]string, error)
	// PutService inserts s when s.ID is empty (setting it) and updates it otherwise.
	PutService(ctx context.Context, s *Service) error
	// DeleteService removes the service and everything in it, publishing a deleteService change.
	DeleteService(ctx context.Context, id string) error

	Get(ctx context.Context, serviceID string, kind *Kind, parent, name string) (Resource, error)
	GetByID(ctx context.Context, id string) (Resource, error)
	// Gateways returns the gateway resources, with their secrets, of the service serviceID, or
	// of every service when serviceID is "".
	Gateways(ctx context.Context, serviceID string) ([]Resource, error)
	List(ctx context.Context, serviceID string, q Query) ([]Resource, int, error)
	// Write runs fn in one transaction at the service's next revision. If fn makes no change the
	// transaction is rolled back and no revision is spent.
	Write(ctx context.Context, serviceID string, fn func(ctx context.Context, tx Tx) error) (revision int64, err error)
	// Snapshot runs fn on a consistent read-only view of the service at its current revision.
	Snapshot(ctx context.Context, serviceID string, fn func(ctx context.Context, r SnapshotReader, revision int64) error) error
}

// Reader reads resources of one service.
type Reader interface {
	Get(ctx context.Context, kind *Kind, parent, name string) (Resource, error)
	List(ctx context.Context, q Query) ([]Resource, int, error)
}

// SnapshotReader reads a service at one revision, large reads included.
type SnapshotReader interface {
	Reader
	// Each calls fn with every resource q selects, in no particular order, as they are read,
	// so that a large read is never held whole (q's Page, All and Unordered do not apply).
	Each(ctx context.Context, q Query, fn func(Resource) error) error
}

// Tx is a write transaction on one service. Put and Delete record the change for the outbox.
type Tx interface {
	Reader
	Revision() int64
	// Put inserts or replaces r (matched by kind, parent and case-insensitive name), setting its
	// ID, ETag, Revision and timestamps.
	Put(ctx context.Context, r *Resource) error
	Delete(ctx context.Context, r Resource) error
}

// Page selects a window of a list.
type Page struct {
	Top  int // at most this many; 0 = the default page size
	Skip int
}

// Query selects resources of one kind. Zero fields do not filter.
type Query struct {
	Kind *Kind
	// Parent matches the parent path exactly (case-insensitively) unless AnyParent is set.
	Parent    string
	AnyParent bool
	// Name matches the name case-insensitively.
	Name string
	// Names matches any of the names case-insensitively.
	Names []string
	// PropEquals matches top-level string properties case-insensitively.
	PropEquals map[string]string
	// PropIn matches top-level string properties against any of several values,
	// case-insensitively.
	PropIn map[string][]string
	// NoSecrets leaves Secrets nil rather than opening them, for reads that need none.
	NoSecrets bool
	// Unordered, with All, returns matches in no particular order, sparing the sort of a large
	// read.
	Unordered bool
	// Fields, with Each, reads only these top-level properties, as text ("" when absent), into
	// Resource.Fields in this order, instead of Properties and secrets.
	Fields []string
	// KeyHash matches subscriptions holding a key with this hash.
	KeyHash string
	// Filter is an OData $filter over Kind.Filter fields.
	Filter string
	Page   Page
	// All returns every match, ignoring Page.
	All bool
}

// ServiceRef names a service by its ARM coordinates.
type ServiceRef struct {
	Subscription  string
	ResourceGroup string
	Name          string
}

// Service is an API Management service instance.
type Service struct {
	ID         string
	Ref        ServiceRef
	Location   string
	SKU        json.RawMessage
	Tags       map[string]string
	Properties json.RawMessage
	ETag       string
	Revision   int64
	Created    time.Time
	Updated    time.Time
}

// Resource is a child resource of a service. Secrets hold plaintext in memory only: the store
// seals them at rest.
type Resource struct {
	ID         string
	ServiceID  string
	Kind       *Kind
	Parent     string
	Name       string
	Properties json.RawMessage
	Secrets    map[string]string
	KeyHashes  []string
	// Fields are the properties Query.Fields asked for; their Resource has no Properties, ID,
	// ETag nor dates.
	Fields   []string
	ETag     string
	Revision int64
	Created  time.Time
	Updated  time.Time
}

// Path is the resource path below the service ("apis/echo/operations/onHandshake").
func (r Resource) Path() string { return joinPath(r.Parent, r.Kind.Segment, r.Name) }

func joinPath(parent, segment, name string) string {
	if parent == "" {
		return segment + "/" + name
	}
	return parent + "/" + segment + "/" + name
}
