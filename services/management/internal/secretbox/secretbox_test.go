package secretbox

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealOpen(t *testing.T) {
	t.Parallel()
	box, err := New("k1")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := New("k2")
	secret := []byte("4f1c1b0a9d8e7f6a5b4c3d2e1f0a9b8c")
	sealed := box.Seal(secret, []byte("row-1"))
	if bytes.Contains(sealed, secret) {
		t.Fatal("sealed value contains the plaintext")
	}
	if bytes.Equal(sealed, box.Seal(secret, []byte("row-1"))) {
		t.Fatal("two seals of one value are equal: nonce reused")
	}
	got, err := box.Open(sealed, []byte("row-1"))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v; want the secret", got, err)
	}
	tests := []struct {
		name   string
		box    *Box
		sealed []byte
		aad    string
	}{
		{"other key", other, sealed, "row-1"},
		{"other row", box, sealed, "row-2"},
		{"truncated", box, sealed[:10], "row-1"},
		{"tampered", box, append(append([]byte{}, sealed[:len(sealed)-1]...), sealed[len(sealed)-1]^1), "row-1"},
		{"empty", box, nil, "row-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.box.Open(tc.sealed, []byte(tc.aad)); !errors.Is(err, ErrOpen) {
				t.Fatalf("Open = %v, want ErrOpen", err)
			}
		})
	}
	if _, err := New(""); err == nil {
		t.Fatal("New(\"\") succeeded")
	}
}
