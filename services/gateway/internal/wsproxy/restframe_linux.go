package wsproxy

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The HTTP/1.1 framing the loops read and write for REST calls (rest_linux.go).

// date is the Date field of now, made once a second.
func (l *loop) date() string {
	now := time.Now()
	if sec := now.Unix(); sec != l.dateSec {
		l.dateSec, l.dateText = sec, now.UTC().Format(http.TimeFormat)
	}
	return l.dateText
}

// headEnd returns the length of the head that begins b (through the empty line that ends
// it, CRLF or a bare LF as net/http's parser allows), or -1 while it has not come whole.
func headEnd(b []byte) int {
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		switch {
		case i < len(b) && b[i] == '\n':
			return i + 1
		case i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n':
			return i + 2
		}
	}
	return -1
}

// parseResponse parses a response's head (net/http's parser) for a request req.
func parseResponse(head []byte, req *http.Request) (*http.Response, error) {
	hr := readHead(head)
	resp, err := http.ReadResponse(hr.br, req)
	left := hr.done()
	switch {
	case err != nil:
	case left != 0:
		err = errors.New("wsproxy: malformed backend response header")
	case resp.StatusCode < 100:
		// ReadResponse takes any three digits ("099", "+12"); the status line written for
		// it would have fewer, and net/http's server refuses to write it at all.
		err = errors.New("wsproxy: malformed backend response status code")
	}
	return resp, err
}

// appendStatusLine appends the status line net/http's server writes for code.
func appendStatusLine(b []byte, code int) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	if text := http.StatusText(code); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(code), 10)
	}
	return append(b, "\r\n"...)
}

// appendFields appends h's fields, each line ended by CRLF, values with line breaks
// replaced by spaces and trimmed, as net/http's Header.Write writes them.
func appendFields(b []byte, h http.Header) []byte {
	for name, vs := range h {
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n") {
				v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
			}
			b = append(b, name...)
			b = append(b, ": "...)
			b = append(b, strings.TrimSpace(v)...)
			b = append(b, "\r\n"...)
		}
	}
	return b
}

// chunkScanner follows a chunked body (RFC 9112 §7.1) as it passes, to find where it ends.
type chunkScanner struct {
	state  int
	size   int64 // of the chunk being read, then its bytes still to come
	digits int
	line   int   // bytes of the size line or trailer field so far
	excess int64 // net/http's measure of what is not data, in its bound
}

const (
	ckSize = iota
	ckOWS  // whitespace after the size
	ckExt
	ckSizeLF
	ckData
	ckDataCR
	ckDataLF
	ckTrailer
	ckTrailerName
	ckTrailerValue
	ckTrailerLF
	ckEndLF
)

// maxChunkLine bounds a chunk's size line, as net/http's reader does, and a trailer field.
const maxChunkLine = 4096

var errBadChunk = errors.New("wsproxy: malformed chunked encoding from the backend")

// scan takes p, the next bytes of the body, and returns how many of them belong to it, and
// whether the body ended with them.
func (s *chunkScanner) scan(p []byte) (n int, done bool, err error) {
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch s.state {
		case ckSize, ckOWS, ckExt: // the size line, as net/http's chunked reader reads it
			if b != '\r' {
				if s.line++; s.line >= maxChunkLine || b == '\n' {
					return 0, false, errBadChunk
				}
			}
			switch {
			case s.state == ckSize && (b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F'):
				if s.digits++; s.digits > 15 {
					return 0, false, errBadChunk
				}
				s.size = s.size<<4 | int64(unhex(b))
			case b == '\r' && s.digits > 0:
				s.state = ckSizeLF
			case s.state == ckExt:
			case b == ';' && s.state == ckSize && s.digits > 0:
				s.state = ckExt
			case (b == ' ' || b == '\t') && s.digits > 0:
				s.state = ckOWS
			default:
				return 0, false, errBadChunk
			}
		case ckSizeLF:
			if b != '\n' {
				return 0, false, errBadChunk
			}
			s.excess = max(s.excess+int64(s.line)+2-16-2*s.size, 0)
			if s.excess > 16<<10 {
				return 0, false, errBadChunk // "too much non-data"
			}
			s.state, s.line = ckData, 0
			if s.size == 0 {
				s.state = ckTrailer
			}
		case ckData:
			take := min(s.size, int64(len(p)-i))
			s.size -= take
			i += int(take) - 1
			if s.size == 0 {
				s.state = ckDataCR
			}
		case ckDataCR:
			if b != '\r' {
				return 0, false, errBadChunk
			}
			s.state = ckDataLF
		case ckDataLF:
			if b != '\n' {
				return 0, false, errBadChunk
			}
			s.state, s.digits, s.line = ckSize, 0, 0
		case ckTrailer: // a field "name: value", as net/http's header reader takes it, or the end
			switch {
			case b == '\r':
				s.state = ckEndLF
			case httpguts.IsTokenRune(rune(b)):
				s.state, s.line = ckTrailerName, 1
			default:
				return 0, false, errBadChunk
			}
		case ckTrailerName:
			switch {
			case b == ':':
				s.state = ckTrailerValue
			case !httpguts.IsTokenRune(rune(b)) || s.line >= maxChunkLine:
				return 0, false, errBadChunk
			}
			s.line++
		case ckTrailerValue:
			switch {
			case b == '\r':
				s.state = ckTrailerLF
			case b < ' ' && b != '\t' || b == 0x7f || s.line >= maxChunkLine:
				return 0, false, errBadChunk
			}
			s.line++
		case ckTrailerLF:
			if b != '\n' {
				return 0, false, errBadChunk
			}
			s.state = ckTrailer
		case ckEndLF:
			if b != '\n' {
				return 0, false, errBadChunk
			}
			return i + 1, true, nil
		}
	}
	return len(p), false, nil
}

func unhex(b byte) byte {
	switch {
	case b <= '9':
		return b - '0'
	case b >= 'a':
		return b - 'a' + 10
	}
	return b - 'A' + 10
}
