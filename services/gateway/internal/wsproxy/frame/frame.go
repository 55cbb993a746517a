// Package frame reads and writes WebSocket frame headers (RFC 6455 §5.2) so a relay can
// forward frames verbatim while checking only what it must.
package frame

import (
	"encoding/binary"
	"errors"
	"unicode/utf8"
)

// Opcode is a frame's opcode (RFC 6455 §5.2).
type Opcode uint8

// Opcodes defined by RFC 6455 §11.8. Every other value is reserved and rejected by Parse.
const (
	OpContinuation Opcode = 0x0
	OpText         Opcode = 0x1
	OpBinary       Opcode = 0x2
	OpClose        Opcode = 0x8
	OpPing         Opcode = 0x9
	OpPong         Opcode = 0xA
)

// Control reports whether o is a control opcode (close, ping, pong, or a reserved 0xB–0xF).
func (o Opcode) Control() bool { return o&0x8 != 0 }

// Defined reports whether o is one of the six opcodes RFC 6455 defines.
func (o Opcode) Defined() bool {
	switch o {
	case OpContinuation, OpText, OpBinary, OpClose, OpPing, OpPong:
		return true
	}
	return false
}

// Sizes from RFC 6455 §5.2 and §5.5.
const (
	// MaxHeaderLen is the longest header: 2 bytes, a 64-bit length and a masking key.
	MaxHeaderLen = 14
	// MaxControlPayload is the largest payload a control frame may carry.
	MaxControlPayload = 125
	// MaxCloseReason is the longest close reason that fits a control frame after the code.
	MaxCloseReason = MaxControlPayload - 2
)

// Bits of a header's Rsv field.
const (
	Rsv1 uint8 = 0x4 // permessage-deflate's "compressed" bit (RFC 7692 §6)
	Rsv2 uint8 = 0x2
	Rsv3 uint8 = 0x1
)

// Errors returned by Parse and Header.Validate. They all mean the peer broke the protocol,
// except ErrShort, which means more bytes are needed.
var (
	ErrShort             = errors.New("frame: header incomplete")
	ErrReservedOpcode    = errors.New("frame: reserved opcode")
	ErrControlTooLong    = errors.New("frame: control frame payload longer than 125 bytes")
	ErrControlFragmented = errors.New("frame: fragmented control frame")
	ErrLength            = errors.New("frame: payload length out of range")
	ErrNonMinimalLength  = errors.New("frame: payload length not minimally encoded")
	ErrRsv               = errors.New("frame: reserved bits out of range")
)

// Header is a decoded frame header. The zero value is a non-final continuation frame with
// an empty payload.
type Header struct {
	Fin    bool
	Rsv    uint8 // RSV1–RSV3 as Rsv1|Rsv2|Rsv3; meaning is up to negotiated extensions
	Opcode Opcode
	Masked bool
	Mask   [4]byte // meaningful only when Masked
	Length int64   // payload length, 0 ≤ Length < 2^63
}

// Len returns the number of bytes h occupies when encoded.
func (h Header) Len() int {
	n := 2
	switch {
	case h.Length > 0xFFFF:
		n += 8
	case h.Length > 125:
		n += 2
	}
	if h.Masked {
		n += 4
	}
	return n
}

// Validate checks the rules RFC 6455 §5.2 and §5.5 place on a header alone: a defined
// opcode, control frames final and at most 125 bytes, a non-negative length. Whether the
// frame must be masked depends on who sent it; see CheckMask.
func (h Header) Validate() error {
	switch {
	case h.Rsv > Rsv1|Rsv2|Rsv3:
		return ErrRsv
	case !h.Opcode.Defined():
		return ErrReservedOpcode
	case h.Length < 0:
		return ErrLength
	case h.Opcode.Control() && h.Length > MaxControlPayload:
		return ErrControlTooLong
	case h.Opcode.Control() && !h.Fin:
		return ErrControlFragmented
	}
	return nil
}

// Errors returned by CheckMask.
var (
	ErrUnmasked = errors.New("frame: client frame not masked")
	ErrMasked   = errors.New("frame: server frame masked")
)

// CheckMask enforces RFC 6455 §5.1: frames from a client are masked, frames from a server
// are not.
func (h Header) CheckMask(fromClient bool) error {
	switch {
	case fromClient && !h.Masked:
		return ErrUnmasked
	case !fromClient && h.Masked:
		return ErrMasked
	}
	return nil
}

// HeaderLen returns the length of the header whose first two bytes are b0 and b1.
func HeaderLen(b0, b1 byte) int {
	n := 2
	switch b1 & 0x7F {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// Parse decodes the header at the start of b and returns it with its encoded length. It
// returns ErrShort when b holds less than a whole header, and one of the other errors when
// the header breaks RFC 6455: a reserved opcode, a long or fragmented control frame, a
// 64-bit length with its most significant bit set, or a length not encoded in the fewest
// bytes (§5.2: "the minimal number of bytes MUST be used"). A header Parse accepts encodes
// back to exactly the bytes it was parsed from.
func Parse(b []byte) (Header, int, error) {
	if len(b) < 2 {
		return Header{}, 0, ErrShort
	}
	n := HeaderLen(b[0], b[1])
	if len(b) < n {
		return Header{}, 0, ErrShort
	}
	h := Header{
		Fin:    b[0]&0x80 != 0,
		Rsv:    (b[0] >> 4) & 0x7,
		Opcode: Opcode(b[0] & 0xF),
		Masked: b[1]&0x80 != 0,
	}
	i := 2
	switch l := b[1] & 0x7F; l {
	case 126:
		v := binary.BigEndian.Uint16(b[2:])
		if v <= 125 {
			return Header{}, 0, ErrNonMinimalLength
		}
		h.Length = int64(v)
		i += 2
	case 127:
		v := binary.BigEndian.Uint64(b[2:])
		if v>>63 != 0 {
			return Header{}, 0, ErrLength
		}
		if v <= 0xFFFF {
			return Header{}, 0, ErrNonMinimalLength
		}
		h.Length = int64(v)
		i += 8
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		copy(h.Mask[:], b[i:i+4])
	}
	if err := h.Validate(); err != nil {
		return Header{}, 0, err
	}
	return h, n, nil
}

// AppendHeader appends the encoding of h to b. It returns an error, and b unchanged, if h
// fails Validate.
func AppendHeader(b []byte, h Header) ([]byte, error) {
	if err := h.Validate(); err != nil {
		return b, err
	}
	b0 := byte(h.Opcode) | h.Rsv<<4
	if h.Fin {
		b0 |= 0x80
	}
	var m byte
	if h.Masked {
		m = 0x80
	}
	switch {
	case h.Length > 0xFFFF:
		b = append(b, b0, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(h.Length))
	case h.Length > 125:
		b = append(b, b0, m|126)
		b = binary.BigEndian.AppendUint16(b, uint16(h.Length))
	default:
		b = append(b, b0, m|byte(h.Length))
	}
	if h.Masked {
		b = append(b, h.Mask[:]...)
	}
	return b, nil
}

// AppendFrame appends a whole frame: h with h.Length set to len(payload), then payload,
// masked with h.Mask when h.Masked. payload itself is not modified.
func AppendFrame(b []byte, h Header, payload []byte) ([]byte, error) {
	h.Length = int64(len(payload))
	b, err := AppendHeader(b, h)
	if err != nil {
		return b, err
	}
	start := len(b)
	b = append(b, payload...)
	if h.Masked {
		MaskBytes(h.Mask, 0, b[start:])
	}
	return b, nil
}

// MaskBytes XORs b with key as RFC 6455 §5.3 describes, starting at payload offset pos, and
// returns the offset after b. Masking and unmasking are the same operation.
func MaskBytes(key [4]byte, pos int, b []byte) int {
	end := pos + len(b)
	// Byte by byte up to a multiple of 4 bytes into the payload, then eight bytes at a time
	// with the key rotated to match, then the tail.
	i := 0
	for ; i < len(b) && (pos+i)&3 != 0; i++ {
		b[i] ^= key[(pos+i)&3]
	}
	if len(b)-i >= 8 {
		k := uint64(binary.LittleEndian.Uint32(key[:]))
		k |= k << 32
		for ; len(b)-i >= 8; i += 8 {
			binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k)
		}
	}
	for ; i < len(b); i++ {
		b[i] ^= key[(pos+i)&3]
	}
	return end
}

// Close status codes (RFC 6455 §7.4.1) a relay uses or must recognise.
const (
	CloseNormal          uint16 = 1000
	CloseGoingAway       uint16 = 1001
	CloseProtocolError   uint16 = 1002
	CloseNoStatus        uint16 = 1005 // never sent on the wire
	CloseAbnormal        uint16 = 1006 // never sent on the wire
	CloseInvalidPayload  uint16 = 1007
	ClosePolicyViolation uint16 = 1008
	CloseMessageTooBig   uint16 = 1009
	CloseInternalError   uint16 = 1011
)

// ErrClosePayload reports a close frame payload of one byte (§5.5.1 requires zero or ≥2).
var ErrClosePayload = errors.New("frame: close payload of one byte")

// ParseClose decodes an unmasked close frame payload. An empty payload yields
// CloseNoStatus and no reason. The reason aliases payload.
func ParseClose(payload []byte) (code uint16, reason []byte, err error) {
	switch len(payload) {
	case 0:
		return CloseNoStatus, nil, nil
	case 1:
		return 0, nil, ErrClosePayload
	}
	return binary.BigEndian.Uint16(payload), payload[2:], nil
}

// Errors returned by CheckClose.
var (
	ErrCloseCode   = errors.New("frame: close code not allowed on the wire")
	ErrCloseReason = errors.New("frame: close reason not valid UTF-8")
)

// CheckClose enforces RFC 6455 §5.5.1 and §7.4 on an unmasked close frame payload: empty, or
// a code that SendableCloseCode allows followed by a UTF-8 reason. It returns
// ErrClosePayload, ErrCloseCode or ErrCloseReason, and nil for a payload a relay may pass on.
func CheckClose(payload []byte) error {
	code, reason, err := ParseClose(payload)
	switch {
	case err != nil:
		return err
	case len(payload) == 0:
		return nil
	case !SendableCloseCode(code):
		return ErrCloseCode
	case !utf8.Valid(reason):
		return ErrCloseReason
	}
	return nil
}

// SendableCloseCode reports whether code may appear in a close frame (RFC 6455 §7.4.1–§7.4.2:
// 1000–1003, 1007–1014 and 3000–4999; 1005, 1006 and 1015 are for reporting only).
func SendableCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// AppendClose appends a close frame carrying code and reason, masked with mask when mask is
// non-nil. A reason longer than MaxCloseReason bytes is cut at a UTF-8 boundary so the frame
// stays a valid control frame. The caller ensures SendableCloseCode(code).
func AppendClose(b []byte, code uint16, reason string, mask *[4]byte) []byte {
	if len(reason) > MaxCloseReason {
		cut := MaxCloseReason
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	var p [MaxControlPayload]byte
	binary.BigEndian.PutUint16(p[:], code)
	n := 2 + copy(p[2:], reason)
	h := Header{Fin: true, Opcode: OpClose}
	if mask != nil {
		h.Masked, h.Mask = true, *mask
	}
	b, _ = AppendFrame(b, h, p[:n]) // a close frame of ≤125 bytes always validates
	return b
}
