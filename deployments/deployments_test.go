package deployments_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// repoRoot is the workspace root, the build context of the Dockerfiles; tests run in deployments/.
const repoRoot = ".."

// knownEnv lists, per process, the environment variables its binary reads: the operator contract
// of docs/design.md §5 plus the further settings cmd/management and cmd/gateway define. A deployment
// file that sets any other variable sets it for nothing (a typo, or a setting that was renamed).
var knownEnv = map[string][]string{
	"management": {
		"DATABASE_URL", "NATS_URL", "NATS_EMBEDDED_LISTEN", "NATS_STORE_DIR", "NATS_STREAM_REPLICAS",
		"MANAGEMENT_LISTEN", "MANAGEMENT_ADMIN_LISTEN", "MANAGEMENT_TLS_CERT", "MANAGEMENT_TLS_KEY",
		"MANAGEMENT_EGRESS_ALLOW", "MANAGEMENT_EGRESS_DENY",
		"MANAGEMENT_ADMIN_TOKEN", "MANAGEMENT_ENCRYPTION_KEY",
		"MANAGEMENT_JWT_ISSUER", "MANAGEMENT_JWT_AUDIENCE", "MANAGEMENT_JWKS_URL", "MANAGEMENT_JWT_KEY",
		"MANAGEMENT_NATS_USER", "MANAGEMENT_NATS_PASSWORD", "MANAGEMENT_NATS_SYSTEM_USER", "MANAGEMENT_NATS_SYSTEM_PASSWORD",
		"MANAGEMENT_NATS_CALLOUT_ISSUER_SEED", "MANAGEMENT_NATS_CALLOUT_XKEY_SEED", "NATS_CREDENTIAL_TTL", "NATS_CA_FILE",
		"LOG_LEVEL",
	},
	"gateway": {
		"GATEWAY_TOKEN", "MANAGEMENT_URL", "NATS_URL", "NATS_CA_FILE",
		"GATEWAY_LISTEN", "GATEWAY_TLS_CERT", "GATEWAY_TLS_KEY", "GATEWAY_ADMIN_LISTEN", "GATEWAY_CACHE_DIR",
		"GATEWAY_BACKEND_CA_BUNDLE", "GATEWAY_BACKEND_CONNECT_TIMEOUT", "GATEWAY_MAX_MESSAGE_BYTES",
		"GATEWAY_IDLE_TIMEOUT", "GATEWAY_PING_INTERVAL", "GATEWAY_DRAIN_TIMEOUT", "GATEWAY_COUNTER_TIMEOUT", "GATEWAY_NATS_READY_TIMEOUT", "GATEWAY_REGION", "GATEWAY_PUBLIC_URL",
		"GATEWAY_PPROF", "GATEWAY_EGRESS_ALLOW", "GATEWAY_EGRESS_DENY", "GATEWAY_ENGINE", "GATEWAY_IO_URING",
		"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "LOG_LEVEL",
	},
}

// managementShutdownBudget is how long cmd/management waits for HTTP requests to finish after
// SIGTERM.
const managementShutdownBudget = 10

// TestKnownEnvIsReadByBinaries keeps knownEnv honest: every variable it lists is read by the
// process's main package, so a deployment cannot pass a check against a stale list.
func TestKnownEnvIsReadByBinaries(t *testing.T) {
	t.Parallel()
	envCall := regexp.MustCompile(`\be\.(?:String|Duration|Int|Bool)\("([A-Z0-9_]+)"`)
	for process, names := range knownEnv {
		t.Run(process, func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(filepath.Join(repoRoot, "services", process, "cmd", process, "main.go"))
			if err != nil {
				t.Fatal(err)
			}
			read := map[string]bool{}
			for _, m := range envCall.FindAllStringSubmatch(string(src), -1) {
				read[m[1]] = true
			}
			for _, name := range names {
				if !read[name] {
					t.Errorf("knownEnv[%q] lists %s, which cmd/%s/main.go does not read", process, name, process)
				}
			}
		})
	}
}

// checkEnvNames reports every name in env that process does not read.
func checkEnvNames(t *testing.T, where, process string, names []string) {
	t.Helper()
	known, ok := knownEnv[process]
	if !ok {
		t.Errorf("%s: unknown process %q", where, process)
		return
	}
	for _, name := range names {
		if !slices.Contains(known, name) {
			t.Errorf("%s: sets %s, which %s does not read (docs/design.md §5)", where, name, process)
		}
	}
}

// listenPort returns the port of a listen address such as "0.0.0.0:8080" or ":8080".
func listenPort(t *testing.T, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return n
}

// natsOptions returns the options nats-server computes from its command line args (without the
// program name), with the configuration file that args name (--config or -c) read from conf
// instead of the container's path. It calls server.ConfigureOptions, which writes a package
// variable of nats-server: callers must not run in parallel with each other.
//
// The configuration's secrets come from the environment and its TLS files from natsTLSDir, as in
// the containers: natsOptions sets the variables (t.Setenv) and writes a certificate, key and CA
// to a temporary folder in their place, so that nats-server loads them as it would.
func natsOptions(t *testing.T, args []string, conf string) *server.Options {
	t.Helper()
	dir := t.TempDir()
	for name, value := range natsTestEnv(t) {
		t.Setenv(name, value)
	}
	writeTestTLS(t, dir)
	conf = strings.ReplaceAll(conf, natsTLSDir+"/", dir+"/")
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	args = slices.Clone(args)
	replaced := false
	for i := range len(args) - 1 {
		if args[i] == "--config" || args[i] == "-c" {
			args[i+1] = path
			replaced = true
		}
	}
	if !replaced {
		t.Fatalf("nats-server args %q name no --config file", args)
	}
	fs := flag.NewFlagSet("nats-server", flag.ContinueOnError)
	noop := func() {}
	opts, err := server.ConfigureOptions(fs, args, noop, noop, noop)
	if err != nil {
		t.Fatalf("nats-server %s: %v", strings.Join(args, " "), err)
	}
	return opts
}

// checkNATSNode checks the options of one node of a cluster of peers (host names): JetStream on,
// its own server name, a cluster name, and routes to every other peer on the cluster port; TLS
// for clients and routes; the bus closed (issue 12): management's users in the accounts, every
// other client authorized by management's auth callout, encrypted.
func checkNATSNode(t *testing.T, opts *server.Options, name string, peers []string) {
	t.Helper()
	checkNATSSecurity(t, opts, name)
	if !opts.JetStream {
		t.Errorf("%s: JetStream is off", name)
	}
	if opts.ServerName != name {
		t.Errorf("%s: server name %q, want %q (JetStream needs one per node)", name, opts.ServerName, name)
	}
	if opts.Cluster.Name == "" || opts.Cluster.Port == 0 {
		t.Errorf("%s: cluster name %q port %d: not a cluster member", name, opts.Cluster.Name, opts.Cluster.Port)
	}
	var routes []string
	for _, r := range opts.Routes {
		if r.Port() != strconv.Itoa(opts.Cluster.Port) {
			t.Errorf("%s: route %s is not on the cluster port %d", name, r, opts.Cluster.Port)
		}
		routes = append(routes, r.Hostname())
	}
	for _, peer := range peers {
		if self := peer == name || strings.HasPrefix(peer, name+"."); !self && !slices.ContainsFunc(routes, func(h string) bool { return h == peer || strings.HasPrefix(h, peer+".") }) {
			t.Errorf("%s: no route to %s (routes %q)", name, peer, routes)
		}
	}
}

// under reports whether path lies in (or is) one of the directories dirs.
func under(path string, dirs []string) bool {
	for _, d := range dirs {
		if path == d || strings.HasPrefix(path, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}

// diffSorted returns cmp.Diff of want and got ignoring order.
func diffSorted(want, got []string) string {
	want, got = slices.Sorted(slices.Values(want)), slices.Sorted(slices.Values(got))
	return cmp.Diff(want, got)
}

// natsTLSDir is where the NATS containers find their TLS files (ca.crt, tls.crt, tls.key).
const natsTLSDir = "/etc/nats/tls"

// natsTestEnv returns values for the variables the NATS configurations read: valid keys of the
// right kinds, made up passwords.
func natsTestEnv(t *testing.T) map[string]string {
	t.Helper()
	issuer, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	xkey, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	issuerPub, _ := issuer.PublicKey()
	xkeyPub, _ := xkey.PublicKey()
	return map[string]string{"NATS_MANAGEMENT_PASSWORD": "pw-management", "NATS_SYSTEM_PASSWORD": "pw-system",
		"NATS_CALLOUT_ISSUER": issuerPub, "NATS_CALLOUT_XKEY": xkeyPub}
}

// writeTestTLS writes a self-signed CA as ca.crt and a certificate it signed with its key as
// tls.crt and tls.key into dir.
func writeTestTLS(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "nats"}, DNSNames: []string{"nats"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	for name, data := range map[string][]byte{"ca.crt": cert, "tls.crt": cert,
		"tls.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// checkNATSSecurity checks that a node serves clients and routes over TLS and closes its bus:
// the GATEHOUSE account with JetStream and management's user, the system account with its
// user, and the auth callout (issuer, xkey, served in GATEHOUSE by management's users) for every
// other client.
func checkNATSSecurity(t *testing.T, opts *server.Options, name string) {
	t.Helper()
	if opts.TLSConfig == nil || len(opts.TLSConfig.Certificates) == 0 {
		t.Errorf("%s: clients are not served over TLS", name)
	}
	if opts.Cluster.TLSConfig == nil || opts.Cluster.TLSConfig.RootCAs == nil {
		t.Errorf("%s: routes are not TLS with a CA to verify peers", name)
	}
	if opts.NoAuthUser != "" {
		t.Errorf("%s: no_auth_user %q lets clients in without credentials", name, opts.NoAuthUser)
	}
	ac := opts.AuthCallout
	if ac == nil {
		t.Fatalf("%s: no auth_callout: the bus is open to any client", name)
	}
	if !nkeys.IsValidPublicAccountKey(ac.Issuer) || !nkeys.IsValidPublicCurveKey(ac.XKey) {
		t.Errorf("%s: auth_callout issuer %q xkey %q: want an account key and a curve key (the requests carry tokens)", name, ac.Issuer, ac.XKey)
	}
	if ac.Account != "GATEHOUSE" {
		t.Errorf("%s: auth_callout account %q, want GATEHOUSE (busauth.Account)", name, ac.Account)
	}
	if diff := diffSorted([]string{"gatehouse-management", "gatehouse-system"}, ac.AuthUsers); diff != "" {
		t.Errorf("%s: auth_callout auth_users (-want +got):\n%s", name, diff)
	}
	if opts.SystemAccount != "SYS" {
		t.Errorf("%s: system_account %q, want SYS (busauth.SystemAccount)", name, opts.SystemAccount)
	}
	users := map[string]string{}
	for _, u := range opts.Users {
		if u.Account != nil {
			users[u.Username] = u.Account.Name
		}
		if u.Password == "" {
			t.Errorf("%s: user %s has no password", name, u.Username)
		}
	}
	if diff := cmp.Diff(map[string]string{"gatehouse-management": "GATEHOUSE", "gatehouse-system": "SYS"}, users); diff != "" {
		t.Errorf("%s: users and their accounts (-want +got):\n%s", name, diff)
	}
	if !slices.ContainsFunc(opts.Accounts, func(a *server.Account) bool { return a.Name == "GATEHOUSE" }) {
		t.Errorf("%s: no GATEHOUSE account", name)
	}
}
