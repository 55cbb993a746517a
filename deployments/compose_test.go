package deployments_test

import (
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const composeDir = "compose"

// composeService is the part of a Compose service the tests read. Environment, depends_on and
// networks must use the mapping forms.
type composeService struct {
	Image string `json:"image"`
	Build *struct {
		Context    string `json:"context"`
		Dockerfile string `json:"dockerfile"`
	} `json:"build"`
	Command     []string          `json:"command"`
	Environment map[string]string `json:"environment"`
	DependsOn   map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on"`
	Networks map[string]struct {
		Aliases []string `json:"aliases"`
	} `json:"networks"`
	User            string   `json:"user"`
	ReadOnly        bool     `json:"read_only"`
	CapDrop         []string `json:"cap_drop"`
	SecurityOpt     []string `json:"security_opt"`
	Volumes         []string `json:"volumes"`
	Ports           []string `json:"ports"`
	StopGracePeriod string   `json:"stop_grace_period"`
	Healthcheck     *struct {
		Test []string `json:"test"`
	} `json:"healthcheck"`
}

type composeProject struct {
	Services map[string]composeService `json:"services"`
	Volumes  map[string]any            `json:"volumes"`
}

// loadCompose reads compose.yaml as `docker compose` does after `cp .env.example .env`: every
// ${VAR}, ${VAR:-default} and ${VAR:?error} is interpolated from .env.example first, and a
// required variable it lacks fails the test.
func loadCompose(t *testing.T) composeProject {
	t.Helper()
	env := readEnvFile(t, filepath.Join(composeDir, ".env.example"))
	raw, err := os.ReadFile(filepath.Join(composeDir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text, err := interpolate(string(raw), env)
	if err != nil {
		t.Fatalf("compose.yaml with .env.example: %v", err)
	}
	var p composeProject
	if err := yaml.Unmarshal([]byte(text), &p); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return p
}

// readEnvFile parses a Compose .env file: KEY=VALUE lines, # comments.
func readEnvFile(t *testing.T, name string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for line := range strings.Lines(string(raw)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: line %q is not KEY=VALUE", name, line)
		}
		env[k] = v
	}
	return env
}

var composeVar = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}`)

// interpolate substitutes Compose's variable forms in s from env.
func interpolate(s string, env map[string]string) (string, error) {
	var errs []string
	out := composeVar.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := composeVar.FindStringSubmatch(m)
		name, op, arg := sub[1], sub[2], sub[3]
		v, set := env[name]
		unset := !set || (strings.HasPrefix(op, ":") && v == "")
		switch {
		case !unset:
			return v
		case strings.HasSuffix(op, "-"):
			return arg
		case strings.HasSuffix(op, "?"):
			if msg := fmt.Sprintf("required variable %s is missing: %s", name, arg); !slices.Contains(errs, msg) {
				errs = append(errs, msg)
			}
		}
		return v
	})
	if len(errs) > 0 {
		return "", fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return out, nil
}

// composeProcess names the Gatehouse binary a Compose service runs, from the Dockerfile it builds.
func composeProcess(s composeService) string {
	if s.Build == nil {
		return ""
	}
	return strings.TrimSuffix(filepath.Base(s.Build.Dockerfile), ".Dockerfile")
}

func TestComposeServices(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	want := []string{"postgres", "nats-1", "nats-2", "nats-3", "management-1", "management-2", "gateway-1", "gateway-2", "gateway-3"}
	if diff := diffSorted(want, slices.Collect(maps.Keys(p.Services))); diff != "" {
		t.Fatalf("services (-want +got):\n%s", diff)
	}

	hostPorts := map[string]string{}
	for name, s := range p.Services {
		for _, port := range s.Ports {
			published := port[:strings.LastIndex(port, ":")]
			if other, ok := hostPorts[published]; ok {
				t.Errorf("%s and %s both publish %s", other, name, published)
			}
			hostPorts[published] = name
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join(composeDir, src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			} else if _, ok := p.Volumes[src]; !ok {
				t.Errorf("%s mounts volume %s, which is not declared", name, src)
			}
		}
		for dep := range s.DependsOn {
			if _, ok := p.Services[dep]; !ok {
				t.Errorf("%s depends on %s, which is not a service", name, dep)
			}
		}
	}
}

// TestComposeHardening checks that the Gatehouse services run as they do on Kubernetes: built from
// the repository's Dockerfiles, a non-root user, a read-only root, no capabilities.
func TestComposeHardening(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	for name, s := range p.Services {
		process := composeProcess(s)
		if process == "" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := os.Stat(filepath.Join(composeDir, s.Build.Context, s.Build.Dockerfile)); err != nil {
				t.Errorf("build: %v", err)
			}
			if uid, _, _ := strings.Cut(s.User, ":"); uid == "" || uid == "0" || strings.Trim(uid, "0123456789") != "" {
				t.Errorf("user %q: want a numeric non-root uid", s.User)
			}
			if !s.ReadOnly {
				t.Error("read_only is not true")
			}
			if !slices.Contains(s.CapDrop, "ALL") {
				t.Errorf("cap_drop %q, want ALL", s.CapDrop)
			}
			if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
				t.Errorf("security_opt %q lacks no-new-privileges:true", s.SecurityOpt)
			}
			checkEnvNames(t, name, process, slices.Collect(maps.Keys(s.Environment)))
		})
	}
}

// TestComposeNATS reads each NATS node's configuration as its nats-server does. It does not run
// in parallel (natsOptions).
func TestComposeNATS(t *testing.T) {
	p := loadCompose(t)
	peers := []string{"nats-1", "nats-2", "nats-3"}
	for _, name := range peers {
		s := p.Services[name]
		conf := composeMountedFile(t, s, s.Command[slices.Index(s.Command, "--config")+1])
		opts := natsOptions(t, s.Command, conf)
		checkNATSNode(t, opts, name, peers)
		var targets []string
		for _, v := range s.Volumes {
			_, target, _ := strings.Cut(v, ":")
			target, _, _ = strings.Cut(target, ":")
			targets = append(targets, target)
		}
		if !under(opts.StoreDir, targets) {
			t.Errorf("%s: JetStream store_dir %s is not on a volume (mounts %q)", name, opts.StoreDir, targets)
		}
		if s.Healthcheck == nil || !slices.ContainsFunc(s.Healthcheck.Test, func(a string) bool {
			return strings.HasPrefix(a, fmt.Sprintf("http://127.0.0.1:%d/healthz", opts.HTTPPort))
		}) {
			t.Errorf("%s: no healthcheck on the monitoring port %d /healthz", name, opts.HTTPPort)
		}
	}
}

// composeMountedFile returns the content of the host file that s mounts at target.
func composeMountedFile(t *testing.T, s composeService, target string) string {
	t.Helper()
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == target && strings.HasPrefix(parts[0], ".") {
			b, err := os.ReadFile(filepath.Join(composeDir, parts[0]))
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
	t.Fatalf("nothing from the host is mounted at %s", target)
	return ""
}

func TestComposeManagement(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	for _, name := range []string{"management-1", "management-2"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := p.Services[name]
			if composeProcess(s) != "management" {
				t.Fatalf("%s does not build the management image", name)
			}
			for _, dep := range []string{"postgres", "nats-1", "nats-2", "nats-3"} {
				if s.DependsOn[dep].Condition != "service_healthy" {
					t.Errorf("does not wait for %s to be healthy", dep)
				}
			}
			var hosts []string
			for u := range strings.SplitSeq(s.Environment["NATS_URL"], ",") {
				parsed, err := url.Parse(u)
				if err != nil {
					t.Fatalf("NATS_URL: %v", err)
				}
				hosts = append(hosts, parsed.Host)
			}
			if diff := diffSorted([]string{"nats-1:4222", "nats-2:4222", "nats-3:4222"}, hosts); diff != "" {
				t.Errorf("NATS_URL %q does not list the cluster (-want +got):\n%s", s.Environment["NATS_URL"], diff)
			}
			db, err := url.Parse(s.Environment["DATABASE_URL"])
			if err != nil {
				t.Fatalf("DATABASE_URL: %v", err)
			}
			pg := p.Services["postgres"].Environment
			pw, _ := db.User.Password()
			if db.Host != "postgres:5432" || db.User.Username() != pg["POSTGRES_USER"] || pw != pg["POSTGRES_PASSWORD"] || db.Path != "/"+pg["POSTGRES_DB"] {
				t.Errorf("DATABASE_URL %s does not reach the postgres service's database", db.Redacted())
			}
			for _, v := range []string{"MANAGEMENT_ADMIN_TOKEN", "MANAGEMENT_ENCRYPTION_KEY"} {
				if s.Environment[v] == "" {
					t.Errorf("%s is empty", v)
				}
			}
			if !slices.Contains(s.Networks["default"].Aliases, "management") {
				t.Error(`not reachable as "management", the gateways' MANAGEMENT_URL host`)
			}
			if want := fmt.Sprint(listenPort(t, s.Environment["MANAGEMENT_LISTEN"])); !slices.ContainsFunc(s.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+want) }) {
				t.Errorf("ports %q do not publish MANAGEMENT_LISTEN's port %s", s.Ports, want)
			}
		})
	}
	if a, b := p.Services["management-1"].Environment, p.Services["management-2"].Environment; !maps.Equal(a, b) {
		t.Error("the management replicas are configured differently")
	}
}

func TestComposeGateways(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	for _, name := range []string{"gateway-1", "gateway-2", "gateway-3"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := p.Services[name]
			if composeProcess(s) != "gateway" {
				t.Fatalf("%s does not build the gateway image", name)
			}
			env := s.Environment
			if _, ok := env["GATEWAY_TOKEN"]; !ok {
				t.Error("GATEWAY_TOKEN is not passed through")
			}
			for _, dep := range []string{"management-1", "management-2"} {
				if _, ok := s.DependsOn[dep]; !ok {
					t.Errorf("does not depend on %s", dep)
				}
			}
			mu, err := url.Parse(env["MANAGEMENT_URL"])
			if err != nil {
				t.Fatalf("MANAGEMENT_URL: %v", err)
			}
			for _, m := range []string{"management-1", "management-2"} {
				ms := p.Services[m]
				if !slices.Contains(ms.Networks["default"].Aliases, mu.Hostname()) || mu.Port() != fmt.Sprint(listenPort(t, ms.Environment["MANAGEMENT_LISTEN"])) {
					t.Errorf("MANAGEMENT_URL %s does not reach %s", mu, m)
				}
			}
			var targets []string
			for _, v := range s.Volumes {
				_, target, _ := strings.Cut(v, ":")
				targets = append(targets, target)
			}
			if !under(env["GATEWAY_CACHE_DIR"], targets) {
				t.Errorf("GATEWAY_CACHE_DIR %q is not on a volume: the last good configuration would not survive a restart", env["GATEWAY_CACHE_DIR"])
			}
			drain, err := time.ParseDuration(env["GATEWAY_DRAIN_TIMEOUT"])
			if err != nil {
				t.Fatalf("GATEWAY_DRAIN_TIMEOUT: %v", err)
			}
			grace, err := time.ParseDuration(s.StopGracePeriod)
			if err != nil || grace <= drain {
				t.Errorf("stop_grace_period %q does not exceed GATEWAY_DRAIN_TIMEOUT %s", s.StopGracePeriod, drain)
			}
			for _, v := range []string{"GATEWAY_LISTEN", "GATEWAY_ADMIN_LISTEN"} {
				want := fmt.Sprint(listenPort(t, env[v]))
				if !slices.ContainsFunc(s.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+want) }) {
					t.Errorf("ports %q do not publish %s's port %s", s.Ports, v, want)
				}
			}
		})
	}
}
