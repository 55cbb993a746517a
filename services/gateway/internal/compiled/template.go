package compiled

import "strings"

// urlTemplate matches request paths against an operation's urlTemplate ("/users/{id}/orders").
// The query part of a template is ignored for matching.
type urlTemplate struct {
	segments []string // "" for a {parameter}
	wildcard bool     // ends in {*rest}
}

func parseTemplate(t string) *urlTemplate {
	t, _, _ = strings.Cut(t, "?")
	t = strings.Trim(t, "/")
	u := &urlTemplate{}
	if t == "" {
		return u
	}
	for _, s := range strings.Split(t, "/") {
		switch {
		case strings.HasPrefix(s, "{*") && strings.HasSuffix(s, "}"):
			u.wildcard = true
			return u
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
			u.segments = append(u.segments, "")
		default:
			u.segments = append(u.segments, strings.ToLower(s))
		}
	}
	return u
}

// match reports whether rest (the path after the API's path) fits the template, and how
// specific the match is (literal segments count double), so the most specific operation wins.
func (u *urlTemplate) match(rest string) (bool, int) {
	rest = strings.Trim(rest, "/")
	var parts []string
	if rest != "" {
		parts = strings.Split(rest, "/")
	}
	if len(parts) < len(u.segments) || (!u.wildcard && len(parts) != len(u.segments)) {
		return false, 0
	}
	score := 0
	for i, seg := range u.segments {
		switch {
		case seg == "":
			if parts[i] == "" {
				return false, 0
			}
			score++
		case strings.EqualFold(seg, parts[i]):
			score += 2
		default:
			return false, 0
		}
	}
	return true, score
}

// MatchOperation returns the operation of an HTTP API matching method and the path rest.
func (a *API) MatchOperation(method, rest string) *Operation {
	var best *Operation
	bestScore := -1
	for _, op := range a.Operations {
		if op.Method != "*" && !strings.EqualFold(op.Method, method) {
			continue
		}
		if ok, score := op.template.match(rest); ok && score > bestScore {
			best, bestScore = op, score
		}
	}
	return best
}

// Handshake returns the onHandshake operation of a WebSocket API.
func (a *API) Handshake() *Operation {
	for _, op := range a.Operations {
		if strings.EqualFold(op.Name, "onHandshake") {
			return op
		}
	}
	return nil
}
