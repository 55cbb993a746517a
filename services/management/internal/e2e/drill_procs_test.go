package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gatehouse.dev/management/internal/mgmttest"

	"gatehouse.dev/management/internal/natsembed"
	"gatehouse.dev/pkg/syncbuf"
)

// buildBinary builds pkg (an import path, or a directory relative to this package) into dir,
// with the race detector when the tests run with it, and returns the binary's path.
func buildBinary(t *testing.T, dir, name, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	if b, err := exec.Command("go", append(args, pkg)...).CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, b)
	}
	return out
}

// proc is a helper process of the drills (NATS or management) whose output is kept.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    *syncbuf.Buffer
	exited chan struct{}
}

// startProc starts bin with args and env added to a clean environment. The process lives until
// owner ends: owner's cleanup ends it with SIGTERM (SIGKILL after 10 s). owner is t, or a parent
// of t when a subtest restarts a process the rest of the test needs.
func startProc(t, owner *testing.T, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: &syncbuf.Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(cleanEnviron(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	owner.Cleanup(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
			owner.Errorf("%s did not exit within 10 s of SIGTERM", name)
		}
	})
	return p
}

// kill ends the process with SIGKILL and waits until it is gone.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// waitLog waits up to d for a line of the process's output for which match returns true, and
// returns that line.
func (p *proc) waitLog(t *testing.T, d time.Duration, what string, match func(line string) bool) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(p.log.String()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if match(sc.Text()) {
				return sc.Text()
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("%s exited before %s:\n%s", p.name, what, p.log)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("%s: no %s within %v:\n%s", p.name, what, d, p.log)
	return ""
}

// logCount is how many lines of the process's output contain s.
func (p *proc) logCount(s string) int { return strings.Count(p.log.String(), s) }

// startNATS starts the natsd helper on addr with JetStream in storeDir and waits until it
// accepts clients. It runs until owner ends (see startProc).
func startNATS(t, owner *testing.T, bin, addr, storeDir string, auth natsembed.Auth) *proc {
	t.Helper()
	raw, err := json.Marshal(auth)
	if err != nil {
		t.Fatal(err)
	}
	p := startProc(t, owner, "nats", bin, []string{"NATSD_AUTH=" + string(raw)}, addr, storeDir)
	p.waitLog(t, 15*time.Second, "ready", func(l string) bool { return strings.HasPrefix(l, "ready ") })
	return p
}

// mgmtProc is a management process.
type mgmtProc struct {
	*proc
	url string
}

// startManagement starts a management process on dbURL and natsURL and waits until it listens.
func startManagement(t *testing.T, bin, name, dbURL, natsURL string, auth natsembed.Auth) *mgmtProc {
	t.Helper()
	p := startProc(t, t, name, bin, []string{
		"DATABASE_URL=" + dbURL,
		"NATS_URL=" + natsURL,
		"MANAGEMENT_NATS_USER=" + auth.User,
		"MANAGEMENT_NATS_PASSWORD=" + auth.Password,
		"MANAGEMENT_NATS_SYSTEM_USER=" + auth.SystemUser,
		"MANAGEMENT_NATS_SYSTEM_PASSWORD=" + auth.SystemPassword,
		"MANAGEMENT_NATS_CALLOUT_ISSUER_SEED=" + auth.IssuerSeed,
		"MANAGEMENT_NATS_CALLOUT_XKEY_SEED=" + auth.XKeySeed,
		"MANAGEMENT_LISTEN=127.0.0.1:0",
		"MANAGEMENT_ADMIN_LISTEN=127.0.0.1:0",
		"MANAGEMENT_ADMIN_TOKEN=" + mgmttest.AdminToken,
		"MANAGEMENT_ENCRYPTION_KEY=" + mgmttest.EncryptionKey,
		"LOG_LEVEL=debug",
	})
	var url string
	p.waitLog(t, 60*time.Second, "\"management listening\"", func(l string) bool {
		var rec struct{ Msg, URL string }
		if json.Unmarshal([]byte(l), &rec) == nil && rec.Msg == "management listening" {
			url = rec.URL
			return true
		}
		return false
	})
	return &mgmtProc{proc: p, url: url}
}

// privatePG is a Postgres server of the test's own, which the test may stop and start.
type privatePG struct {
	bin, data string
	port      int
}

// asPostgres runs a Postgres program as the postgres user.
func (pg *privatePG) asPostgres(args ...string) error {
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// startPrivatePG initialises and starts a Postgres server on a free port with trust
// authentication, or says why it cannot (not root, no postgres user, no server binaries).
func startPrivatePG(t *testing.T) (*privatePG, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil, "the test does not run as root, so it cannot run Postgres as the postgres user"
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, "there is no postgres user"
	}
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(bins) == 0 {
		return nil, "no Postgres server binaries under /usr/lib/postgresql/*/bin"
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		return nil, "runuser is missing"
	}
	dir, err := os.MkdirTemp("", "gatehouse-drill-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, fmt.Sprintf("chown of the data directory: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	pg := &privatePG{bin: filepath.Dir(bins[len(bins)-1]), data: filepath.Join(dir, "data"), port: port}
	if err := pg.asPostgres(filepath.Join(pg.bin, "initdb"), "-D", pg.data, "-A", "trust", "-U", "postgres", "--no-sync"); err != nil {
		return nil, fmt.Sprintf("initdb failed: %v", err)
	}
	if err := pg.start(); err != nil {
		return nil, fmt.Sprintf("pg_ctl start failed: %v", err)
	}
	t.Cleanup(func() {
		_ = pg.asPostgres(filepath.Join(pg.bin, "pg_ctl"), "-D", pg.data, "-m", "immediate", "-w", "stop")
	})
	return pg, ""
}

func (pg *privatePG) start() error {
	return pg.asPostgres(filepath.Join(pg.bin, "pg_ctl"), "-D", pg.data, "-w", "-t", "30", "-l", filepath.Join(pg.data, "server.log"),
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", pg.port, pg.data), "start")
}

// stop stops the server the way an operator restarting it would: fast shutdown, which ends
// every session.
func (pg *privatePG) stop() error {
	return pg.asPostgres(filepath.Join(pg.bin, "pg_ctl"), "-D", pg.data, "-m", "fast", "-w", "stop")
}

func (pg *privatePG) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pg.port)
}
