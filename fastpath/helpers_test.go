package fastpath

import (
	"bytes"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.golden from the current output")

// Addresses of the data-only tests (Handle is driven directly; no socket is
// opened with them).
var (
	proxyAddr = netip.MustParseAddrPort("192.0.2.10:5060")
	up1       = netip.MustParseAddrPort("192.0.2.21:5060")
	up2       = netip.MustParseAddrPort("192.0.2.22:5060")
	alice     = netip.MustParseAddrPort("198.51.100.7:5060")
	testKey   = []byte("viaduct-golden-test-secret-32byt")
)

func testConfig() Config {
	return Config{
		Listen:    []netip.AddrPort{proxyAddr},
		Upstreams: []netip.AddrPort{up1, up2},
		Secret:    testKey,
	}
}

func newTestWorker(t testing.TB, mod func(*Config)) (*Engine, *Worker) {
	t.Helper()
	cfg := testConfig()
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e, e.NewWorker()
}

// sip turns a literal with LF line ends into CRLF.
func sip(s string) []byte {
	return []byte(strings.ReplaceAll(s, "\n", "\r\n"))
}

func newOutput(e *Engine) *Output {
	return &Output{Buf: make([]byte, 0, e.OutputBufferSize())}
}

// udpFrom is a datagram's source on listener 0.
func udpFrom(a netip.AddrPort) transport.Peer {
	return transport.Peer{Addr: a, Kind: transport.UDP}
}

// handle runs one datagram from `from` on listener 0 and returns a copy of
// the output.
func handle(t testing.TB, w *Worker, in []byte, from netip.AddrPort) (Action, Output) {
	t.Helper()
	return handleFrom(t, w, in, udpFrom(from))
}

// handleFrom runs one message from src and returns a copy of the output.
func handleFrom(t testing.TB, w *Worker, in []byte, src transport.Peer) (Action, Output) {
	t.Helper()
	out := newOutput(w.e)
	a := w.Handle(in, src, out)
	o := *out
	o.Buf = append([]byte(nil), out.Buf...)
	return a, o
}

// checkGolden compares the action, destination and bytes of an output with
// testdata/golden/<name>.golden, byte for byte.
func checkGolden(t *testing.T, name string, a Action, o Output) {
	t.Helper()
	var got bytes.Buffer
	fmt.Fprintf(&got, "action=%s to=%s listen=%d drop=%s\n----\n", a, o.To, o.Listener, o.Drop)
	if a == ActionForward || a == ActionReply {
		got.Write(o.Buf)
	}
	path := filepath.Join("testdata", "golden", name+".golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("%s: output differs from %s\n--- got\n%s\n--- want\n%s", name, path, show(got.Bytes()), show(want))
	}
}

func show(b []byte) string { return strings.ReplaceAll(string(b), "\r\n", "\u21b5\n") }

// mustParse parses b or fails the test.
func mustParse(t testing.TB, b []byte) *parser.Message {
	t.Helper()
	m := new(parser.Message)
	if err := parser.Parse(b, m); err != nil {
		t.Fatalf("output does not parse: %v\n%s", err, b)
	}
	return m
}

// vias returns every via-parm of b as text.
func vias(t testing.TB, b []byte) []string {
	t.Helper()
	m := mustParse(t, b)
	var out []string
	it := m.Vias()
	var v parser.Via
	for it.Next(&v) {
		out = append(out, string(b[v.Start:v.End]))
	}
	if err := it.Err(); err != nil {
		t.Fatalf("Via: %v", err)
	}
	return out
}

// topBranch returns the branch of the top Via of b.
func topBranch(t testing.TB, b []byte) string {
	t.Helper()
	v := mustParse(t, b).TopVia()
	return string(v.Branch)
}

// header returns the values of every line of header kind k.
func header(t testing.TB, b []byte, k parser.HeaderKind) []string {
	t.Helper()
	m := mustParse(t, b)
	var out []string
	for i := 0; i < m.NumHeaders(); i++ {
		if h := m.Header(i); h.Kind == k {
			out = append(out, string(h.Value))
		}
	}
	return out
}

// respond builds the response a UAS would send to a forwarded request: the
// status line, then Via, From, To (with toTag added), Call-ID and CSeq copied,
// any extra lines, and Content-Length 0.
func respond(t testing.TB, req []byte, status, toTag string, extra ...string) []byte {
	t.Helper()
	m := mustParse(t, req)
	var b bytes.Buffer
	b.WriteString("SIP/2.0 " + status + "\r\n")
	for i := 0; i < m.NumHeaders(); i++ {
		h := m.Header(i)
		switch h.Kind {
		case parser.KindVia, parser.KindFrom, parser.KindCallID, parser.KindCSeq, parser.KindRecordRoute:
			b.Write(req[h.Start:h.End])
		case parser.KindTo:
			line := strings.TrimRight(string(req[h.Start:h.End]), "\r\n")
			if toTag != "" && !strings.Contains(line, ";tag=") {
				line += ";tag=" + toTag
			}
			b.WriteString(line + "\r\n")
		}
	}
	for _, x := range extra {
		b.WriteString(x + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.Bytes()
}
