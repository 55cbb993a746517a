// Package layering holds no code: its test enforces the dependency rules of docs/design.md
// (what may import what), so that a change that breaks the layering fails make test.
package layering
