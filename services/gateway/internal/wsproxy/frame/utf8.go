package frame

import "unicode/utf8"

// UTF8 checks that a text message is valid UTF-8 (RFC 6455 §8.1) as its payload arrives in
// pieces: frames of a fragmented message and chunks of a frame may split a character. The
// zero value is ready for a message's first byte; Reset starts another message.
type UTF8 struct {
	carry [utf8.UTFMax]byte // the start of a character the last piece cut short
	n     int
}

// Reset forgets any partial character, for a new message.
func (v *UTF8) Reset() { v.n = 0 }

// Write checks the next piece p of the message and reports whether the message is still
// valid UTF-8 so far: a character cut short at the end of p waits for the next piece.
func (v *UTF8) Write(p []byte) bool {
	if v.n > 0 {
		for len(p) > 0 && !utf8.FullRune(v.carry[:v.n]) {
			v.carry[v.n] = p[0]
			v.n++
			p = p[1:]
		}
		if !utf8.FullRune(v.carry[:v.n]) {
			return true // p ended inside the character
		}
		if r, size := utf8.DecodeRune(v.carry[:v.n]); r == utf8.RuneError && size <= 1 || size != v.n {
			return false
		}
		v.n = 0
	}
	// Hold back a character cut short at the end: at most UTFMax-1 bytes from a rune start.
	tail := len(p)
	for i := len(p) - 1; i >= 0 && i >= len(p)-(utf8.UTFMax-1); i-- {
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				tail = i
			}
			break
		}
	}
	if !utf8.Valid(p[:tail]) {
		return false
	}
	v.n = copy(v.carry[:], p[tail:])
	return true
}

// Done reports whether the message ended on a whole character; call it after the last piece.
func (v *UTF8) Done() bool { return v.n == 0 }
