package stream

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/transport"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, dir: t.TempDir(), pool: x509.NewCertPool()}
	ca.pool.AddCert(cert)
	ca.write(t, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return ca
}

func (ca *testCA) write(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(ca.dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// issue makes a certificate with serial for 127.0.0.1 and viaduct.test
// and writes it and its key as name.pem and name.key.
func (ca *testCA) issue(t testing.TB, name string, serial int64) (certFile, keyFile string, cert tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"viaduct.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return ca.write(t, name+".pem", certPEM), ca.write(t, name+".key", keyPEM), cert
}

// tlsDial connects to s over TLS trusting ca, with the client certificate
// certs (none if nil), and completes the handshake.
func tlsDial(t testing.TB, s *Server, ca *testCA, certs []tls.Certificate) (*tls.Conn, error) {
	t.Helper()
	nc := dialFrom(t, "", s.Addrs()[0])
	c := tls.Client(nc, &tls.Config{RootCAs: ca.pool, ServerName: "viaduct.test", Certificates: certs})
	c.SetDeadline(time.Now().Add(wait))
	if err := c.Handshake(); err != nil {
		return nil, err
	}
	return c, nil
}

func tlsServer(t testing.TB, ca *testCA, cfg ServerConfig, h transport.Handler) *Server {
	t.Helper()
	if cfg.CertFile == "" {
		cfg.CertFile, cfg.KeyFile, _ = ca.issue(t, "server", 100)
	}
	return serve(t, transport.TLS, cfg, testLayout(), h)
}

// echoes checks that a message sent on c comes back.
func echoes(t testing.TB, c net.Conn, i int) {
	t.Helper()
	if _, err := c.Write(sipMsg(i)); err != nil {
		t.Fatal(err)
	}
	if got := readMsgs(t, c, 1)[0]; !bytes.Equal(got, sipMsg(i)) {
		t.Fatalf("got %q, want %q", got, sipMsg(i))
	}
}

// Messages over TLS, pipelined, come back in order; the source says TLS.
func TestTLSRelay(t *testing.T) {
	ca := newTestCA(t)
	r := newRecorder(true)
	s := tlsServer(t, ca, ServerConfig{}, r)
	c, err := tlsDial(t, s, ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	echoInOrder(t, c, 30)
	tail := append(sipMsg(30), sipMsg(31)...)
	for i := range tail { // a record per byte, with pauses: messages split across records and reads
		c.Write(tail[i : i+1])
		time.Sleep(time.Millisecond)
	}
	expectMsgs(t, c, 30, 2)
	_, srcs := r.waitMsgs(t, 32)
	if srcs[0].Kind != transport.TLS || srcs[0].Flow == 0 {
		t.Errorf("source %+v", srcs[0])
	}
	c.Write([]byte("\r\n\r\n"))
	if got := readFull(t, c, 2); string(got) != "\r\n" {
		t.Errorf("pong %q", got)
	}
}

// With a client CA, a client without a certificate is refused and one
// with a certificate of that CA is served.
func TestTLSClientCert(t *testing.T) {
	ca := newTestCA(t)
	_, _, clientCert := ca.issue(t, "client", 200)
	s := tlsServer(t, ca, ServerConfig{ClientCAFile: filepath.Join(ca.dir, "ca.pem")}, newRecorder(true))
	if c, err := tlsDial(t, s, ca, nil); err == nil { // TLS 1.3: the refusal comes with the first read
		c.Write(sipMsg(1))
		c.SetReadDeadline(time.Now().Add(wait))
		if _, err := c.Read(make([]byte, 10)); err == nil {
			t.Fatal("served a client without a certificate")
		}
	}
	eventually(t, "handshake failure counted", func() bool { return s.Stats().HandshakeFailures == 1 })
	c, err := tlsDial(t, s, ca, []tls.Certificate{clientCert})
	if err != nil {
		t.Fatal(err)
	}
	echoes(t, c, 2)
	if n := s.Stats().Closed[ClosedHandshake]; n != 1 {
		t.Errorf("closed for handshake %d, want 1", n)
	}
}

// Reload swaps the certificate for new handshakes; an established
// connection keeps working.
func TestTLSReload(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile, _ := ca.issue(t, "server", 100)
	s := tlsServer(t, ca, ServerConfig{CertFile: certFile, KeyFile: keyFile}, newRecorder(true))
	old, err := tlsDial(t, s, ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sn := old.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); sn != 100 {
		t.Fatalf("serial %d", sn)
	}
	ca.issue(t, "server", 101) // rewrites server.pem and server.key
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	c, err := tlsDial(t, s, ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sn := c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); sn != 101 {
		t.Errorf("after reload serial %d, want 101", sn)
	}
	echoes(t, old, 1)
	echoes(t, c, 2)
	os.WriteFile(certFile, []byte("garbage"), 0o600)
	if err := s.Reload(); err == nil {
		t.Error("reload of a broken certificate succeeded")
	}
	c3, err := tlsDial(t, s, ca, nil)
	if err != nil {
		t.Fatalf("after a failed reload: %v", err)
	}
	if sn := c3.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); sn != 101 {
		t.Errorf("after failed reload serial %d, want 101", sn)
	}
}

// A client that starts no handshake is closed at the handshake deadline.
func TestTLSHandshakeTimeout(t *testing.T) {
	ca := newTestCA(t)
	s := tlsServer(t, ca, ServerConfig{HandshakeTimeout: 200 * time.Millisecond}, newRecorder(true))
	c := dialFrom(t, "", s.Addrs()[0])
	start := time.Now()
	expectClosed(t, c)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("closed after %v", d)
	}
	eventually(t, "counted", func() bool {
		st := s.Stats()
		return st.Closed[ClosedHandshake] == 1 && st.HandshakeFailures == 1
	})
}

// Outbound TLS: a send dials, verifies the peer against the CA file and
// the name set with SetServerName, and reads the peer's answers back.
func TestTLSOutbound(t *testing.T) {
	ca := newTestCA(t)
	peerHandler := newRecorder(true)
	peerHandler.prefix = ""
	peer := tlsServer(t, ca, ServerConfig{}, peerHandler)
	r := newRecorder(false)
	certFile, keyFile, _ := ca.issue(t, "client", 300)
	s := tlsServer(t, ca, ServerConfig{CertFile: certFile, KeyFile: keyFile, CAFile: filepath.Join(ca.dir, "ca.pem")}, r)
	s.SetServerName(peer.Addrs()[0], "viaduct.test")
	if err := s.Send(sipMsg(1), transport.Peer{Addr: peer.Addrs()[0]}); err != nil {
		t.Fatal(err)
	}
	msgs, srcs := r.waitMsgs(t, 1)
	if !bytes.Equal(msgs[0], sipMsg(1)) || srcs[0].Addr != peer.Addrs()[0] || srcs[0].Flow == 0 || srcs[0].Kind != transport.TLS {
		t.Fatalf("got %q from %+v", msgs[0], srcs[0])
	}
	s.SetServerName(peer.Addrs()[0], "wrong.test")
	s.Send(sipMsg(2), srcs[0]) // the open connection is still used
	r.waitMsgs(t, 2)
	if st := s.Stats(); st.Dialed != 1 || st.HandshakeFailures != 0 {
		t.Errorf("dialled %d, handshake failures %d", st.Dialed, st.HandshakeFailures)
	}
}

// Outbound TLS to a server whose certificate does not name the server
// name fails the handshake, counted, and the backoff starts.
func TestTLSOutboundVerifyFails(t *testing.T) {
	ca := newTestCA(t)
	peer := tlsServer(t, ca, ServerConfig{}, newRecorder(true))
	s := tlsServer(t, ca, ServerConfig{CAFile: filepath.Join(ca.dir, "ca.pem")}, newRecorder(false))
	s.SetServerName(peer.Addrs()[0], "wrong.test")
	s.Send(sipMsg(1), transport.Peer{Addr: peer.Addrs()[0]})
	eventually(t, "handshake failure", func() bool { return s.Stats().Closed[ClosedHandshake] == 1 })
	if st := s.Stats(); st.HandshakeFailures != 1 || st.Dialed != 0 {
		t.Errorf("handshake failures %d, dialled %d", st.HandshakeFailures, st.Dialed)
	}
}
