// Package jsutil holds what management's JetStream users share.
package jsutil

import (
	"context"
	"errors"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
)

// EnsureStream creates the stream of want, or updates an existing one whose configuration
// differs in what management relies on. A stream that already matches is left alone: an update
// is not free for the server (it reconfigures the store while nodes create consumers), and
// management calls this on every (re)connect of every replica.
func EnsureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) error {
	s, err := js.Stream(ctx, want.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
	case err != nil:
		return err
	case matches(s.CachedInfo().Config, want):
		return nil
	}
	_, err = js.CreateOrUpdateStream(ctx, want)
	return err
}

// matches compares the fields management sets.
func matches(have, want jetstream.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.Retention == want.Retention &&
		have.Discard == want.Discard && have.Storage == want.Storage && have.MaxAge == want.MaxAge &&
		have.Duplicates == want.Duplicates && have.Replicas == max(want.Replicas, 1) &&
		have.Description == want.Description
}
