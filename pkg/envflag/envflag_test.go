package envflag

import (
	"strings"
	"testing"
	"time"
)

func TestEnv(t *testing.T) {
	t.Setenv("EF_S", "text")
	t.Setenv("EF_I", "42")
	t.Setenv("EF_D", "1m30s")
	t.Setenv("EF_BAD_I", "many")
	t.Setenv("EF_BAD_D", "10")
	t.Setenv("EF_B", "true")
	t.Setenv("EF_BAD_B", "yes please")
	var e Env
	if got := e.String("EF_S", "def"); got != "text" {
		t.Errorf("String = %q", got)
	}
	if got := e.String("EF_UNSET", "def"); got != "def" {
		t.Errorf("String unset = %q", got)
	}
	if got := e.Int("EF_I", 1); got != 42 {
		t.Errorf("Int = %d", got)
	}
	if got := e.Duration("EF_D", 0); got != 90*time.Second {
		t.Errorf("Duration = %v", got)
	}
	if got := e.Bool("EF_B", false); !got {
		t.Errorf("Bool = %v", got)
	}
	if got := e.Bool("EF_UNSET", true); !got {
		t.Errorf("Bool unset = %v, want the default", got)
	}
	if e.Err() != nil {
		t.Fatalf("Err = %v after valid values", e.Err())
	}
	if got := e.Int("EF_BAD_I", 7); got != 7 {
		t.Errorf("bad Int = %d, want the default", got)
	}
	e.Duration("EF_BAD_D", time.Second)
	if got := e.Bool("EF_BAD_B", true); !got {
		t.Errorf("bad Bool = %v, want the default", got)
	}
	err := e.Err()
	if err == nil {
		t.Fatal("Err = nil after malformed values")
	}
	for _, want := range []string{"EF_BAD_I", "EF_BAD_D", "EF_BAD_B"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Err %q does not name %s", err, want)
		}
	}
}
