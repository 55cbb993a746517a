// Package migrations holds the management database schema as ordered SQL files, embedded so the
// management binary can apply them at start without reading the source tree.
package migrations

import "embed"

// FS holds every *.sql migration in this folder, applied in file-name order by goose.
//
//go:embed *.sql
var FS embed.FS
