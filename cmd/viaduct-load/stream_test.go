package main

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/bench/load"
	"github.com/viaduct-sip/viaduct/transport"
)

// TestStreamCommands runs the uas command on tcp and on tls (self-signed,
// no files) and the uac command against it, with shared and per-call
// connections.
func TestStreamCommands(t *testing.T) {
	certFile, keyFile := writeCertificate(t)
	for _, tc := range []struct {
		kind, conns string
		extra       []string // uac flags
		uasExtra    []string
		wantConns   string
	}{
		{"tcp", "shared", nil, nil, "accepted 1,"},
		{"tls", "per-call", []string{"--tls-insecure"}, nil, "accepted 40,"},
		// The certificate checked against the CA file (the certificate itself).
		{"tls", "shared", []string{"--tls-ca", certFile}, []string{"--tls-cert", certFile, "--tls-key", keyFile}, "accepted 1,"},
	} {
		name := tc.kind + "/" + tc.conns
		if len(tc.extra) > 0 {
			name += "/" + strings.TrimPrefix(tc.extra[0], "--")
		}
		t.Run(name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close()
			var uasOut, uasErr bytes.Buffer
			done := make(chan int)
			go func() {
				done <- run(append([]string{"uas", "--transport", tc.kind, "--listen", addr, "--duration", "3s", "--quiet"},
					tc.uasExtra...), &uasOut, &uasErr)
			}()
			var out, errb bytes.Buffer
			args := append([]string{"uac", "--transport", tc.kind, "--connections", tc.conns, "--target", addr, "--sources", "1",
				"--rate", "200", "--total", "40", "--quiet"}, tc.extra...)
			code := 2
			for deadline := time.Now().Add(2 * time.Second); code == 2 && time.Now().Before(deadline); {
				out.Reset()
				errb.Reset()
				code = run(args, &out, &errb) // 2 until the uas listens
			}
			if code != 0 {
				t.Fatalf("uac exit %d: %s%s", code, out.String(), errb.String())
			}
			for _, want := range []string{"over " + tc.kind + " (" + tc.conns + " connections)", "completed              40", "PASS"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("uac report lacks %q:\n%s", want, out.String())
				}
			}
			if code := <-done; code != 0 {
				t.Fatalf("uas exit %d: %s", code, uasErr.String())
			}
			if !strings.Contains(uasOut.String(), "INVITE 40, ACK 40, BYE 40") || !strings.Contains(uasOut.String(), tc.wantConns) {
				t.Fatalf("uas summary:\n%s", uasOut.String())
			}
		})
	}
}

// TestFindMaxOverTLS runs --find-max over tls with a connection per call.
func TestFindMaxOverTLS(t *testing.T) {
	s := startUAS(t, load.UASConfig{Transport: transport.TLS})
	var out, errb bytes.Buffer
	code := run([]string{"uac", "--transport", "tls", "--tls-insecure", "--connections", "per-call", "--target", s.Addr().String(),
		"--find-max", "--rate", "20", "--find-limit", "40", "--find-growth", "2", "--find-step", "500ms", "--find-drain", "2s",
		"--quiet", "--json", "-"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var res load.FindMaxResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if res.MaxRate != 40 || res.Best == nil || res.Best.Transport != "tls" || res.Best.ConnsOpened != res.Best.Started {
		t.Fatalf("find-max over tls: max %v, best %+v", res.MaxRate, res.Best)
	}
}

func TestConnsCommand(t *testing.T) {
	s := startUAS(t, load.UASConfig{Transport: transport.TCP})
	var out, errb bytes.Buffer
	code := run([]string{"conns", "--target", s.Addr().String(), "--count", "100", "--hold", "100ms", "--keepalive", "options",
		"--quiet"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errb.String())
	}
	for _, want := range []string{"opened                 100 in", "OPTIONS answered       100", "still open             100"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	s.Close() // now nothing listens: every connection is refused
	out.Reset()
	if code := run([]string{"conns", "--target", s.Addr().String(), "--count", "5", "--hold", "0s", "--quiet"}, &out, &errb); code != 1 ||
		!strings.Contains(out.String(), "failed                 5 (refused 5)") {
		t.Fatalf("against a closed port: exit %d\n%s", code, out.String())
	}
}

func TestStreamUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"uac", "--target", "127.0.0.1:5060", "--total", "1", "--transport", "sctp"}, `unknown transport "sctp"`},
		{[]string{"uac", "--target", "127.0.0.1:5060", "--total", "1", "--transport", "tcp", "--connections", "t1"}, `unknown connections mode "t1"`},
		{[]string{"uas", "--tls-cert", "x.pem"}, "--tls-cert and --tls-key need --transport tls"},
		{[]string{"uas", "--transport", "tls", "--tls-cert", "x.pem"}, "give both a certificate and its key"},
		{[]string{"conns", "--target", "127.0.0.1:5060", "--transport", "udp"}, "conns holds tcp, tls, ws or wss connections"},
		{[]string{"uas", "--transport", "ws"}, "the responder answers on udp, tcp or tls"},
		{[]string{"conns", "--target", "127.0.0.1:5060", "--keepalive", "ping"}, `unknown keepalive "ping"`},
		{[]string{"uac", "--target", "127.0.0.1:1", "--total", "1", "--transport", "tcp"}, "connection refused"},
	} {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%q: exit %d, want 2 and %q:\n%s", tc.args, code, tc.want, errb.String())
		}
	}
}

// writeCertificate writes a self-signed certificate for 127.0.0.1 and its
// key as PEM files.
func writeCertificate(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	cert, err := load.SelfSignedCertificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
