package deployments_test

import (
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction: its keyword (upper case) and the rest of the line,
// continuation lines joined.
type instruction struct {
	cmd, args string
}

// stage is one FROM ... stage of a Dockerfile.
type stage struct {
	from, name string
	body       []instruction
}

// parseDockerfile splits a Dockerfile into stages, dropping comments and parser directives.
func parseDockerfile(t *testing.T, name string) []stage {
	t.Helper()
	raw, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var stages []stage
	var pending string
	for line := range strings.Lines(string(raw)) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") || (line == "" && pending == "") {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending += cont + " "
			continue
		}
		line, pending = pending+line, ""
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(args)}
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			st := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
		case len(stages) == 0:
			if in.cmd != "ARG" {
				t.Fatalf("%s: %s before the first FROM", name, in.cmd)
			}
		default:
			stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
		}
	}
	return stages
}

func (s stage) all(cmd string) []string {
	var out []string
	for _, in := range s.body {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// envOf returns the variables a stage's ENV instructions set (KEY=VALUE forms).
func (s stage) envOf() map[string]string {
	env := map[string]string{}
	for _, args := range s.all("ENV") {
		for _, kv := range strings.Fields(args) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = v
			}
		}
	}
	return env
}

// copySources returns the context paths of a COPY's arguments, or nil for COPY --from.
func copySources(args string) []string {
	f := strings.Fields(args)
	var srcs []string
	for _, a := range f[:len(f)-1] {
		if strings.HasPrefix(a, "--from=") {
			return nil
		}
		if !strings.HasPrefix(a, "--") {
			srcs = append(srcs, strings.TrimSuffix(a, "/"))
		}
	}
	return srcs
}

// workspaceModules returns the module folders go.work uses.
func workspaceModules(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile(`(?s)use\s*\((.*?)\)`).FindStringSubmatch(string(raw))
	if block == nil {
		t.Fatal("go.work has no use ( ... ) block")
	}
	var dirs []string
	for _, f := range strings.Fields(block[1]) {
		dirs = append(dirs, path.Clean(f))
	}
	return dirs
}

func TestDockerfiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		process     string
		listenVars  []string // ENV variables whose ports the image must EXPOSE
		healthcheck string   // path HEALTHCHECK requests
	}{
		{"management", []string{"MANAGEMENT_LISTEN"}, "/readyz"},
		{"gateway", []string{"GATEWAY_LISTEN", "GATEWAY_ADMIN_LISTEN"}, "/readyz"},
	}
	modules := workspaceModules(t)
	for _, tc := range tests {
		t.Run(tc.process, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join("docker", tc.process+".Dockerfile")
			stages := parseDockerfile(t, file)
			if len(stages) < 2 {
				t.Fatalf("%d FROM stages, want a multi-stage build", len(stages))
			}
			build, final := stages[0], stages[len(stages)-1]

			// The build stage compiles the process's main package from the workspace.
			var copied []string
			for _, args := range build.all("COPY") {
				for _, src := range copySources(args) {
					if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
						t.Errorf("COPY %s: not in the build context: %v", src, err)
					}
					copied = append(copied, src)
				}
			}
			for _, want := range []string{"go.work", "go.work.sum"} {
				if !slices.Contains(copied, want) {
					t.Errorf("build stage does not copy %s", want)
				}
			}
			for _, mod := range modules {
				if !slices.ContainsFunc(copied, func(src string) bool { return src == mod+"/go.mod" || under(mod, []string{src}) }) {
					t.Errorf("go.work uses ./%s, whose go.mod the build stage does not copy: go build would fail", mod)
				}
			}
			pkg := "./services/" + tc.process + "/cmd/" + tc.process
			out := "/out/" + tc.process
			goBuild := regexp.MustCompile(`\bgo build\b.*-trimpath.*-o ` + regexp.QuoteMeta(out) + ` ` + regexp.QuoteMeta(pkg) + `$`)
			if !slices.ContainsFunc(build.all("RUN"), goBuild.MatchString) {
				t.Errorf("no RUN go build -trimpath ... -o %s %s in the build stage", out, pkg)
			}
			if _, err := os.Stat(filepath.Join(repoRoot, pkg, "main.go")); err != nil {
				t.Error(err)
			}

			// The final stage runs that binary as a numeric non-root user.
			if !slices.ContainsFunc(final.all("COPY"), func(a string) bool {
				return strings.Contains(a, "--from="+build.name) && strings.Contains(a, out)
			}) {
				t.Errorf("the final stage does not copy %s from stage %q", out, build.name)
			}
			users := final.all("USER")
			if len(users) == 0 {
				t.Fatal("the final stage has no USER: the process would run as root")
			}
			uid, _, _ := strings.Cut(users[len(users)-1], ":")
			if n, err := strconv.Atoi(uid); err != nil || n == 0 {
				t.Errorf("USER %s: want a numeric non-root uid (runAsNonRoot can verify only a number)", users[len(users)-1])
			}
			entry := final.all("ENTRYPOINT")
			if len(entry) != 1 || !strings.Contains(entry[0], `/`+tc.process+`"`) {
				t.Errorf("ENTRYPOINT %q does not run %s", entry, tc.process)
			}

			env := final.envOf()
			checkEnvNames(t, file, tc.process, slices.Collect(maps.Keys(env)))
			var exposed []string
			for _, e := range final.all("EXPOSE") {
				exposed = append(exposed, strings.Fields(e)...)
			}
			var want []string
			for _, v := range tc.listenVars {
				want = append(want, strconv.Itoa(listenPort(t, env[v])))
			}
			if diff := diffSorted(want, exposed); diff != "" {
				t.Errorf("EXPOSE differs from the ports of %v (-want +got):\n%s", tc.listenVars, diff)
			}
			hc := final.all("HEALTHCHECK")
			if len(hc) != 1 || !strings.Contains(hc[0], tc.healthcheck) {
				t.Errorf("HEALTHCHECK %q does not request %s", hc, tc.healthcheck)
			}

			// The Dockerfile's own .dockerignore starts from nothing; it must let every copied path in.
			ignore, err := os.ReadFile(file + ".dockerignore")
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(ignore), "\n")
			for _, src := range copied {
				if !slices.Contains(lines, "!"+src) {
					t.Errorf("%s.dockerignore does not re-include %s", file, src)
				}
			}
		})
	}
}
