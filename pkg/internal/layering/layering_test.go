package layering

import (
	"os/exec"
	"strings"
	"testing"
)

// rule says that no package in the dependencies of from may start with any of forbidden.
type rule struct {
	why       string
	from      []string
	forbidden []string
}

var rules = []rule{
	{
		why:       "pkg holds the contracts both services share: it imports no service",
		from:      []string{"gatehouse.dev/pkg/..."},
		forbidden: []string{"gatehouse.dev/gateway", "gatehouse.dev/management"},
	},
	{
		why:  "the domain (catalog) knows no HTTP framework, database driver or bus",
		from: []string{"gatehouse.dev/management/internal/catalog"},
		forbidden: []string{"github.com/labstack/echo", "github.com/jackc/pgx", "github.com/nats-io",
			"gatehouse.dev/management/internal/api", "gatehouse.dev/management/internal/store"},
	},
	{
		why:       "a gateway node links no database driver and no management web framework",
		from:      []string{"gatehouse.dev/gateway/..."},
		forbidden: []string{"github.com/jackc/pgx", "github.com/labstack/echo", "gatehouse.dev/management"},
	},
	{
		why:       "management never links the gateway's data plane",
		from:      []string{"gatehouse.dev/management/..."},
		forbidden: []string{"gatehouse.dev/gateway"},
	},
	{
		why:       "the policy compiler runs in both services and the fuzzers: no bus, no database, no web framework",
		from:      []string{"gatehouse.dev/pkg/pipeline/...", "gatehouse.dev/pkg/policy/..."},
		forbidden: []string{"github.com/nats-io", "github.com/jackc/pgx", "github.com/labstack/echo"},
	},
}

// TestLayering checks every rule against what `go list -deps` says the packages link.
func TestLayering(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	for _, r := range rules {
		for _, from := range r.from {
			out, err := exec.Command("go", append([]string{"list", "-deps", "-test=false", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}"}, from)...).Output()
			if err != nil {
				var stderr string
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = string(ee.Stderr)
				}
				t.Fatalf("go list -deps %s: %v %s", from, err, stderr)
			}
			deps := strings.Fields(string(out))
			if len(deps) == 0 {
				t.Fatalf("go list -deps %s listed nothing: the pattern names no package", from)
			}
			for _, dep := range deps {
				for _, f := range r.forbidden {
					if dep == f || strings.HasPrefix(dep, f+"/") {
						t.Errorf("%s links %s: %s", from, dep, r.why)
					}
				}
			}
		}
	}
}
