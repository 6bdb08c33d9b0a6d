package load

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

// streamPair starts a UAS on kind and returns a UAC configuration aimed at
// it; on tls the UAC trusts the UAS's own certificate (checked, not
// skipped).
func streamPair(t *testing.T, kind transport.Kind, mode Connections) (*UAS, UACConfig) {
	t.Helper()
	scfg := UASConfig{Transport: kind}
	ccfg := UACConfig{Transport: kind, Connections: mode, Sources: 2, Timeout: 5 * time.Second}
	if kind == transport.TLS {
		cert, err := SelfSignedCertificate("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		scfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		pool := x509.NewCertPool()
		pool.AddCert(cert.Leaf)
		ccfg.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	s := startUAS(t, scfg)
	ccfg.Target = s.Addr()
	return s, ccfg
}

// TestStreamCalls runs calls from the UAC to the UAS over tcp and tls, on
// shared connections and on one connection per call: every call completes
// and each used the connections it should have.
func TestStreamCalls(t *testing.T) {
	const calls = 300
	for _, kind := range []transport.Kind{transport.TCP, transport.TLS} {
		for _, mode := range []Connections{ConnShared, ConnPerCall} {
			t.Run(kind.String()+"/"+mode.String(), func(t *testing.T) {
				s, cfg := streamPair(t, kind, mode)
				u := startUAC(t, cfg)
				r := runFor(t, u, RunOptions{Rate: 1000, Total: calls})
				c := &r.Counts
				if c.Started != calls || c.Completed != calls || c.Failed != 0 {
					t.Fatalf("started %d completed %d failed %d (%v); send errors %d, unexpected %d, parse %d",
						c.Started, c.Completed, c.Failed, c.FailedBy(), c.SendErrors, c.Unexpected, c.ParseErrors)
				}
				if c.Retransmissions != 0 {
					t.Errorf("%d retransmissions on a reliable transport", c.Retransmissions)
				}
				var total Counts
				u.Counts(&total)
				wantConns := uint64(2) // one per source
				if mode == ConnPerCall {
					wantConns = calls
				}
				if total.ConnsOpened != wantConns || total.ConnsFailed != 0 {
					t.Errorf("connections opened %d (want %d), failed %d", total.ConnsOpened, wantConns, total.ConnsFailed)
				}
				var sc UASCounts
				s.Counts(&sc)
				if sc.Invite != calls || sc.Ack != calls || sc.Bye != calls || sc.Accepted != wantConns || sc.ParseErrors != 0 {
					t.Errorf("uas: INVITE %d ACK %d BYE %d, accepted %d connections (want %d), unparsable %d",
						sc.Invite, sc.Ack, sc.Bye, sc.Accepted, wantConns, sc.ParseErrors)
				}
				if mode == ConnPerCall {
					testenv.WaitFor(t, "per-call connections to close", 10*time.Second, func() bool { return s.Conns() == 0 })
				}
			})
		}
	}
}

// TestStreamMessagesOnTheWire checks what a stream UAC sends: the Via's
// transport and the Contact's transport parameter, on tcp and tls.
func TestStreamMessagesOnTheWire(t *testing.T) {
	for _, kind := range []transport.Kind{transport.TCP, transport.TLS} {
		ts := newTestSource(t, UACConfig{Transport: kind, TLS: &tls.Config{}})
		ts.startCall()
		inv := ts.take()[0]
		via := header(t, inv, "Via")
		if !strings.HasPrefix(via, "SIP/2.0/"+kind.ViaToken()+" 127.0.0.1:40000;branch=") {
			t.Errorf("%v: Via %q", kind, via)
		}
		if ct := header(t, inv, "Contact"); ct != "<sip:load@127.0.0.1:40000;transport="+kind.String()+">" {
			t.Errorf("%v: Contact %q", kind, ct)
		}
		if !ts.retrans {
			continue
		}
		t.Errorf("%v: retransmissions on", kind)
	}
}

// TestUASClosesOnBadFraming sends the stream UAS bytes that cannot be
// framed (no Content-Length) and expects it to close the connection, after
// answering a well-framed request before them and skipping keepalives.
func TestUASClosesOnBadFraming(t *testing.T) {
	s := startUAS(t, UASConfig{Transport: transport.TCP})
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := "OPTIONS sip:uas@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK1\r\n" +
		"From: <sip:a@b>;tag=1\r\nTo: <sip:uas@127.0.0.1>\r\nCall-ID: frame-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	garbage := "GARBAGE / SIP/2.0\r\nX: y\r\n\r\n"
	if _, err := c.Write([]byte("\r\n\r\n" + opts + "\r\n" + garbage)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading until the UAS closes: %v (got %q)", err, got)
	}
	if !strings.HasPrefix(string(got), "SIP/2.0 200 OK\r\n") || strings.Count(string(got), "SIP/2.0 ") != 1 {
		t.Fatalf("want one 200 to the OPTIONS, then the close; got %q", got)
	}
	var sc UASCounts
	testenv.WaitFor(t, "the framing error to be counted", 10*time.Second, func() bool { s.Counts(&sc); return sc.FramingErrors == 1 })
	if sc.Options != 1 || sc.Closed != 1 {
		t.Fatalf("uas counted OPTIONS %d, closed connections %d", sc.Options, sc.Closed)
	}
}

// TestSharedConnectionReconnects closes the UAS's end of the UAC's shared
// connections between two runs: the UAC notices, reopens them for the
// next calls, counts the reconnects, and the calls complete.
func TestSharedConnectionReconnects(t *testing.T) {
	s, cfg := streamPair(t, transport.TCP, ConnShared)
	u := startUAC(t, cfg)
	for round := 1; round <= 2; round++ {
		r := runFor(t, u, RunOptions{Rate: 1000, Total: 100})
		if c := &r.Counts; c.Completed != 100 || c.Failed != 0 {
			t.Fatalf("round %d: completed %d failed %d (%v)", round, c.Completed, c.Failed, c.FailedBy())
		}
		s.stream.mu.Lock()
		for c := range s.stream.live {
			c.Close()
		}
		s.stream.mu.Unlock()
		var c Counts
		testenv.WaitFor(t, "the UAC to see its connections dropped", 10*time.Second, func() bool {
			u.Counts(&c)
			return c.ConnsDropped == uint64(2*round)
		})
	}
	var c Counts
	u.Counts(&c)
	if c.Reconnects != 2 || c.ConnsOpened != 4 || c.ConnsFailed != 0 {
		t.Fatalf("reconnects %d (want 2), opened %d (want 4), failed %d", c.Reconnects, c.ConnsOpened, c.ConnsFailed)
	}
}

// TestCallsFailWhenTheirConnectionDrops holds every INVITE at the UAS
// (its 200 delayed) and closes the connections: the calls waiting on them
// fail at once as "connection lost", not after the transaction timeout.
func TestCallsFailWhenTheirConnectionDrops(t *testing.T) {
	for _, mode := range []Connections{ConnShared, ConnPerCall} {
		t.Run(mode.String(), func(t *testing.T) {
			s := startUAS(t, UASConfig{Transport: transport.TCP, Delay: time.Minute})
			u := startUAC(t, UACConfig{Target: s.Addr(), Transport: transport.TCP, Connections: mode, Sources: 2,
				Timeout: time.Minute})
			done := make(chan *Result, 1)
			go func() {
				r, err := u.Run(context.Background(), RunOptions{Rate: 1000, Total: 20, Drain: time.Minute})
				if err != nil {
					r = &Result{}
				}
				done <- r
			}()
			var sc UASCounts
			testenv.WaitFor(t, "the UAS to hold 20 INVITEs", 10*time.Second, func() bool { s.Counts(&sc); return sc.Invite == 20 })
			s.stream.mu.Lock()
			for c := range s.stream.live {
				c.Close()
			}
			s.stream.mu.Unlock()
			var r *Result
			select {
			case r = <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("the calls did not end when their connections dropped")
			}
			if c := &r.Counts; c.Failed != 20 || c.ConnLost != 20 || r.Report(0).FailedBy["connection lost"] != 20 {
				t.Fatalf("failed %d, by reason %v", c.Failed, c.FailedBy())
			}
		})
	}
}

// TestFrameReader feeds the framer a stream in awkward pieces: messages
// split anywhere, keepalives between them, one longer than the starting
// buffer; then one without a Content-Length.
func TestFrameReader(t *testing.T) {
	long := "MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 9000\r\n\r\n" + strings.Repeat("x", 9000)
	short := "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n"
	stream := "\r\n" + short + "\r\n\r\n" + long + short + "\r\n"
	for _, piece := range []int{1, 7, 100, 5000, len(stream)} {
		r := &chunkReader{b: []byte(stream), n: piece}
		f := newFrameReader(r, 64)
		var got []string
		for {
			err := f.fill()
			for {
				m, ferr := f.frame()
				if ferr != nil {
					t.Fatalf("pieces of %d: %v", piece, ferr)
				}
				if m == nil {
					break
				}
				got = append(got, string(m))
			}
			if err != nil {
				break
			}
		}
		if len(got) != 3 || got[0] != short || got[1] != long || got[2] != short {
			t.Fatalf("pieces of %d: framed %d messages", piece, len(got))
		}
	}
	f := newFrameReader(&chunkReader{b: []byte("INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\n"), n: 1000}, 64)
	f.fill()
	if _, err := f.frame(); err != parser.ErrNoContentLength {
		t.Fatalf("no Content-Length: %v", err)
	}
}

// chunkReader returns b at most n bytes per read.
type chunkReader struct {
	b []byte
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b[:min(r.n, len(r.b))])
	r.b = r.b[n:]
	return n, nil
}

// TestTLSSessionResumption gives the per-call UAC a session cache: later
// calls' connections resume a session instead of a full handshake, and
// are counted.
func TestTLSSessionResumption(t *testing.T) {
	_, cfg := streamPair(t, transport.TLS, ConnPerCall)
	cfg.TLS.ClientSessionCache = tls.NewLRUClientSessionCache(0)
	u := startUAC(t, cfg)
	r := runFor(t, u, RunOptions{Rate: 200, Total: 40})
	if c := &r.Counts; c.Completed != 40 || c.Resumed < 20 || c.Resumed > 39 || r.Report(0).TLSResumed != c.Resumed {
		t.Fatalf("completed %d, resumed %d of 40 connections (want most but the first)", c.Completed, c.Resumed)
	}
}

// TestUASForgetsDelayedInvitesOfClosedConnections closes a connection
// whose INVITE waits for its delayed 200: the INVITE leaves the table
// CANCELs are matched in.
func TestUASForgetsDelayedInvitesOfClosedConnections(t *testing.T) {
	s := startUAS(t, UASConfig{Transport: transport.TCP, Delay: time.Minute})
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(invite)); err != nil {
		t.Fatal(err)
	}
	pending := func() (n int) {
		for i := range s.cancels.shards {
			sh := &s.cancels.shards[i]
			sh.mu.Lock()
			n += len(sh.m)
			sh.mu.Unlock()
		}
		return n
	}
	testenv.WaitFor(t, "the INVITE to wait", 10*time.Second, func() bool { return pending() == 1 })
	c.Close()
	testenv.WaitFor(t, "the INVITE to be forgotten", 10*time.Second, func() bool { return pending() == 0 })
}

// TestPerCallConnectFailures aims per-call connections at a port where
// nothing listens: every call fails as "connect failed", counted, and the
// source is not held up meanwhile.
func TestPerCallConnectFailures(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := l.Addr().(*net.TCPAddr).AddrPort()
	l.Close()
	u := startUAC(t, UACConfig{Target: target, Transport: transport.TCP, Connections: ConnPerCall, Sources: 1})
	r := runFor(t, u, RunOptions{Rate: 500, Total: 50})
	if c := &r.Counts; c.Failed != 50 || c.ConnectFailed != 50 || c.ConnsFailed != 50 || c.ConnsOpened != 0 ||
		r.Report(0).FailedBy["connect failed"] != 50 {
		t.Fatalf("failed %d (%v), connections failed %d opened %d", c.Failed, c.FailedBy(), c.ConnsFailed, c.ConnsOpened)
	}
}

// TestPerCallOpeningAbandoned runs tls calls against a listener that never
// answers a handshake: the calls wait in their opening, end unfinished when
// the run gives up on them, and Close does not wait for the openings'
// minute-long timeout.
func TestPerCallOpeningAbandoned(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close() // connections complete in its backlog; nobody speaks TLS
	u, err := NewUAC(UACConfig{Target: l.Addr().(*net.TCPAddr).AddrPort(), Transport: transport.TLS, Connections: ConnPerCall,
		Sources: 1, TLS: &tls.Config{InsecureSkipVerify: true}, DialTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	r := runFor(t, u, RunOptions{Rate: 100, Total: 5, Drain: 200 * time.Millisecond})
	if c := &r.Counts; c.Unfinished != 5 || c.ConnsOpened != 0 {
		t.Fatalf("unfinished %d (want 5), failed %v, opened %d", c.Unfinished, c.FailedBy(), c.ConnsOpened)
	}
	closed := make(chan struct{})
	go func() { u.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close waited for the openings in progress")
	}
}
