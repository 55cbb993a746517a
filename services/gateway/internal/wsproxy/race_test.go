//go:build race

package wsproxy_test

const raceEnabled = true
