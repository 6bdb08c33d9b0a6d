package stream

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/transport"
)

// wsKey is the Sec-WebSocket-Key of every test upgrade (RFC 6455's example).
const wsKey = "dGhlIHNhbXBsZSBub25jZQ=="

// upgradeRequest is a browser's upgrade request for path with origin and
// the subprotocols offered ("" leaves the header out).
func upgradeRequest(path, origin, protocols string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n", path)
	fmt.Fprintf(&b, "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n", wsKey)
	fmt.Fprintf(&b, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n")
	if origin != "" {
		fmt.Fprintf(&b, "Origin: %s\r\n", origin)
	}
	if protocols != "" {
		fmt.Fprintf(&b, "Sec-WebSocket-Protocol: %s\r\n", protocols)
	}
	b.WriteString("User-Agent: test\r\n\r\n")
	return b.String()
}

// wsClient is a WebSocket client over a TCP or TLS connection, with its
// reader.
type wsClient struct {
	c  net.Conn
	br *bufio.Reader
}

// wsDial connects to s's first listener and upgrades with the request req;
// it returns the client and the response's status code and headers.
func wsDial(t *testing.T, s *Server, req string) (*wsClient, *http.Response) {
	t.Helper()
	return wsHandshake(t, dialFrom(t, "", s.Addrs()[0]), req)
}

// wsHandshake sends the upgrade request req on c and reads the response.
func wsHandshake(t *testing.T, c net.Conn, req string) (*wsClient, *http.Response) {
	t.Helper()
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	wc := &wsClient{c: c, br: bufio.NewReader(c)}
	c.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(wc.br, nil)
	if err != nil {
		t.Fatalf("reading the upgrade's response: %v", err)
	}
	return wc, resp
}

// wsUpgrade upgrades a connection to s as a browser does and checks the 101.
func wsUpgrade(t *testing.T, s *Server) *wsClient {
	t.Helper()
	wc, resp := wsDial(t, s, upgradeRequest("/", "https://app.example.com", "sip"))
	sum := sha1.Sum([]byte(wsKey + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	switch {
	case resp.StatusCode != http.StatusSwitchingProtocols:
		t.Fatalf("upgrade answered %s, want 101", resp.Status)
	case resp.Header.Get("Sec-WebSocket-Protocol") != "sip":
		t.Fatalf("Sec-WebSocket-Protocol %q, want sip", resp.Header.Get("Sec-WebSocket-Protocol"))
	case resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]):
		t.Fatalf("Sec-WebSocket-Accept %q is not the key's", resp.Header.Get("Sec-WebSocket-Accept"))
	case resp.Header.Get("Sec-WebSocket-Extensions") != "":
		t.Fatalf("an extension was accepted: %q", resp.Header.Get("Sec-WebSocket-Extensions"))
	}
	return wc
}

// clientFrame returns a masked client frame (RFC 6455 5.2).
func clientFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	f := []byte{b0}
	switch n := len(payload); {
	case n <= 125:
		f = append(f, 0x80|byte(n))
	case n <= 0xFFFF:
		f = binary.BigEndian.AppendUint16(append(f, 0x80|126), uint16(n))
	default:
		f = binary.BigEndian.AppendUint64(append(f, 0x80|127), uint64(n))
	}
	mask := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	f = append(f, mask[:]...)
	for i, c := range payload {
		f = append(f, c^mask[i%4])
	}
	return f
}

// send writes raw bytes.
func (wc *wsClient) send(t *testing.T, b []byte) {
	t.Helper()
	if _, err := wc.c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// readFrame reads one server frame: it must be unmasked and final.
func (wc *wsClient) readFrame(t *testing.T) (op byte, payload []byte) {
	t.Helper()
	wc.c.SetReadDeadline(time.Now().Add(wait))
	var h [2]byte
	if _, err := io.ReadFull(wc.br, h[:]); err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	if h[0]&0x80 == 0 || h[1]&0x80 != 0 {
		t.Fatalf("server frame header %x: want FIN set and no mask", h)
	}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var l [2]byte
		io.ReadFull(wc.br, l[:])
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		io.ReadFull(wc.br, l[:])
		n = binary.BigEndian.Uint64(l[:])
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(wc.br, payload); err != nil {
		t.Fatalf("reading a %d-byte payload: %v", n, err)
	}
	return h[0] & 0x0F, payload
}

// expectEnd reads until the server closes the connection.
func (wc *wsClient) expectEnd(t *testing.T) {
	t.Helper()
	wc.c.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.Copy(io.Discard, wc.br); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("waiting for the close: %v", err)
	}
}

func wsConfig() ServerConfig {
	return ServerConfig{WebSocket: WebSocketConfig{Origins: []string{"https://app.example.com"}, Paths: []string{"/"}}}
}

// A SIP message in a masked frame reaches the handler without its framing,
// the answer comes back in an unmasked frame of the client's opcode, the
// flow names the connection, and messages split across reads or across
// fragments arrive whole.
func TestWebSocketCarriesSIP(t *testing.T) {
	rec := newRecorder(true)
	s := serve(t, transport.WS, wsConfig(), testLayout(), rec)
	wc := wsUpgrade(t, s)
	wc.send(t, clientFrame(true, opText, sipMsg(1)))
	msgs, srcs := rec.waitMsgs(t, 1)
	if !bytes.Equal(msgs[0], sipMsg(1)) || srcs[0].Kind != transport.WS || srcs[0].Flow == 0 {
		t.Fatalf("handler got %q from %+v", msgs[0], srcs[0])
	}
	if op, p := wc.readFrame(t); op != opText || !bytes.Equal(p, sipMsg(1)) {
		t.Fatalf("answer: opcode %d, %q", op, p)
	}

	// One frame in two writes, then a message in two fragments with a
	// ping between them, in binary.
	f := clientFrame(true, opText, sipMsg(2))
	wc.send(t, f[:7])
	time.Sleep(20 * time.Millisecond)
	wc.send(t, f[7:])
	m3 := sipMsg(3)
	wc.send(t, append(append(clientFrame(false, opBinary, m3[:10]), clientFrame(true, opPing, []byte("hi"))...),
		clientFrame(true, opContinuation, m3[10:])...))
	msgs, _ = rec.waitMsgs(t, 3)
	if !bytes.Equal(msgs[1], sipMsg(2)) || !bytes.Equal(msgs[2], m3) {
		t.Fatalf("handler got %q and %q", msgs[1], msgs[2])
	}
	want := []struct {
		op byte
		p  []byte
	}{{opText, sipMsg(2)}, {opPong, []byte("hi")}, {opBinary, m3}}
	for _, w := range want {
		if op, p := wc.readFrame(t); op != w.op || !bytes.Equal(p, w.p) {
			t.Fatalf("got opcode %d %q, want %d %q", op, p, w.op, w.p)
		}
	}

	// A send from elsewhere to the flow goes in a frame too.
	if err := s.Send([]byte("NOTIFY"), srcs[0]); err != nil {
		t.Fatal(err)
	}
	if op, p := wc.readFrame(t); op != opBinary || string(p) != "NOTIFY" {
		t.Fatalf("send to the flow: opcode %d %q", op, p)
	}

	// The client's close is answered with its code, and the connection ends.
	wc.send(t, clientFrame(true, opClose, []byte{0x03, 0xE8}))
	if op, p := wc.readFrame(t); op != opClose || !bytes.Equal(p, []byte{0x03, 0xE8}) {
		t.Fatalf("close answered with opcode %d %x", op, p)
	}
	wc.expectEnd(t)
	waitStat(t, s, "closed by peer", func(st Stats) bool { return st.Closed[ClosedByPeer] == 1 && st.WSUpgrades == 1 })

	// A browser cannot be dialled: with its connection gone, a send to
	// its address fails at once.
	err := s.Send([]byte("x"), transport.Peer{Addr: srcs[0].Addr, Listener: 0})
	if !errors.Is(err, transport.ErrFlowGone) {
		t.Fatalf("send to a closed browser's address: %v, want ErrFlowGone", err)
	}
}

// waitStat waits until cond holds for s's counters.
func waitStat(t *testing.T, s *Server, what string, cond func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond(s.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: counters %+v", what, s.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An upgrade that the allow-lists or RFC 7118 refuse gets its HTTP error
// and the connection is closed and counted; so is one that never ends.
func TestWebSocketUpgradeRefused(t *testing.T) {
	cfg := wsConfig()
	cfg.HandshakeTimeout = time.Second // long enough for a loaded machine to send a whole request
	s := serve(t, transport.WS, cfg, testLayout(), newRecorder(true))
	for i, c := range []struct {
		req    string
		status int
	}{
		{upgradeRequest("/", "https://evil.example.com", "sip"), http.StatusForbidden},
		{upgradeRequest("/other", "https://app.example.com", "sip"), http.StatusNotFound},
		{upgradeRequest("/", "https://app.example.com", "chat, superchat"), http.StatusBadRequest},
		{upgradeRequest("/", "https://app.example.com", ""), http.StatusBadRequest},
		{strings.Replace(upgradeRequest("/", "", "sip"), "Version: 13", "Version: 8", 1), http.StatusUpgradeRequired},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusBadRequest},
		{"GET / HTTP/1.1\r\n" + strings.Repeat("X-Pad: 0123456789012345678901234567890123456789\r\n", 200), http.StatusRequestHeaderFieldsTooLarge},
	} {
		wc, resp := wsDial(t, s, c.req)
		if resp.StatusCode != c.status {
			t.Errorf("request %d: answered %s, want %d", i, resp.Status, c.status)
		}
		wc.expectEnd(t)
	}
	waitStat(t, s, "refusals", func(st Stats) bool { return st.WSRefused == 7 && st.Closed[ClosedUpgrade] == 7 })

	// A request without Origin is not a browser's: let through.
	wc, resp := wsDial(t, s, upgradeRequest("/", "", "sip"))
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("upgrade without Origin: %s", resp.Status)
	}
	wc.c.Close()

	// Half a request, then nothing: closed after HandshakeTimeout.
	slow := dialFrom(t, "", s.Addrs()[0])
	slow.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n"))
	expectClosed(t, slow)
	waitStat(t, s, "upgrade timeout", func(st Stats) bool { return st.Closed[ClosedHandshake] == 1 })
}

// Frames RFC 6455 forbids a client close the connection with 1002, a frame
// over the message size with 1009 before its payload is read, and the
// server's other connections go on.
func TestWebSocketBadFrames(t *testing.T) {
	rec := newRecorder(true)
	s := serve(t, transport.WS, wsConfig(), testLayout(), rec)
	good := wsUpgrade(t, s)
	unmasked := clientFrame(true, opText, []byte("x"))
	unmasked[1] &^= 0x80
	huge := []byte{0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0xA0, 0, 0, 1, 2, 3, 4} // a 10 MB frame's header
	for i, c := range []struct {
		frame  []byte
		code   uint16
		reason CloseReason
	}{
		{unmasked, closeProtocolError, ClosedBadFraming},
		{clientFrame(true, 0x3, []byte("x")), closeProtocolError, ClosedBadFraming},                                 // reserved opcode
		{clientFrame(false, opPing, []byte("x")), closeProtocolError, ClosedBadFraming},                             // fragmented control frame
		{clientFrame(true, opContinuation, []byte("x")), closeProtocolError, ClosedBadFraming},                      // nothing to continue
		{append([]byte{0xC1}, clientFrame(true, opText, []byte("x"))[1:]...), closeProtocolError, ClosedBadFraming}, // RSV1 without an extension
		{huge, closeTooBig, ClosedTooLarge},
	} {
		wc := wsUpgrade(t, s)
		wc.send(t, c.frame)
		op, p := wc.readFrame(t)
		if op != opClose || len(p) != 2 || binary.BigEndian.Uint16(p) != c.code {
			t.Errorf("frame %d: answered opcode %d %x, want close %d", i, op, p, c.code)
		}
		wc.expectEnd(t)
	}
	waitStat(t, s, "closes", func(st Stats) bool {
		return st.Closed[ClosedBadFraming] == 5 && st.Closed[ClosedTooLarge] == 1
	})
	good.send(t, clientFrame(true, opText, sipMsg(9)))
	if _, p := good.readFrame(t); !bytes.Equal(p, sipMsg(9)) {
		t.Fatalf("the good client got %q", p)
	}
}

// An idle WebSocket client is pinged every Keepalive; its pongs keep the
// connection open past the interval.
func TestWebSocketKeepalive(t *testing.T) {
	cfg := wsConfig()
	cfg.WebSocket.Keepalive = 100 * time.Millisecond
	rec := newRecorder(true)
	s := serve(t, transport.WS, cfg, testLayout(), rec)
	wc := wsUpgrade(t, s)
	wc.send(t, clientFrame(true, opText, sipMsg(1))) // past the first-message deadline
	wc.readFrame(t)
	for i := range 3 {
		if op, _ := wc.readFrame(t); op != opPing {
			t.Fatalf("frame %d while idle: opcode %d, want a ping", i, op)
		}
		wc.send(t, clientFrame(true, opPong, nil))
	}
	waitStat(t, s, "pings", func(st Stats) bool { return st.WSPings >= 3 })
	if st := s.Stats(); st.Closed != [NumCloseReasons]uint64{} {
		t.Fatalf("counters %+v", st)
	}
}

// WSS is the same over TLS: the handshake, then the upgrade, then frames;
// the flow's kind is WSS.
func TestSecureWebSocket(t *testing.T) {
	ca := newTestCA(t)
	cfg := wsConfig()
	cfg.CertFile, cfg.KeyFile, _ = ca.issue(t, "server", 100)
	rec := newRecorder(true)
	s := serve(t, transport.WSS, cfg, testLayout(), rec)
	tc, err := tlsDial(t, s, ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	wc, resp := wsHandshake(t, tc, upgradeRequest("/", "https://app.example.com", "sip"))
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade over TLS answered %s", resp.Status)
	}
	wc.send(t, clientFrame(true, opText, sipMsg(1)))
	if op, p := wc.readFrame(t); op != opText || !bytes.Equal(p, sipMsg(1)) {
		t.Fatalf("answer over WSS: opcode %d %q", op, p)
	}
	if _, srcs := rec.waitMsgs(t, 1); srcs[0].Kind != transport.WSS {
		t.Errorf("message from a %v flow, want wss", srcs[0].Kind)
	}
}

// FuzzWebSocketIngest: an upgrade and frames, cut anywhere, give the same
// outcome as in one read, and nothing over MaxMessage bytes reaches the
// handler.
func FuzzWebSocketIngest(f *testing.F) {
	up := []byte(upgradeRequest("/", "https://app.example.com", "sip"))
	f.Add(append(bytes.Clone(up), clientFrame(true, opText, sipMsg(1))...), uint64(7))
	f.Add(append(append(bytes.Clone(up), clientFrame(false, opBinary, []byte("INV"))...), clientFrame(true, opContinuation, []byte("ITE"))...), uint64(3))
	f.Add(append(append(bytes.Clone(up), clientFrame(true, opPing, []byte("p"))...), clientFrame(true, opClose, []byte{3, 232})...), uint64(11))
	f.Add(append(bytes.Clone(up), 0x81, 0xFF, 0, 0, 0, 0, 0, 0xA0, 0, 0, 1, 2, 3, 4), uint64(2))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), uint64(1))
	s := harnessServerOf(f, transport.WS)
	f.Fuzz(func(t *testing.T, data []byte, cuts uint64) {
		if len(data) > 16<<10 {
			return
		}
		for _, msg := range oneAndCut(t, s, data, cuts).msgs {
			if len(msg) > s.layout.MaxMessage {
				t.Fatalf("handed %d bytes, max message %d", len(msg), s.layout.MaxMessage)
			}
		}
	})
}

func TestParseProxyHeader(t *testing.T) {
	v2 := func(cmd, fam byte, addrs []byte) []byte {
		h := append(bytes.Clone(proxyV2Sig), 0x20|cmd, fam)
		h = binary.BigEndian.AppendUint16(h, uint16(len(addrs)))
		return append(h, addrs...)
	}
	v4 := []byte{203, 0, 113, 9, 10, 0, 0, 1, 0x1F, 0x90, 0x01, 0xBB}
	v6 := append(append(netip.MustParseAddr("2001:db8::9").AsSlice(), netip.MustParseAddr("2001:db8::1").AsSlice()...), 0x1F, 0x90, 0x01, 0xBB)
	for _, c := range []struct {
		in  []byte
		n   int
		src string
		err error
	}{
		{[]byte("PROXY TCP4 203.0.113.9 10.0.0.1 8080 443\r\nGET"), 42, "203.0.113.9:8080", nil},
		{[]byte("PROXY TCP6 2001:db8::9 2001:db8::1 8080 443\r\n"), 45, "[2001:db8::9]:8080", nil},
		{[]byte("PROXY UNKNOWN\r\n"), 15, "", nil},
		{[]byte("PROXY TCP4 203.0.113.9 10.0.0.1 8080"), 0, "", errProxyNeedMore},
		{[]byte("PROX"), 0, "", errProxyNeedMore},
		{[]byte("PROXY TCP4 2001:db8::9 10.0.0.1 8080 443\r\n"), 0, "", errProxyBad},
		{[]byte("PROXY TCP4 203.0.113.9 10.0.0.1 99999 443\r\n"), 0, "", errProxyBad},
		{[]byte("GET / HTTP/1.1\r\n"), 0, "", errProxyBad},
		{v2(1, 0x11, v4), 28, "203.0.113.9:8080", nil},
		{v2(1, 0x21, v6), 52, "[2001:db8::9]:8080", nil},
		{v2(0, 0x00, nil), 16, "", nil},
		{v2(1, 0x11, v4)[:20], 0, "", errProxyNeedMore},
		{proxyV2Sig[:5], 0, "", errProxyNeedMore},
		{v2(1, 0x11, v4[:4]), 0, "", errProxyBad},
	} {
		n, src, err := parseProxyHeader(c.in)
		got := ""
		if src.IsValid() {
			got = src.String()
		}
		if n != c.n || got != c.src || err != c.err {
			t.Errorf("parseProxyHeader(%q) = %d, %q, %v; want %d, %q, %v", c.in, n, got, err, c.n, c.src, c.err)
		}
	}
}

// Behind a trusted proxy the client's address comes from X-Forwarded-For
// (its last entry) or a PROXY protocol header, on ws: and wss:; from
// anyone else the socket's address stands, and a trusted proxy that was
// to send a PROXY header and did not is refused.
func TestWebSocketClientAddressFromProxy(t *testing.T) {
	ca := newTestCA(t)
	cert, key, _ := ca.issue(t, "server", 100)
	for _, c := range []struct {
		name    string
		kind    transport.Kind
		from    string   // client_address
		trusted []string // trusted_proxies
		prefix  []byte   // sent before the upgrade (before TLS on wss)
		xff     string
		want    string // the source address the handler sees ("" the socket's)
	}{
		{"xff", transport.WS, ClientAddressForwardedFor, []string{"127.0.0.0/8"}, nil, "203.0.113.9, 198.51.100.7", "198.51.100.7"},
		{"xff untrusted", transport.WS, ClientAddressForwardedFor, []string{"10.0.0.0/8"}, nil, "198.51.100.7", ""},
		{"proxy v1", transport.WS, ClientAddressProxyProtocol, []string{"127.0.0.1"}, []byte("PROXY TCP4 198.51.100.7 10.0.0.1 40000 80\r\n"), "", "198.51.100.7:40000"},
		{"proxy v1 wss", transport.WSS, ClientAddressProxyProtocol, []string{"127.0.0.1"}, []byte("PROXY TCP4 198.51.100.8 10.0.0.1 40001 443\r\n"), "", "198.51.100.8:40001"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := wsConfig()
			cfg.WebSocket.ClientAddress, cfg.WebSocket.TrustedProxies = c.from, c.trusted
			cfg.CertFile, cfg.KeyFile = cert, key
			rec := newRecorder(true)
			s := serve(t, c.kind, cfg, testLayout(), rec)
			var nc net.Conn = dialFrom(t, "", s.Addrs()[0])
			nc.Write(c.prefix)
			if c.kind == transport.WSS {
				tc := tls.Client(nc, &tls.Config{RootCAs: ca.pool, ServerName: "viaduct.test"})
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
				nc = tc
			}
			req := upgradeRequest("/", "https://app.example.com", "sip")
			if c.xff != "" {
				req = strings.Replace(req, "User-Agent", "X-Forwarded-For: "+c.xff+"\r\nUser-Agent", 1)
			}
			wc, resp := wsHandshake(t, nc, req)
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade: %s", resp.Status)
			}
			wc.send(t, clientFrame(true, opText, sipMsg(1)))
			_, srcs := rec.waitMsgs(t, 1)
			want := c.want
			if want == "" {
				want = nc.LocalAddr().String()
			}
			if got := srcs[0].Addr.String(); got != want && srcs[0].Addr.Addr().String() != want {
				t.Errorf("source %v, want %s", srcs[0].Addr, want)
			}
		})
	}
	t.Run("missing proxy header", func(t *testing.T) {
		cfg := wsConfig()
		cfg.WebSocket.ClientAddress, cfg.WebSocket.TrustedProxies = ClientAddressProxyProtocol, []string{"127.0.0.0/8"}
		s := serve(t, transport.WS, cfg, testLayout(), newRecorder(true))
		wc, resp := wsDial(t, s, upgradeRequest("/", "https://app.example.com", "sip"))
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("upgrade without the PROXY header from a trusted proxy: %s, want 400", resp.Status)
		}
		wc.expectEnd(t)
		waitStat(t, s, "refused", func(st Stats) bool { return st.Closed[ClosedUpgrade] == 1 })
	})
}

// FuzzParseProxyHeader: any bytes give a header within them or an error,
// and a header's prefix asks for more rather than failing.
func FuzzParseProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 203.0.113.9 10.0.0.1 8080 443\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::9 2001:db8::1 8080 443\r\n"))
	f.Add(append(bytes.Clone(proxyV2Sig), 0x21, 0x11, 0, 12, 203, 0, 113, 9, 10, 0, 0, 1, 0x1F, 0x90, 0x01, 0xBB))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, src, err := parseProxyHeader(b)
		if err != nil {
			if n != 0 || src.IsValid() {
				t.Fatalf("error %v with %d bytes and %v", err, n, src)
			}
			return
		}
		if n <= 0 || n > len(b) || n > maxProxyHeader {
			t.Fatalf("header of %d bytes in %d", n, len(b))
		}
		for k := range n {
			if _, _, err := parseProxyHeader(b[:k]); err != errProxyNeedMore {
				t.Fatalf("the header's first %d bytes: %v, want errProxyNeedMore", k, err)
			}
		}
	})
}

// A wss: listener reloads its certificate like a tls: one: the next
// handshake gets the new one, an upgraded connection keeps working.
func TestSecureWebSocketReload(t *testing.T) {
	ca := newTestCA(t)
	cfg := wsConfig()
	cfg.CertFile, cfg.KeyFile, _ = ca.issue(t, "server", 100)
	s := serve(t, transport.WSS, cfg, testLayout(), newRecorder(true))
	open := func() (*wsClient, int64) {
		tc, err := tlsDial(t, s, ca, nil)
		if err != nil {
			t.Fatal(err)
		}
		wc, resp := wsHandshake(t, tc, upgradeRequest("/", "https://app.example.com", "sip"))
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %s", resp.Status)
		}
		return wc, tc.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	old, sn := open()
	ca.issue(t, "server", 101)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	_, sn2 := open()
	if sn != 100 || sn2 != 101 {
		t.Errorf("serials %d then %d, want 100 then 101", sn, sn2)
	}
	old.send(t, clientFrame(true, opText, sipMsg(7)))
	if _, p := old.readFrame(t); !bytes.Equal(p, sipMsg(7)) {
		t.Errorf("the connection upgraded before the reload answered %q", p)
	}
}

// A message left half sent in fragments is bounded like a stream message
// split across reads: MessageTimeout closes the connection.
func TestWebSocketFragmentsTimeOut(t *testing.T) {
	cfg := wsConfig()
	cfg.MessageTimeout = 200 * time.Millisecond
	rec := newRecorder(true)
	s := serve(t, transport.WS, cfg, testLayout(), rec)
	wc := wsUpgrade(t, s)
	wc.send(t, clientFrame(true, opText, sipMsg(1))) // past the first message
	wc.readFrame(t)
	m := sipMsg(2)
	wc.send(t, clientFrame(false, opText, m[:10]))
	time.Sleep(50 * time.Millisecond)
	wc.send(t, clientFrame(false, opContinuation, m[10:20]))
	wc.expectEnd(t)
	waitStat(t, s, "message timeout", func(st Stats) bool { return st.Closed[ClosedMessageTimeout] == 1 })
}

// A trusted proxy carries many clients: max_connections_per_ip does not
// apply to it (max_connections does); to anyone else it does.
func TestWebSocketTrustedProxyPerIP(t *testing.T) {
	for _, trusted := range []string{"127.0.0.1", "10.0.0.0/8"} {
		cfg := wsConfig()
		cfg.MaxConnectionsPerIP = 2
		cfg.WebSocket.ClientAddress, cfg.WebSocket.TrustedProxies = ClientAddressForwardedFor, []string{trusted}
		s := serve(t, transport.WS, cfg, testLayout(), newRecorder(true))
		for range 4 { // a refused one may be reset before Dial returns
			if c, err := net.Dial("tcp", s.Addrs()[0].String()); err == nil {
				t.Cleanup(func() { c.Close() })
			}
		}
		want := uint64(2) // refused: the third and fourth
		if trusted == "127.0.0.1" {
			want = 0
		}
		waitStat(t, s, "accepts", func(st Stats) bool { return st.Accepted+st.LimitHits[LimitConnectionsPerIP] == 4 })
		if got := s.Stats().LimitHits[LimitConnectionsPerIP]; got != want {
			t.Errorf("trusted %s: %d connections refused by max_connections_per_ip, want %d", trusted, got, want)
		}
	}
}
