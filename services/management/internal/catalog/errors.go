package catalog

import (
	"errors"
	"fmt"
)

// Domain errors. The store translates driver errors into these; the api package is the one place
// that maps them to ARM error envelopes.
var (
	ErrNotFound           = errors.New("not found")
	ErrConflict           = errors.New("conflict")
	ErrPreconditionFailed = errors.New("precondition failed")
	ErrInvalidToken       = errors.New("invalid gateway token")
)

// NotFoundError says which kind of resource was missing ("Api", "Product").
type NotFoundError struct{ What string }

func (e *NotFoundError) Error() string        { return e.What + " not found." }
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

func notFound(what string) error { return &NotFoundError{What: what} }

// ValidationError is a bad field value; Target names the field as the caller sent it.
type ValidationError struct {
	Target  string
	Message string
}

func (e *ValidationError) Error() string { return fmt.Sprintf("%s: %s", e.Target, e.Message) }

func invalid(target, format string, args ...any) error {
	return &ValidationError{Target: target, Message: fmt.Sprintf(format, args...)}
}

// PreconditionError is a write refused by a conditional header: Header names it ("If-Match",
// "If-None-Match").
type PreconditionError struct{ Header string }

func (e *PreconditionError) Error() string        { return "precondition failed: " + e.Header }
func (e *PreconditionError) Is(target error) bool { return target == ErrPreconditionFailed }

// ConflictError is a write refused because of the state of other resources.
type ConflictError struct{ Message string }

func (e *ConflictError) Error() string        { return e.Message }
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// FilterError is a $filter the store cannot evaluate.
type FilterError struct{ Message string }

func (e *FilterError) Error() string { return e.Message }
