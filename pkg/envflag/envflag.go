// Package envflag gives command-line flags their defaults from environment variables, so every
// setting of the operator contract (docs/design.md §5) is both a flag and a variable of the same
// meaning. A malformed variable is an error, never silently replaced by the default.
package envflag

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Env reads variables and remembers the malformed ones. The zero value is ready to use; it is
// not safe for concurrent use (flags are parsed once, in main).
type Env struct {
	errs []error
}

// String returns the variable name, or def when it is not set.
func (e *Env) String(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// Int returns the variable name as an integer, or def when it is not set.
func (e *Env) Int(name string, def int64) int64 {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q is not an integer", name, v))
		return def
	}
	return n
}

// Duration returns the variable name as a Go duration ("30s", "1h"), or def when it is not set.
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q is not a duration such as 30s or 5m", name, v))
		return def
	}
	return d
}

// Bool returns the variable name as a boolean (1, t, true, 0, f, false, any case, as
// strconv.ParseBool reads them), or def when it is not set.
func (e *Env) Bool(name string, def bool) bool {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q is not a boolean such as true or false", name, v))
		return def
	}
	return b
}

// Err reports every malformed variable read so far, or nil.
func (e *Env) Err() error { return errors.Join(e.errs...) }
