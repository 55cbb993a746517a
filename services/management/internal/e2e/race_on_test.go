//go:build race

package e2e

// raceEnabled builds the gateway binary with the race detector when the tests run with -race.
const raceEnabled = true
