package configwire

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// SnapshotPath is management's snapshot endpoint, relative to its base URL: a gateway node
// fetches its configuration there with GET, presenting
// "Authorization: GatewayKey <token from generateToken>". A node that accepts
// SnapshotStreamType gets a snapshot stream, anyone else the JSON document.
const SnapshotPath = "/gatehouse/gateway/v1/config"

// A snapshot travels in one of two formats, which a gateway and management negotiate with the
// Accept and Content-Type headers of the snapshot request:
//
//   - SnapshotJSON, the JSON document of a Snapshot, for every client that asks for nothing
//     else;
//   - SnapshotStream, for gateways that send "Accept: " + SnapshotStreamType: a stream of
//     frames that management writes as it reads the rows and a gateway loads as they arrive,
//     with subscriptions in their compact form (Subscription), about a third of the size of
//     their entities and decoded twenty times faster.
//
// A stream starts with the 8 bytes "GHSNAP2\n", by which ReadSnapshot tells it from a JSON
// document (a stored snapshot has no Content-Type). Then come frames, each a varint length and
// a protocol buffers message of that length holding exactly one field:
//
//	message Frame {
//	  oneof frame {
//	    bytes header = 1;             // JSON of the Snapshot, without entities; the first frame
//	    bytes entity = 2;             // JSON of an Entity
//	    Subscription subscription = 3;
//	    End end = 4;                  // the last frame
//	    Seal seal = 5;                // management's signature; just before End
//	  }
//	}
//	message Seal {
//	  string key_id = 1;              // a VerifyKey's id
//	  bytes signature = 2;            // Ed25519 over the service, revision and SHA-256 of
//	                                  // every byte of the stream before this frame
//	}
//	message Subscription {
//	  string name = 1;
//	  string scope = 2;               // relative, as Subscription.Scope
//	  string state = 3;
//	  string owner_id = 4;
//	  int64 start_date = 5;           // Unix seconds; absent when unknown
//	  repeated bytes key_hash = 6;    // 32 bytes each
//	}
//	message End {
//	  uint64 entities = 1;            // entity frames written
//	  uint64 subscriptions = 2;       // subscription frames written
//	}
//
// A stream without its end frame, or whose counts differ, is incomplete: management aborts the
// response when it fails after the first bytes. Readers skip frames and fields they do not
// know; a writer adds one only for information that a reader may ignore, and anything else
// needs a new media type. A sealed stream (SnapshotWriter.Sign) has its Seal frame right before
// its End frame; ReadSnapshot reports it in Snapshot.Seal and Verifier.VerifySnapshot checks it.
const (
	// SnapshotStreamType is the media type of a snapshot stream.
	SnapshotStreamType = "application/vnd.gatehouse.snapshot.v2"
	snapshotMagic      = "GHSNAP2\n"
	// maxFrameBytes bounds one frame, so that a corrupt length cannot make a reader allocate
	// gigabytes; entities are at most a few hundred KB (a policy document).
	maxFrameBytes = 64 << 20
)

// SnapshotFormat is how a snapshot is encoded.
type SnapshotFormat int

// Snapshot formats.
const (
	SnapshotJSON SnapshotFormat = iota
	SnapshotStream
)

// Frame, Subscription and End field numbers.
const (
	frameHeader       protowire.Number = 1
	frameEntity       protowire.Number = 2
	frameSubscription protowire.Number = 3
	frameEnd          protowire.Number = 4
	frameSeal         protowire.Number = 5

	subName      protowire.Number = 1
	subScope     protowire.Number = 2
	subState     protowire.Number = 3
	subOwnerID   protowire.Number = 4
	subStartDate protowire.Number = 5
	subKeyHash   protowire.Number = 6

	endEntities      protowire.Number = 1
	endSubscriptions protowire.Number = 2

	sealKeyID     protowire.Number = 1
	sealSignature protowire.Number = 2
)

// SnapshotWriter writes a snapshot an entity at a time, so that memory does not grow with its
// size. It buffers: Close writes what is left. It is not safe for concurrent use.
type SnapshotWriter struct {
	format SnapshotFormat
	w      *bufio.Writer
	// hash sees every byte of a stream written to w, for its seal; signer seals it.
	hash   hash.Hash
	signer *Signer
	head   Snapshot
	// enc encodes entities to w in a JSON snapshot and to ent in a stream, without escaping
	// HTML (policies are XML).
	enc        *json.Encoder
	ent        bytes.Buffer
	buf        []byte
	ents, subs uint64
}

// NewSnapshotWriter writes the start of a snapshot with the header h (its Entities are
// ignored) to w.
func NewSnapshotWriter(w io.Writer, format SnapshotFormat, h Snapshot) (*SnapshotWriter, error) {
	sw := &SnapshotWriter{format: format, hash: sha256.New(), head: h}
	sw.w = bufio.NewWriterSize(w, 64<<10)
	if format == SnapshotStream {
		sw.w = bufio.NewWriterSize(io.MultiWriter(w, sw.hash), 64<<10)
	}
	h.Entities = []Entity{}
	head, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	switch format {
	case SnapshotJSON:
		// head ends with the empty entity list, `[]}`: the entities go between its brackets.
		if !bytes.HasSuffix(head, []byte("[]}")) {
			return nil, errors.New("configwire: the snapshot encoding does not end with its entities")
		}
		_, _ = sw.w.Write(head[:len(head)-2])
		sw.enc = json.NewEncoder(sw.w)
	case SnapshotStream:
		_, _ = sw.w.WriteString(snapshotMagic)
		sw.frame(frameHeader, head)
		sw.enc = json.NewEncoder(&sw.ent)
	default:
		return nil, fmt.Errorf("configwire: unknown snapshot format %d", format)
	}
	sw.enc.SetEscapeHTML(false)
	return sw, nil
}

// frame writes a frame holding payload as field num. Errors stick in the bufio.Writer.
func (sw *SnapshotWriter) frame(num protowire.Number, payload []byte) {
	var head [3 * binary.MaxVarintLen64]byte
	b := protowire.AppendVarint(head[:0], uint64(protowire.SizeTag(num)+protowire.SizeBytes(len(payload))))
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(payload)))
	_, _ = sw.w.Write(b)
	_, _ = sw.w.Write(payload)
}

// Sign makes Close seal a snapshot stream with s: the seal signs the header's service id and
// revision and the SHA-256 of every byte written before it. A JSON snapshot is not sealed;
// gateway nodes ask for streams.
func (sw *SnapshotWriter) Sign(s *Signer) { sw.signer = s }

// WriteEntity writes an entity; a subscription entity goes as it is, with all its properties.
func (sw *SnapshotWriter) WriteEntity(e Entity) error {
	sw.ents++
	if sw.format == SnapshotJSON {
		if sw.ents > 1 {
			_ = sw.w.WriteByte(',')
		}
		return sw.enc.Encode(e)
	}
	sw.ent.Reset()
	if err := sw.enc.Encode(e); err != nil {
		return err
	}
	sw.frame(frameEntity, bytes.TrimSuffix(sw.ent.Bytes(), []byte("\n")))
	return nil
}

// WriteSubscription writes a subscription in its compact form; in a JSON snapshot, as its
// Entity.
func (sw *SnapshotWriter) WriteSubscription(s Subscription) error {
	if sw.format == SnapshotJSON {
		return sw.WriteEntity(s.Entity())
	}
	sw.subs++
	b := sw.buf[:0]
	for _, f := range []struct {
		num protowire.Number
		v   string
	}{{subName, s.Name}, {subScope, s.Scope}, {subState, s.State}, {subOwnerID, s.OwnerID}} {
		if f.v != "" {
			b = protowire.AppendTag(b, f.num, protowire.BytesType)
			b = protowire.AppendString(b, f.v)
		}
	}
	if !s.StartDate.IsZero() {
		b = protowire.AppendTag(b, subStartDate, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(s.StartDate.Unix()))
	}
	for _, h := range s.KeyHashes {
		b = protowire.AppendTag(b, subKeyHash, protowire.BytesType)
		b = protowire.AppendBytes(b, h[:])
	}
	sw.buf = b
	sw.frame(frameSubscription, b)
	return nil
}

// Close ends the snapshot and flushes it; it does not close the underlying writer. It reports
// the first error of any write.
func (sw *SnapshotWriter) Close() error {
	if sw.format == SnapshotJSON {
		_, _ = sw.w.WriteString("]}\n")
	} else {
		if sw.signer != nil {
			if err := sw.w.Flush(); err != nil {
				return err
			}
			sig := sw.signer.sign(snapshotMessage(sw.head.ServiceID, sw.head.Revision, [sha256.Size]byte(sw.hash.Sum(nil))))
			b := protowire.AppendTag(nil, sealKeyID, protowire.BytesType)
			b = protowire.AppendString(b, sw.signer.KeyID())
			b = protowire.AppendTag(b, sealSignature, protowire.BytesType)
			b = protowire.AppendBytes(b, sig)
			sw.frame(frameSeal, b)
		}
		b := protowire.AppendTag(nil, endEntities, protowire.VarintType)
		b = protowire.AppendVarint(b, sw.ents)
		b = protowire.AppendTag(b, endSubscriptions, protowire.VarintType)
		b = protowire.AppendVarint(b, sw.subs)
		sw.frame(frameEnd, b)
	}
	return sw.w.Flush() // a failed write is sticky in bufio.Writer and surfaces here
}

// SnapshotHandler receives the items of a snapshot as ReadSnapshot decodes them, in order.
// Subscriptions come in their compact form whatever the format; the KeyHashes of one are only
// valid until Subscription returns (a reader reuses them).
type SnapshotHandler struct {
	Entity       func(Entity) error
	Subscription func(Subscription) error
}

// ReadSnapshot reads a snapshot in either format from r, handing each item to h as it is
// decoded, and returns the snapshot without its entities. An error of h stops it and is
// returned as it is. The strings of the Subscriptions it hands over for scopes, states and
// owners are shared between equal values.
func ReadSnapshot(r io.Reader, h SnapshotHandler) (Snapshot, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if magic, _ := br.Peek(len(snapshotMagic)); string(magic) == snapshotMagic {
		_, _ = br.Discard(len(snapshotMagic))
		sr := &streamReader{r: br, h: h, strings: map[string]string{}, hash: sha256.New()}
		sr.hash.Write([]byte(snapshotMagic))
		return sr.read()
	}
	return readJSON(br, h)
}

// DecodeSnapshot reads a whole snapshot in either format into memory, its subscriptions as
// entities (Subscription.Entity): for small snapshots, and tests.
func DecodeSnapshot(r io.Reader) (Snapshot, error) {
	var ents []Entity
	snap, err := ReadSnapshot(r, SnapshotHandler{
		Entity: func(e Entity) error {
			ents = append(ents, e)
			return nil
		},
		Subscription: func(s Subscription) error {
			ents = append(ents, s.Entity())
			return nil
		},
	})
	snap.Entities = ents
	return snap, err
}

// readJSON reads the JSON document of a snapshot, whose header fields may come before or after
// its entities.
func readJSON(r io.Reader, h SnapshotHandler) (Snapshot, error) {
	var snap Snapshot
	dec := json.NewDecoder(r)
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return snap, fmt.Errorf("not a snapshot: neither a stream nor a JSON object (%v)", err)
	}
	rest := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return snap, err
		}
		key, _ := t.(string)
		if !strings.EqualFold(key, "entities") {
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				return snap, err
			}
			rest[key] = v
			continue
		}
		if t, err = dec.Token(); err != nil {
			return snap, err
		}
		if t == nil {
			continue // null: no entities
		}
		if t != json.Delim('[') {
			return snap, errors.New("entities is not an array")
		}
		for dec.More() {
			var e Entity
			if err := dec.Decode(&e); err != nil {
				return snap, err
			}
			if err := h.entity(e); err != nil {
				return snap, err
			}
		}
		if _, err := dec.Token(); err != nil { // ]
			return snap, err
		}
	}
	if _, err := dec.Token(); err != nil { // }
		return snap, err
	}
	raw, err := json.Marshal(rest)
	if err != nil {
		return snap, err
	}
	return snap, json.Unmarshal(raw, &snap)
}

// entity hands e over, a subscription in its compact form.
func (h SnapshotHandler) entity(e Entity) error {
	if e.Kind != KindSubscription {
		return h.Entity(e)
	}
	s, err := SubscriptionOf(e)
	if err != nil {
		return err
	}
	return h.Subscription(s)
}

type streamReader struct {
	r          *bufio.Reader
	h          SnapshotHandler
	buf        []byte
	ents, subs uint64
	// strings interns scopes, states and owners; hashes holds the key hashes of the
	// subscription being read.
	strings map[string]string
	hashes  [][sha256.Size]byte
	// hash sees every frame read; seal is the seal frame, once read, with the digest of what
	// came before it.
	hash       hash.Hash
	seal       *Seal
	sealDigest [sha256.Size]byte
}

var errTruncated = errors.New("the snapshot stream ends before its end frame")

func (sr *streamReader) read() (Snapshot, error) {
	var snap Snapshot
	for first := true; ; first = false {
		num, v, err := sr.next()
		if err != nil {
			return snap, err
		}
		switch {
		case first && num != frameHeader:
			return snap, errors.New("snapshot stream: no header first")
		case !first && num == frameHeader:
			return snap, errors.New("snapshot stream: a second header")
		case sr.seal != nil && num != frameEnd:
			return snap, errors.New("snapshot stream: a frame other than the end after the seal")
		}
		switch num {
		case frameHeader:
			if err := json.Unmarshal(v, &snap); err != nil {
				return snap, fmt.Errorf("snapshot header: %w", err)
			}
			snap.Entities = nil
		case frameEntity:
			var e Entity
			if err := json.Unmarshal(v, &e); err != nil {
				return snap, fmt.Errorf("entity %d: %w", sr.ents+1, err)
			}
			sr.ents++
			if err := sr.h.entity(e); err != nil {
				return snap, err
			}
		case frameSubscription:
			s, err := sr.subscription(v)
			if err != nil {
				return snap, fmt.Errorf("subscription %d: %w", sr.subs+1, err)
			}
			sr.subs++
			if err := sr.h.Subscription(s); err != nil {
				return snap, err
			}
		case frameSeal:
			if err := sr.readSeal(v); err != nil {
				return snap, err
			}
		case frameEnd:
			snap.Seal = sr.seal
			return snap, sr.end(v)
		}
	}
}

// next reads a frame and returns its field number and the bytes of its value.
func (sr *streamReader) next() (protowire.Number, []byte, error) {
	n, err := binary.ReadUvarint(sr.r)
	switch {
	case errors.Is(err, io.EOF):
		return 0, nil, errTruncated
	case err != nil:
		return 0, nil, fmt.Errorf("snapshot stream: %w", err)
	case n > maxFrameBytes:
		return 0, nil, fmt.Errorf("snapshot stream: a frame of %d bytes (at most %d)", n, maxFrameBytes)
	}
	if uint64(cap(sr.buf)) < n {
		sr.buf = make([]byte, n)
	}
	b := sr.buf[:n]
	if _, err := io.ReadFull(sr.r, b); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return 0, nil, errTruncated
		}
		return 0, nil, fmt.Errorf("snapshot stream: %w", err)
	}
	num, typ, k := protowire.ConsumeTag(b)
	if k < 0 {
		return 0, nil, fmt.Errorf("snapshot stream: %w", protowire.ParseError(k))
	}
	if num == frameSeal {
		sr.sealDigest = [sha256.Size]byte(sr.hash.Sum(nil))
	}
	var lenBuf [binary.MaxVarintLen64]byte
	sr.hash.Write(protowire.AppendVarint(lenBuf[:0], n))
	sr.hash.Write(b)
	if typ != protowire.BytesType {
		// Every frame holds bytes or a message; a later version may add other kinds.
		if m := protowire.ConsumeFieldValue(num, typ, b[k:]); m < 0 || k+m != len(b) {
			return 0, nil, errors.New("snapshot stream: a malformed frame")
		}
		return 0, nil, nil
	}
	v, m := protowire.ConsumeBytes(b[k:])
	if m < 0 || k+m != len(b) {
		return 0, nil, errors.New("snapshot stream: a malformed frame")
	}
	return num, v, nil
}

// subscription decodes a Subscription message.
func (sr *streamReader) subscription(b []byte) (Subscription, error) {
	var s Subscription
	sr.hashes = sr.hashes[:0]
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return s, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == subStartDate && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return s, protowire.ParseError(n)
			}
			b = b[n:]
			s.StartDate = time.Unix(int64(v), 0).UTC()
		case num >= subName && num <= subKeyHash && num != subStartDate && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return s, protowire.ParseError(n)
			}
			b = b[n:]
			switch num {
			case subName:
				s.Name = string(v)
			case subScope:
				s.Scope = sr.intern(v)
			case subState:
				s.State = sr.intern(v)
			case subOwnerID:
				s.OwnerID = sr.intern(v)
			case subKeyHash:
				if len(v) != sha256.Size {
					return s, fmt.Errorf("a key hash of %d bytes", len(v))
				}
				sr.hashes = append(sr.hashes, [sha256.Size]byte(v))
				s.KeyHashes = sr.hashes
			}
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return s, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	if s.Name == "" {
		return s, errors.New("no name")
	}
	return s, nil
}

func (sr *streamReader) intern(b []byte) string {
	if s, ok := sr.strings[string(b)]; ok {
		return s
	}
	s := string(b)
	sr.strings[s] = s
	return s
}

// readSeal decodes a Seal message.
func (sr *streamReader) readSeal(b []byte) error {
	if sr.seal != nil {
		return errors.New("snapshot stream: a second seal")
	}
	seal := &Seal{Digest: sr.sealDigest}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("snapshot seal: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.BytesType || (num != sealKeyID && num != sealSignature) {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return fmt.Errorf("snapshot seal: %w", protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return fmt.Errorf("snapshot seal: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num == sealKeyID {
			seal.KeyID = string(v)
		} else {
			seal.Signature = bytes.Clone(v)
		}
	}
	sr.seal = seal
	return nil
}

// end checks the end frame against what was read, and that nothing follows it.
func (sr *streamReader) end(b []byte) error {
	var ents, subs uint64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("snapshot end: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.VarintType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return fmt.Errorf("snapshot end: %w", protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return fmt.Errorf("snapshot end: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch num {
		case endEntities:
			ents = v
		case endSubscriptions:
			subs = v
		}
	}
	if ents != sr.ents || subs != sr.subs {
		return fmt.Errorf("snapshot stream: %d entities and %d subscriptions read, %d and %d written", sr.ents, sr.subs, ents, subs)
	}
	if _, err := sr.r.Peek(1); !errors.Is(err, io.EOF) {
		if err != nil {
			return fmt.Errorf("snapshot stream: %w", err)
		}
		return errors.New("snapshot stream: data after the end frame")
	}
	return nil
}
