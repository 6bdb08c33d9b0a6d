package e2e

import (
	"bufio"
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/bench/load"
	"github.com/viaduct-sip/viaduct/bench/load/loadtest"
	"github.com/viaduct-sip/viaduct/transport"
)

// Issue #15's TLS proofs through the real binaries: viaduct-load over TLS
// (its certificate checks on) through Viaduct to UDP upstreams, in both
// connection modes; a certificate reload under load; mutual TLS. The
// Kamailio ones are in tls_kamailio_test.go. Every certificate is made by
// the test (testCA), for 127.0.0.1 and localhost.

// testCA is a certificate authority the test makes, with its certificate
// in a PEM file for the peers' configurations.
type testCA struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate, PEM
}

// issued is a certificate testCA signed: its PEM files and serial.
type issued struct {
	certFile, keyFile string
	serial            *big.Int
}

// newTestCA makes a CA valid for a day and writes its certificate to
// dir/ca.pem.
func newTestCA(t *testing.T, dir string) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(t),
		Subject:               pkix.Name{CommonName: "viaduct e2e test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{t: t, dir: dir, cert: cert, key: key, file: filepath.Join(dir, "ca.pem")}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue signs a certificate for 127.0.0.1 and localhost, good for servers
// and clients both, and writes it and its key to dir/name.crt and
// dir/name.key (replacing them atomically: a reader sees the old files or
// the new ones).
func (ca *testCA) issue(name string) issued {
	t := ca.t
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	out := issued{certFile: filepath.Join(ca.dir, name+".crt"), keyFile: filepath.Join(ca.dir, name+".key"), serial: tmpl.SerialNumber}
	writePEM(t, out.keyFile, "PRIVATE KEY", keyDER)
	writePEM(t, out.certFile, "CERTIFICATE", der)
	return out
}

// pool returns a pool holding the CA's certificate alone.
func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func randomSerial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}

// writePEM writes one PEM block to path through a temporary file renamed
// over it.
func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// buildBinaries builds viaduct and viaduct-load into dir with one go build.
func buildBinaries(t *testing.T, dir string) (viaduct, viaductLoad string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./cmd/viaduct", "./cmd/viaduct-load")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/viaduct ./cmd/viaduct-load: %v\n%s", err, out)
	}
	return filepath.Join(dir, "viaduct"), filepath.Join(dir, "viaduct-load")
}

// tlsLab is the setting of a TLS test: its directory, binaries and CA.
type tlsLab struct {
	t         *testing.T
	dir       string
	viaduct   string // binary
	load      string // viaduct-load binary
	ca        *testCA
	adminURL  string
	tlsListen netip.AddrPort // Viaduct's tls: listener (wss: with secure set to "wss")
	udpListen netip.AddrPort // Viaduct's udp: listener
	secure    string         // the secure listener's transport: "tls" (the default) or "wss"
	// backlogDrops is loopbackBacklogDrops when the lab was made.
	backlogDrops uint64
}

// loopbackBacklogDrops returns the packets the kernel dropped, on every
// CPU, because its input backlog was full (/proc/net/softnet_stat's
// second column): on loopback a UDP datagram lost there is lost without a
// trace on either socket. 0 where the file cannot be read.
func loopbackBacklogDrops() uint64 {
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		return 0
	}
	var sum uint64
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			n, _ := strconv.ParseUint(f[1], 16, 64)
			sum += n
		}
	}
	return sum
}

func newTLSLab(t *testing.T) *tlsLab {
	t.Helper()
	dir := t.TempDir()
	l := &tlsLab{t: t, dir: dir, ca: newTestCA(t, dir)}
	l.viaduct, l.load = buildBinaries(t, dir)
	l.backlogDrops = loopbackBacklogDrops()
	t.Cleanup(l.logOnFailure)
	return l
}

// logOnFailure logs the end of every process's output when the test
// failed (the directory goes with the test).
func (l *tlsLab) logOnFailure() {
	if !l.t.Failed() {
		return
	}
	l.t.Logf("packets dropped by the kernel's input backlog (every CPU, every process) during the test: %d", loopbackBacklogDrops()-l.backlogDrops)
	outs, _ := filepath.Glob(filepath.Join(l.dir, "*.out"))
	for _, f := range outs {
		name := strings.TrimSuffix(filepath.Base(f), ".out")
		l.t.Logf("%s output (end):\n%s", name, lastLogLines(l.output(name), 25))
	}
}

// startUAS starts a viaduct-load uas on UDP, on a port the kernel picks
// (a port picked free beforehand can be taken by another process before
// the uas binds it), and returns it with the address it answers on.
func (l *tlsLab) startUAS(name string) (*proc, netip.AddrPort) {
	l.t.Helper()
	p := start(l.t, l.dir, name, l.load, "uas", "--listen", "127.0.0.1:0", "--workers", "1", "--concurrency", "1")
	var a netip.AddrPort
	waitFor(l.t, name+" answering", 10*time.Second, func() bool {
		if p.ended() {
			l.t.Fatalf("%s exited:\n%s", name, l.output(name))
		}
		m := uasAnswering.FindStringSubmatch(l.output(name))
		if m != nil {
			a = netip.MustParseAddrPort(m[1])
		}
		return m != nil
	})
	return p, a
}

var uasAnswering = regexp.MustCompile(`viaduct-load uas: answering on (127\.0\.0\.1:\d+) `)

// metricsOfNote are the prefixes of the metrics that say where messages
// went: received, forwarded (per upstream too), dropped, answered locally;
// the streams and TLS.
var metricsOfNote = []string{"viaduct_requests_", "viaduct_responses_", "viaduct_messages_", "viaduct_local_replies_total",
	"viaduct_datagrams_", "viaduct_kernel_", "viaduct_flows_", "viaduct_stream_", "viaduct_tls_",
	"viaduct_upstream_requests_forwarded_total", "viaduct_upstream_responses_total"}

// metricsOfNote returns Viaduct's non-zero samples of metricsOfNote.
func (l *tlsLab) metricsOfNote() string {
	resp, err := adminClient.Get(l.adminURL + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var out strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, p := range metricsOfNote {
			if strings.HasPrefix(line, p) && !strings.HasSuffix(line, " 0") {
				out.WriteString(line + "\n")
				break
			}
		}
	}
	return out.String()
}

// output is what the process started as name printed so far.
func (l *tlsLab) output(name string) string {
	b, _ := os.ReadFile(filepath.Join(l.dir, name+".out"))
	return string(b)
}

var uasInvites = regexp.MustCompile(`\(requests \d+: INVITE (\d+),`)

// stopUAS stops a viaduct-load uas and returns the INVITEs it received.
func (l *tlsLab) stopUAS(p *proc, name string) int {
	l.t.Helper()
	p.stop(syscall.SIGTERM)
	m := uasInvites.FindStringSubmatch(l.output(name))
	if m == nil {
		l.t.Fatalf("%s printed no report:\n%s", name, l.output(name))
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// startViaduct starts Viaduct (startViaductWith) in front of the UDP
// upstreams, each at ip:port.
func (l *tlsLab) startViaduct(upstreams []string, extra string) *proc {
	l.t.Helper()
	var ups strings.Builder
	for i, u := range upstreams {
		fmt.Fprintf(&ups, "  - {address: %q, id: up%d}\n", u, i+1)
	}
	return l.startViaductWith(ups.String(), extra)
}

// startViaductWith writes viaduct.yaml with a tls: and a udp: listener,
// the upstreams list's entries (YAML lines) and extra (YAML at the top
// level, e.g. the tls block), starts the binary with it and waits until
// it is ready.
func (l *tlsLab) startViaductWith(upstreams, extra string) *proc {
	l.t.Helper()
	secure := cmp.Or(l.secure, "tls")
	cfg := writeFile(l.t, l.dir, "viaduct.yaml", fmt.Sprintf(`listen: ["%s:127.0.0.1:0", "udp:127.0.0.1:0"]
workers: 2
upstreams:
%shealth:
  enabled: false
shutdown_drain: 0s
admin:
  listen: 127.0.0.1:0
# The load generators are one source each, far above the edge's
# per-phone limits: trusted, as a trunk or an SBC in front would be.
edge:
  access:
    trusted: ["127.0.0.0/8"]
%s`, secure, upstreams, extra))
	p := start(l.t, l.dir, "viaduct", l.viaduct, "--config", cfg)
	l.t.Cleanup(func() { // before the process is killed
		if l.t.Failed() && l.adminURL != "" {
			l.t.Logf("viaduct's metrics (non-zero, of messages and streams):\n%s", l.metricsOfNote())
		}
	})
	// The ports the kernel picked, from the start lines.
	waitFor(l.t, "viaduct listening", 15*time.Second, func() bool {
		if p.ended() {
			l.t.Fatalf("viaduct exited:\n%s", l.output("viaduct"))
		}
		log := l.output("viaduct")
		ls, adm := viaductListening.FindStringSubmatch(log), adminListening.FindStringSubmatch(log)
		if ls == nil || adm == nil {
			return false
		}
		l.tlsListen, l.udpListen = netip.MustParseAddrPort(ls[1]), netip.MustParseAddrPort(ls[2])
		l.adminURL = "http://" + adm[1]
		return true
	})
	waitFor(l.t, "viaduct ready", 15*time.Second, func() bool { return httpOK(l.adminURL + "/readyz") })
	return p
}

var (
	viaductListening = regexp.MustCompile(`msg="fastpath started" listen="\[(?:tls|wss):(127\.0\.0\.1:\d+) udp:(127\.0\.0\.1:\d+)\]"`)
	adminListening   = regexp.MustCompile(`msg="admin API listening" addr=(127\.0\.0\.1:\d+) `)
)

// ended reports whether the process has ended.
func (p *proc) ended() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return true
	default:
		return false
	}
}

// tlsBlock is the tls block of a Viaduct whose listeners present cert.
func tlsBlock(cert issued, more string) string {
	return fmt.Sprintf("tls:\n  cert_file: %s\n  key_file: %s\n%s", cert.certFile, cert.keyFile, more)
}

// uacRun is a viaduct-load uac run started by startUAC.
type uacRun struct {
	name string
	cmd  *exec.Cmd
	done chan error
	json string
}

// startUAC starts viaduct-load uac with args (and --quiet, --json) in the
// background; wait collects its report.
func (l *tlsLab) startUAC(name string, args ...string) *uacRun {
	l.t.Helper()
	r := &uacRun{name: name, done: make(chan error, 1), json: filepath.Join(l.dir, name+".json")}
	out, err := os.Create(filepath.Join(l.dir, name+".out"))
	if err != nil {
		l.t.Fatal(err)
	}
	r.cmd = exec.Command(l.load, append([]string{"uac", "--quiet", "--json", r.json}, args...)...)
	r.cmd.Dir, r.cmd.Stdout, r.cmd.Stderr = l.dir, out, out
	if err := r.cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait(); out.Close() }()
	l.t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-r.done
		r.done <- nil
	})
	return r
}

// running reports whether the run has not ended yet.
func (r *uacRun) running() bool {
	select {
	case err := <-r.done:
		r.done <- err
		return false
	default:
		return true
	}
}

// wait waits (limit at most) for the run to end and returns its report;
// a run that cannot report fails the test.
func (l *tlsLab) wait(r *uacRun, limit time.Duration) load.Report {
	l.t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
	case <-time.After(limit):
		r.cmd.Process.Kill()
		l.t.Fatalf("%s still running after %v:\n%s", r.name, limit, l.output(r.name))
	}
	b, err := os.ReadFile(r.json)
	if err != nil {
		l.t.Fatalf("%s wrote no report: %v\n%s", r.name, err, l.output(r.name))
	}
	var rep load.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		l.t.Fatalf("%s: %v", r.name, err)
	}
	return rep
}

// runUAC runs viaduct-load uac to the end and returns its report.
func (l *tlsLab) runUAC(name string, args ...string) load.Report {
	l.t.Helper()
	return l.wait(l.startUAC(name, args...), 90*time.Second)
}

// tlsUACArgs are the arguments of a uac sending calls calls at rate over
// TLS to Viaduct's tls: listener, one source, connections shared or
// per-call, checking Viaduct's certificate against the test CA. The UAC
// connects from 127.0.0.2, not the upstreams' 127.0.0.1: Viaduct takes a
// client whose address and port are an upstream's, whatever the transport,
// for that upstream (see TestTLSClientOnAnUpstreamsPort), and of a
// thousand ephemeral ports one is an upstream's often enough to fail a run
// now and then.
func (l *tlsLab) tlsUACArgs(calls, rate int, connections string, more ...string) []string {
	return append([]string{"--target", l.tlsListen.String(), "--bind", clientAddr, "--transport", "tls", "--tls-ca", l.ca.file,
		"--connections", connections, "--sources", "1", "--concurrency", "1",
		"--total", strconv.Itoa(calls), "--rate", strconv.Itoa(rate), "--timeout", "8s", "--drain", "10s"}, more...)
}

// clientAddr is the address the TLS clients connect from.
const clientAddr = "127.0.0.2"

// TestTLSClientOnAnUpstreamsPort: a TLS client whose connection comes from
// the address and port of a UDP upstream (127.0.0.1:P over TCP, the
// upstream 127.0.0.1:P over UDP) is a client all the same: its calls are
// balanced to the upstreams and complete.
func TestTLSClientOnAnUpstreamsPort(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	l := newTLSLab(t)
	cert := l.ca.issue("viaduct")
	uas, a := l.startUAS("uas")
	l.startViaduct([]string{a.String()}, tlsBlock(cert, ""))
	const calls = 20
	rep := l.runUAC("uac", "--target", l.tlsListen.String(), "--bind", "127.0.0.1", "--bind-port", strconv.Itoa(int(a.Port())),
		"--transport", "tls", "--tls-ca", l.ca.file, "--sources", "1", "--concurrency", "1",
		"--total", strconv.Itoa(calls), "--rate", "50", "--timeout", "3s", "--drain", "5s")
	checkAllCompleted(t, "from the upstream's port", rep, calls)
	checkEveryRequestBalanced(t, l.adminURL, calls, 3*calls)
	if n := l.stopUAS(uas, "uas"); n != calls {
		t.Errorf("the UAS received %d INVITEs, want %d", n, calls)
	}
}

// checkEveryRequestBalanced checks Viaduct's accounting: it received
// invites INVITEs (none came back to it, as one sent to a next hop that is
// Viaduct itself would) and forwarded requests requests, every one to an
// upstream.
func checkEveryRequestBalanced(t *testing.T, adminURL string, invites, requests int) {
	t.Helper()
	if n := metricSum(t, adminURL, "viaduct_requests_received_total", `method="INVITE"`); n != float64(invites) {
		t.Errorf("viaduct_requests_received_total{method=INVITE} %v, want %d", n, invites)
	}
	fwd, up := metricSum(t, adminURL, "viaduct_requests_forwarded_total"), metricSum(t, adminURL, "viaduct_upstream_requests_forwarded_total")
	if fwd != float64(requests) || up != fwd {
		t.Errorf("viaduct_requests_forwarded_total %v, to upstreams %v; want %d, all to upstreams", fwd, up, requests)
	}
}

// checkAllCompleted fails the test unless every one of calls completed.
func checkAllCompleted(t *testing.T, what string, rep load.Report, calls int) {
	t.Helper()
	checkAllCompletedOver(t, what, "tls", rep, calls)
}

// checkAllCompletedOver is checkAllCompleted for a run over transport kind.
func checkAllCompletedOver(t *testing.T, what, kind string, rep load.Report, calls int) {
	t.Helper()
	if rep.Started != uint64(calls) || rep.Completed != uint64(calls) || rep.Failed != 0 {
		t.Errorf("%s: %d started, %d completed, %d failed %v; want all %d completed", what, rep.Started, rep.Completed, rep.Failed, rep.FailedBy, calls)
	}
	if rep.Transport != kind {
		t.Errorf("%s: transport %q, want %s", what, rep.Transport, kind)
	}
}

// checkConns checks the connections a run opened: one in all with
// shared (and none dropped or reopened), one per call with per-call.
func checkConns(t *testing.T, what, connections string, rep load.Report, calls int) {
	t.Helper()
	want := uint64(1)
	if connections == "per-call" {
		want = uint64(calls)
	}
	if rep.ConnsOpened != want || rep.ConnsFailed != 0 || rep.Reconnects != 0 {
		t.Errorf("%s (%s): %d connections opened, %d failed, %d reopened; want %d, 0, 0", what, connections,
			rep.ConnsOpened, rep.ConnsFailed, rep.Reconnects, want)
	}
	if connections == "shared" && rep.ConnsDropped != 0 {
		t.Errorf("%s (shared): %d connections dropped, want 0", what, rep.ConnsDropped)
	}
}

// metricSum sums the samples of a metric whose labels contain every one of
// labels (each `name="value"`), 0 when there are none.
func metricSum(t *testing.T, adminURL, name string, labels ...string) float64 {
	t.Helper()
	resp, err := adminClient.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		all := true
		for _, lb := range labels {
			all = all && strings.Contains(rest, lb)
		}
		if !all {
			continue
		}
		v, err := strconv.ParseFloat(rest[strings.LastIndexByte(rest, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("/metrics: %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// TestTLSEndToEnd is issue #15's first TLS proof: viaduct-load's UAC over
// TLS, checking Viaduct's certificate against the test's CA (no
// --tls-insecure), through Viaduct's tls: listener to two viaduct-load
// UASs over UDP, once with one connection for every call and once with a
// connection per call. Every call completes, both upstreams take calls, and
// Viaduct counts the TLS connections it accepted.
func TestTLSEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	begin := time.Now()
	l := newTLSLab(t)
	secureEndToEnd(t, l)
	if n := metricSum(t, l.adminURL, "viaduct_tls_handshake_failures_total"); n != 0 {
		t.Errorf("viaduct_tls_handshake_failures_total %v, want 0", n)
	}
	t.Logf("total %v", time.Since(begin))
}

// secureEndToEnd runs 300 calls at 150/s from one viaduct-load uac over
// l.secure (tls or wss) through Viaduct to two UDP UASs, once on one
// connection and once with a connection per call, and checks every call
// completed, the connections Viaduct accepted and the balance.
func secureEndToEnd(t *testing.T, l *tlsLab) {
	kind := cmp.Or(l.secure, "tls")
	cert := l.ca.issue("viaduct")
	uas1, a1 := l.startUAS("uas1")
	uas2, a2 := l.startUAS("uas2")
	l.startViaduct([]string{a1.String(), a2.String()}, tlsBlock(cert, ""))

	const calls, rate = 300, 150
	for _, conns := range []string{"shared", "per-call"} {
		args := l.tlsUACArgs(calls, rate, conns)
		for i, a := range args {
			if a == "tls" {
				args[i] = kind
			}
		}
		rep := l.runUAC("uac-"+conns, args...)
		checkAllCompletedOver(t, conns, kind, rep, calls)
		checkConns(t, "uac", conns, rep, calls)
	}
	if n := metricSum(t, l.adminURL, "viaduct_stream_accepted_total", `transport="`+kind+`"`); n != 1+calls {
		t.Errorf("viaduct_stream_accepted_total{transport=%s} %v, want %d (one shared connection, one per call)", kind, n, 1+calls)
	}
	checkEveryRequestBalanced(t, l.adminURL, 2*calls, 2*3*calls)
	per := []int{l.stopUAS(uas1, "uas1"), l.stopUAS(uas2, "uas2")}
	t.Logf("INVITEs per upstream %v", per)
	if per[0] == 0 || per[1] == 0 || per[0]+per[1] != 2*calls {
		t.Errorf("INVITEs per upstream %v, want both > 0 and %d in all", per, 2*calls)
	}
}

// clientTLS is a client's configuration verifying the server against
// the test CA as 127.0.0.1 and presenting client (when it has files).
func clientTLS(ca *testCA, client issued) (*tls.Config, error) {
	cfg := &tls.Config{RootCAs: ca.pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if client.certFile != "" {
		pair, err := tls.LoadX509KeyPair(client.certFile, client.keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// servedSerial opens a TLS connection to addr, verifying the server
// against the test CA as 127.0.0.1, and returns the serial of the
// certificate it presented.
func servedSerial(t *testing.T, ca *testCA, addr netip.AddrPort) *big.Int {
	t.Helper()
	serial, err := tryServedSerial(ca, addr, issued{})
	if err != nil {
		t.Fatal(err)
	}
	return serial
}

// tryServedSerial is servedSerial presenting client (when it has files)
// and returning the error of a connection that fails.
func tryServedSerial(ca *testCA, addr netip.AddrPort, client issued) (*big.Int, error) {
	cfg, err := clientTLS(ca, client)
	if err != nil {
		return nil, err
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr.String(), cfg)
	if err != nil {
		return nil, fmt.Errorf("tls dial %v: %w", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// TestTLSCertificateReloadUnderLoad is issue #15's reload proof: while two
// viaduct-load UACs run calls over TLS, one on a single shared connection
// and one with a connection per call, the certificate files are replaced
// with a new certificate of the same CA and Viaduct gets SIGHUP. No call
// fails, a new connection after the reload is served the new certificate
// (its serial read with crypto/tls), the shared connection opened before
// the reload carried calls to the end without being reopened, and
// per-call connections opened after the reload verified fine.
func TestTLSCertificateReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	begin := time.Now()
	l := newTLSLab(t)
	old := l.ca.issue("viaduct")
	uas, a := l.startUAS("uas")
	v := l.startViaduct([]string{a.String()}, tlsBlock(old, ""))
	if got := servedSerial(t, l.ca, l.tlsListen); got.Cmp(old.serial) != 0 {
		t.Fatalf("served serial %v before the reload, want %v", got, old.serial)
	}

	// 10 s of calls each, held 200 ms: calls are in progress at the reload.
	const calls, rate = 1000, 100
	shared := l.startUAC("uac-shared", l.tlsUACArgs(calls, rate, "shared", "--call-hold", "200ms")...)
	perCall := l.startUAC("uac-per-call", l.tlsUACArgs(calls, rate, "per-call", "--call-hold", "200ms")...)
	inBefore := 0.0
	waitFor(t, "calls under way over TLS", 20*time.Second, func() bool {
		inBefore = metricSum(t, l.adminURL, "viaduct_stream_messages_total", `transport="tls"`, `direction="in"`)
		return inBefore >= 400
	})

	renewed := l.ca.issue("viaduct") // same files, new key and serial
	if renewed.serial.Cmp(old.serial) == 0 {
		t.Fatal("the CA issued the same serial twice")
	}
	if err := v.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var got *big.Int
	waitFor(t, "the new certificate served", 10*time.Second, func() bool {
		got = servedSerial(t, l.ca, l.tlsListen)
		return got.Cmp(renewed.serial) == 0
	})
	if !shared.running() || !perCall.running() {
		t.Fatalf("a UAC ended before the reload took effect (shared running %v, per-call running %v): the test proves nothing; raise the calls",
			shared.running(), perCall.running())
	}
	inAtReload := metricSum(t, l.adminURL, "viaduct_stream_messages_total", `transport="tls"`, `direction="in"`)

	// The same over the admin API, which answers once the files are read;
	// then a certificate file that does not parse: the reload is refused
	// and the certificate in use stays.
	third := l.ca.issue("viaduct")
	if res := l.postReload(); !res.Applied || res.Error != "" {
		t.Errorf("POST /api/v1/reload with a new certificate: %+v, want applied", res)
	}
	if got := servedSerial(t, l.ca, l.tlsListen); got.Cmp(third.serial) != 0 {
		t.Errorf("after POST /api/v1/reload the served serial is %v, want %v", got, third.serial)
	}
	if err := os.WriteFile(third.certFile, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if res := l.postReload(); res.Applied || !strings.Contains(res.Field, "cert_file") {
		t.Errorf("POST /api/v1/reload with a broken certificate file: %+v, want refused naming tls.cert_file", res)
	}
	if got := servedSerial(t, l.ca, l.tlsListen); got.Cmp(third.serial) != 0 {
		t.Errorf("after a refused reload the served serial is %v, want %v (the one in use)", got, third.serial)
	}
	if !shared.running() || !perCall.running() {
		t.Errorf("a UAC ended before the reloads were done: raise the calls")
	}

	for _, r := range []struct {
		run   *uacRun
		conns string
	}{{shared, "shared"}, {perCall, "per-call"}} {
		rep := l.wait(r.run, 90*time.Second)
		checkAllCompleted(t, r.conns, rep, calls)
		checkConns(t, "uac", r.conns, rep, calls)
	}
	inAfter := metricSum(t, l.adminURL, "viaduct_stream_messages_total", `transport="tls"`, `direction="in"`)
	t.Logf("TLS messages in: %v before the reload began, %v when the new certificate was served, %v at the end", inBefore, inAtReload, inAfter)
	if inAfter <= inAtReload {
		t.Errorf("no TLS message after the reload (%v at the reload, %v at the end)", inAtReload, inAfter)
	}
	if n := metricSum(t, l.adminURL, "viaduct_tls_handshake_failures_total"); n != 0 {
		t.Errorf("viaduct_tls_handshake_failures_total %v, want 0", n)
	}
	// The one error logged is the refused reload.
	if log := l.output("viaduct"); strings.Count(log, "level=ERROR") != 1 || !strings.Contains(log, `level=ERROR msg="configuration reload refused`) {
		t.Errorf("viaduct's errors, want the refused reload alone:\n%s", lastLogLines(log, 20))
	}
	checkEveryRequestBalanced(t, l.adminURL, 2*calls, 2*3*calls)
	if n := l.stopUAS(uas, "uas"); n != 2*calls {
		t.Errorf("the UAS received %d INVITEs, want %d", n, 2*calls)
	}
	t.Logf("total %v", time.Since(begin))
}

// reloadAnswer is the part of POST /api/v1/reload's answer the tests read.
type reloadAnswer struct {
	Applied bool   `json:"applied"`
	Field   string `json:"field"`
	Error   string `json:"error"`
}

// postReload asks Viaduct to reload over its admin API.
func (l *tlsLab) postReload() reloadAnswer {
	l.t.Helper()
	resp, err := adminClient.Post(l.adminURL+"/api/v1/reload", "", nil)
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	var res reloadAnswer
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		l.t.Fatalf("POST /api/v1/reload: status %d: %v", resp.StatusCode, err)
	}
	return res
}

// lastLogLines returns the last n lines of s.
func lastLogLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tlsOptions opens a TLS connection to addr as tryServedSerial does and
// sends an OPTIONS for the server itself (a keepalive), returning the
// status line of the answer, or the error that ended the connection (a
// refused handshake: in TLS 1.3 a client's handshake ends before the
// server checks its certificate, so a refusal shows on the first read).
func tlsOptions(ca *testCA, addr netip.AddrPort, client issued) (string, error) {
	cfg, err := clientTLS(ca, client)
	if err != nil {
		return "", err
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr.String(), cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "OPTIONS sip:%s;transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS %s;branch=z9hG4bK-e2e-options;rport\r\n"+
		"From: <sip:e2e@127.0.0.1>;tag=e2e\r\nTo: <sip:%s>\r\nCall-ID: e2e-options-%d\r\nCSeq: 1 OPTIONS\r\n"+
		"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", addr, c.LocalAddr(), addr, time.Now().UnixNano())
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// TestTLSMutual is issue #15's mutual TLS: with client_ca_file, a client
// presenting no certificate is refused (its first read fails, and Viaduct
// counts a failed handshake), while a UAC presenting a certificate of the
// CA completes its calls.
func TestTLSMutual(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	l := newTLSLab(t)
	cert := l.ca.issue("viaduct")
	client := l.ca.issue("client")
	uas, a := l.startUAS("uas")
	l.startViaduct([]string{a.String()}, tlsBlock(cert, "  client_ca_file: "+l.ca.file+"\n"))

	// Without a certificate: refused.
	if status, err := tlsOptions(l.ca, l.tlsListen, issued{}); err == nil {
		t.Fatalf("a client without a certificate was served: %q", status)
	} else {
		t.Logf("without a certificate: %v", err)
	}
	waitFor(t, "the refused handshake counted", 10*time.Second, func() bool {
		return metricSum(t, l.adminURL, "viaduct_tls_handshake_failures_total") >= 1
	})

	// With a certificate of the CA: served, and calls complete.
	if status, err := tlsOptions(l.ca, l.tlsListen, client); err != nil || status != "SIP/2.0 200 OK" {
		t.Fatalf("a client with a certificate of the CA: %q, %v; want SIP/2.0 200 OK", status, err)
	}
	cfg, err := clientTLS(l.ca, client)
	if err != nil {
		t.Fatal(err)
	}
	const calls = 100
	r := loadtest.CallsWith(t, load.UACConfig{Target: l.tlsListen, Bind: []netip.Addr{netip.MustParseAddr(clientAddr)}, Transport: transport.TLS,
		TLS:     cfg,
		Timeout: 8 * time.Second}, calls)
	if r.Counts.Completed != calls || r.Counts.Failed != 0 {
		t.Errorf("with a client certificate: %d of %d calls completed, %d failed: %v", r.Counts.Completed, calls, r.Counts.Failed, r.Counts.FailedBy())
	}
	if n := metricSum(t, l.adminURL, "viaduct_tls_handshake_failures_total"); n != 1 {
		t.Errorf("viaduct_tls_handshake_failures_total %v, want 1 (the client without a certificate alone)", n)
	}
	checkEveryRequestBalanced(t, l.adminURL, calls, 3*calls)
	if n := l.stopUAS(uas, "uas"); n != calls {
		t.Errorf("the UAS received %d INVITEs, want %d", n, calls)
	}
}

// Issue #16 over the binaries: viaduct-load's UAC speaking SIP over
// secure WebSocket as a browser does (the upgrade with the sip
// subprotocol, masked frames), verifying Viaduct's certificate, through
// Viaduct's wss: listener to two UASs over UDP, with one connection for
// every call and with a connection per call: every call completes, both
// upstreams take calls, and every connection was upgraded.
func TestWSSEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	l := newTLSLab(t)
	l.secure = "wss"
	secureEndToEnd(t, l)
	if n := metricSum(t, l.adminURL, "viaduct_websocket_upgrades_total", `result="accepted"`, `transport="wss"`); n != 1+300 {
		t.Errorf("viaduct_websocket_upgrades_total{accepted,wss} %v, want 301 (one shared connection, one per call)", n)
	}
}
