package configwire_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protowire"

	"gatehouse.dev/pkg/configwire"
)

// read is what ReadSnapshot handed over.
type read struct {
	Header        configwire.Snapshot
	Entities      []configwire.Entity
	Subscriptions []configwire.Subscription
}

func readAll(t testing.TB, raw []byte) (read, error) {
	t.Helper()
	var got read
	var err error
	got.Header, err = configwire.ReadSnapshot(bytes.NewReader(raw), configwire.SnapshotHandler{
		Entity: func(e configwire.Entity) error {
			got.Entities = append(got.Entities, e)
			return nil
		},
		Subscription: func(s configwire.Subscription) error {
			s.KeyHashes = slices.Clone(s.KeyHashes) // the reader reuses them
			got.Subscriptions = append(got.Subscriptions, s)
			return nil
		},
	})
	return got, err
}

func hash(key string) [sha256.Size]byte { return sha256.Sum256([]byte(key)) }

// sample is a snapshot with an entity of each shape and subscriptions of every field.
func sample() (configwire.Snapshot, []configwire.Entity, []configwire.Subscription) {
	h := configwire.Snapshot{ServiceID: "svc-1", Service: "svc", Gateway: "edge", Revision: 42,
		NATS: configwire.NATSInfo{URLs: []string{"nats://127.0.0.1:4222"}, Stream: "S", Subject: "cfg.svc-1"}}
	ents := []configwire.Entity{
		{Kind: configwire.KindAPI, Name: "echo", Properties: json.RawMessage(`{"path":"echo","type":"websocket"}`), Revision: 3},
		{Kind: configwire.KindOperation, Parent: "apis/echo", Name: "onHandshake", Properties: json.RawMessage(`{"method":"GET"}`), Revision: 3},
		{Kind: configwire.KindNamedValue, Name: "secret", Properties: json.RawMessage(`{"secret":true}`), Secret: true, SecretValue: "s3cr3t", Revision: 4},
	}
	start := time.Date(2030, 1, 31, 8, 0, 1, 0, time.UTC)
	subs := []configwire.Subscription{
		{Name: "all", Scope: "apis", State: "active", OwnerID: "/users/ann", StartDate: start,
			KeyHashes: [][sha256.Size]byte{hash("a1"), hash("a2")}},
		{Name: "one", Scope: "apis/echo", State: "suspended", KeyHashes: [][sha256.Size]byte{hash("b1"), hash("b2")}},
		{Name: "bare", Scope: "products/starter", State: "active"},
	}
	return h, ents, subs
}

func write(t testing.TB, format configwire.SnapshotFormat, h configwire.Snapshot, ents []configwire.Entity, subs []configwire.Subscription) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := configwire.NewSnapshotWriter(&buf, format, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if err := w.WriteEntity(e); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range subs {
		if err := w.WriteSubscription(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	h, ents, subs := sample()
	for _, tc := range []struct {
		name   string
		format configwire.SnapshotFormat
	}{{"stream", configwire.SnapshotStream}, {"JSON", configwire.SnapshotJSON}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			raw := write(t, tc.format, h, ents, subs)
			got, err := readAll(t, raw)
			if err != nil {
				t.Fatal(err)
			}
			want := read{Header: h, Entities: ents, Subscriptions: subs}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("read back (-want +got):\n%s", diff)
			}
			whole, err := configwire.DecodeSnapshot(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			wantWhole := h
			wantWhole.Entities = append(slices.Clone(ents), subs[0].Entity(), subs[1].Entity(), subs[2].Entity())
			if diff := cmp.Diff(wantWhole, whole); diff != "" {
				t.Errorf("DecodeSnapshot (-want +got):\n%s", diff)
			}
			if tc.format == configwire.SnapshotJSON {
				// A JSON snapshot is the document every other client decodes.
				var doc configwire.Snapshot
				if err := json.Unmarshal(raw, &doc); err != nil {
					t.Fatalf("not a JSON snapshot: %v", err)
				}
				if doc.Revision != h.Revision || len(doc.Entities) != len(ents)+len(subs) {
					t.Errorf("JSON document: revision %d with %d entities, want %d with %d", doc.Revision, len(doc.Entities), h.Revision, len(ents)+len(subs))
				}
			}
		})
	}
}

// TestSnapshotSubscriptionEntity checks that a subscription entity as management stores it
// reads as the same compact subscription from either format.
func TestSnapshotSubscriptionEntity(t *testing.T) {
	t.Parallel()
	e := configwire.Entity{Kind: configwire.KindSubscription, Name: "Mixed",
		Properties: json.RawMessage(`{"scope":"/subscriptions/x/resourceGroups/rg/providers/Microsoft.ApiManagement/service/svc/APIs/Echo",
			"state":"active","ownerId":"/users/ann","displayName":"Mixed","createdDate":"2030-01-02T03:04:05Z","allowTracing":false}`),
		KeyHashes: []string{configwire.KeyHash("k1"), "not a hash", configwire.KeyHash("k2")}, Revision: 9}
	want := configwire.Subscription{Name: "Mixed", Scope: "apis/echo", State: "active", OwnerID: "/users/ann",
		StartDate: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), KeyHashes: [][sha256.Size]byte{hash("k1"), hash("k2")}}
	for _, format := range []configwire.SnapshotFormat{configwire.SnapshotStream, configwire.SnapshotJSON} {
		got, err := readAll(t, write(t, format, configwire.Snapshot{Revision: 9}, []configwire.Entity{e}, nil))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]configwire.Subscription{want}, got.Subscriptions); diff != "" || len(got.Entities) != 0 {
			t.Errorf("format %d: subscriptions (-want +got):\n%s\nentities: %v", format, diff, got.Entities)
		}
	}
}

func TestSnapshotStreamShares(t *testing.T) {
	t.Parallel()
	var subs []configwire.Subscription
	for i := range 3000 {
		subs = append(subs, configwire.Subscription{Name: fmt.Sprint("s", i), Scope: "apis/echo", State: "active",
			KeyHashes: [][sha256.Size]byte{hash(fmt.Sprint(i, "a")), hash(fmt.Sprint(i, "b"))}})
	}
	got, err := readAll(t, write(t, configwire.SnapshotStream, configwire.Snapshot{}, nil, subs))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(subs, got.Subscriptions); diff != "" {
		t.Fatalf("subscriptions (-want +got):\n%s", diff)
	}
	a, b := got.Subscriptions[0], got.Subscriptions[len(subs)-1]
	if unsafe.StringData(a.Scope) != unsafe.StringData(b.Scope) || unsafe.StringData(a.State) != unsafe.StringData(b.State) {
		t.Errorf("equal scopes and states are not shared")
	}
}

func TestReadSnapshotStreamErrors(t *testing.T) {
	t.Parallel()
	h, ents, subs := sample()
	good := write(t, configwire.SnapshotStream, h, ents, subs)
	frame := func(num protowire.Number, payload []byte) []byte {
		msg := protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), payload)
		return append(protowire.AppendVarint(nil, uint64(len(msg))), msg...)
	}
	head, _ := json.Marshal(h)
	end := func(ents, subs uint64) []byte {
		b := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), ents)
		return frame(4, protowire.AppendVarint(protowire.AppendTag(b, 2, protowire.VarintType), subs))
	}
	join := func(parts ...[]byte) []byte { return bytes.Join(append([][]byte{[]byte("GHSNAP2\n")}, parts...), nil) }
	msg := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), head)
	msg = protowire.AppendBytes(protowire.AppendTag(msg, 2, protowire.BytesType), nil)
	twoFields := append(protowire.AppendVarint(nil, uint64(len(msg))), msg...)
	sub := func(fields ...[]byte) []byte { return frame(3, bytes.Join(fields, nil)) }
	str := func(num protowire.Number, v string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	tests := []struct {
		name    string
		raw     []byte
		wantErr string
	}{
		{"no end frame", good[:len(good)-7], "ends before its end frame"},
		{"cut in a frame", good[:len(good)/2], "ends before its end frame"},
		{"only the magic", []byte("GHSNAP2\n"), "ends before its end frame"},
		{"counts differ", join(frame(1, head), end(1, 0)), "0 entities and 0 subscriptions read, 1 and 0 written"},
		{"data after the end", append(bytes.Clone(good), 0), "data after the end frame"},
		{"entity first", join(frame(2, []byte(`{"kind":"apis","name":"a"}`)), end(1, 0)), "no header first"},
		{"second header", join(frame(1, head), frame(1, head), end(0, 0)), "a second header"},
		{"bad header", join(frame(1, []byte(`[`)), end(0, 0)), "snapshot header"},
		{"bad entity", join(frame(1, head), frame(2, []byte(`{"kind":1}`)), end(1, 0)), "entity 1"},
		{"subscription without a name", join(frame(1, head), sub(str(2, "apis")), end(0, 1)), "subscription 1: no name"},
		{"short key hash", join(frame(1, head), sub(str(1, "s"), str(6, "short")), end(0, 1)), "a key hash of 5 bytes"},
		{"huge frame", join(protowire.AppendVarint(nil, 1<<40)), "a frame of 1099511627776 bytes"},
		{"frame of two fields", join(twoFields, end(0, 0)), "malformed frame"},
		{"neither stream nor JSON", []byte("GHSNAP1\n"), "not a snapshot"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := readAll(t, tc.raw)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}

	// Every cut of a good stream is an error, never a shorter snapshot.
	for n := range len(good) {
		if _, err := readAll(t, good[:n]); err == nil {
			t.Fatalf("a stream cut at byte %d of %d was read without error", n, len(good))
		}
	}

	// Frames and fields of a later version are skipped.
	later := join(frame(1, head), frame(9, []byte("future")), sub(str(1, "s"), str(15, "future"),
		protowire.AppendVarint(protowire.AppendTag(nil, 16, protowire.VarintType), 7)), end(0, 1))
	got, err := readAll(t, later)
	if err != nil {
		t.Fatalf("a stream with unknown frames and fields: %v", err)
	}
	if len(got.Subscriptions) != 1 || got.Subscriptions[0].Name != "s" {
		t.Errorf("subscriptions = %+v, want s", got.Subscriptions)
	}
}

func TestReadSnapshotJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		doc     string
		want    read
		wantErr string
	}{
		{name: "header first",
			doc: `{"serviceId":"svc-1","service":"svc","gateway":"gw","revision":7,"nats":{"stream":"S","subject":"x"},"entities":[{"kind":"apis","name":"a"},{"kind":"subscriptions","name":"b","properties":{"scope":"/apis","state":"active"}}]}`,
			want: read{Header: configwire.Snapshot{ServiceID: "svc-1", Service: "svc", Gateway: "gw", Revision: 7, NATS: configwire.NATSInfo{Stream: "S", Subject: "x"}},
				Entities: []configwire.Entity{{Kind: "apis", Name: "a"}}, Subscriptions: []configwire.Subscription{{Name: "b", Scope: "apis", State: "active"}}}},
		{name: "header last, keys in another case",
			doc:  `{"Entities":[{"kind":"apis","name":"a"}],"Revision":8,"serviceId":"svc-1"}`,
			want: read{Header: configwire.Snapshot{ServiceID: "svc-1", Revision: 8}, Entities: []configwire.Entity{{Kind: "apis", Name: "a"}}}},
		{name: "no entities", doc: `{"revision":3,"entities":null}`, want: read{Header: configwire.Snapshot{Revision: 3}}},
		{name: "empty entities", doc: `{"revision":3,"entities":[]}`, want: read{Header: configwire.Snapshot{Revision: 3}}},
		{name: "not an object", doc: `[1]`, wantErr: "not a snapshot"},
		{name: "entities not an array", doc: `{"entities":{}}`, wantErr: "not an array"},
		{name: "cut short", doc: `{"revision":3,"entities":[{"kind":"apis","name":"a"},{"kind":`, wantErr: "EOF"},
		{name: "bad entity", doc: `{"entities":[{"kind":1}]}`, wantErr: "cannot unmarshal"},
		{name: "bad subscription", doc: `{"entities":[{"kind":"subscriptions","name":"s","properties":[]}]}`, wantErr: "subscription s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := readAll(t, []byte(tc.doc))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("read (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadSnapshotHandlerFails(t *testing.T) {
	t.Parallel()
	h, ents, subs := sample()
	errStop := errors.New("stop")
	for _, format := range []configwire.SnapshotFormat{configwire.SnapshotStream, configwire.SnapshotJSON} {
		calls := 0
		_, err := configwire.ReadSnapshot(bytes.NewReader(write(t, format, h, ents, subs)), configwire.SnapshotHandler{
			Entity: func(configwire.Entity) error { calls++; return nil },
			Subscription: func(configwire.Subscription) error {
				calls++
				return errStop
			},
		})
		if !errors.Is(err, errStop) || calls != len(ents)+1 {
			t.Errorf("format %d: err = %v after %d calls, want the handler's error after %d", format, err, calls, len(ents)+1)
		}
	}
}

// FuzzReadSnapshot checks that no input makes ReadSnapshot panic, and that whatever it reads
// without error writes back to an equal snapshot.
func FuzzReadSnapshot(f *testing.F) {
	h, ents, subs := sample()
	f.Add(write(f, configwire.SnapshotStream, h, ents, subs))
	f.Add(write(f, configwire.SnapshotJSON, h, ents, subs))
	f.Add([]byte("GHSNAP2\n\x00"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := readAll(t, raw)
		if err != nil {
			return
		}
		again, err := readAll(t, write(t, configwire.SnapshotStream, got.Header, got.Entities, got.Subscriptions))
		if err != nil {
			t.Fatalf("a snapshot read back fails: %v", err)
		}
		// JSON compares them whatever the spacing of raw properties or empty against nil.
		first, _ := json.Marshal(got)
		second, _ := json.Marshal(again)
		if !bytes.Equal(first, second) {
			t.Errorf("written and read again:\n%s\nfirst read:\n%s", second, first)
		}
	})
}
