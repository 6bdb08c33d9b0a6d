package wslib

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	coder "github.com/coder/websocket"
	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
)

// Rejections built once: a hook that allocates its error per call would
// allocate on every refused handshake.
var (
	errBadPath   = ws.RejectConnectionError(ws.RejectionStatus(http.StatusNotFound), ws.RejectionReason("unknown path"))
	errBadOrigin = ws.RejectConnectionError(ws.RejectionStatus(http.StatusForbidden), ws.RejectionReason("origin not allowed"))
	errNoSIP     = ws.RejectConnectionError(ws.RejectionStatus(http.StatusBadRequest), ws.RejectionReason("sip subprotocol required"))
)

// handshakeChecker holds what Viaduct checks during a gobwas upgrade. A
// worker keeps one, resets it before each upgrade and binds its methods to
// a ws.Upgrader once, so that upgrades do not allocate closures.
type handshakeChecker struct {
	originOK bool
	sip      bool
}

func newHandshakeChecker() *handshakeChecker { return &handshakeChecker{} }

func (c *handshakeChecker) reset() { *c = handshakeChecker{} }

// upgrader binds c to a ws.Upgrader.
func (c *handshakeChecker) upgrader() ws.Upgrader {
	return ws.Upgrader{
		OnRequest:       c.onRequest,
		OnHeader:        c.onHeader,
		ProtocolCustom:  c.protocol,
		OnBeforeUpgrade: c.beforeUpgrade,
	}
}

func (c *handshakeChecker) onRequest(uri []byte) error {
	if string(uri) != wsPath {
		return errBadPath
	}
	return nil
}

// onHeader sees every header that is not part of the WebSocket handshake,
// with a canonical key.
func (c *handshakeChecker) onHeader(key, value []byte) error {
	if string(key) != "Origin" {
		return nil
	}
	if string(value) != allowedOrigin {
		return errBadOrigin
	}
	c.originOK = true
	return nil
}

// protocol picks sip from Sec-WebSocket-Protocol; it returns a constant so
// that no string is allocated (ws.Upgrader.Protocol copies the token).
func (c *handshakeChecker) protocol(v []byte) (string, bool) {
	ok := httphead.ScanTokens(v, func(t []byte) bool {
		c.sip = c.sip || string(t) == subprotocol
		return !c.sip
	})
	if c.sip {
		return subprotocol, ok
	}
	return "", ok
}

// beforeUpgrade refuses what the callbacks cannot refuse by themselves: a
// missing Origin or a missing sip subprotocol.
func (c *handshakeChecker) beforeUpgrade() (ws.HandshakeHeader, error) {
	switch {
	case !c.originOK:
		return nil, errBadOrigin
	case !c.sip:
		return nil, errNoSIP
	}
	return nil, nil
}

// memRW feeds a request from memory and collects the response.
type memRW struct {
	r bytes.Reader
	w bytes.Buffer
}

func (m *memRW) Read(p []byte) (int, error)  { return m.r.Read(p) }
func (m *memRW) Write(p []byte) (int, error) { return m.w.Write(p) }

func (m *memRW) reset(req []byte) {
	m.r.Reset(req)
	m.w.Reset()
}

// checkUpgradeResponse checks a 101 with sip and no extension accepted.
func checkUpgradeResponse(resp string) error {
	switch {
	case !strings.HasPrefix(resp, "HTTP/1.1 101 "):
		return fmt.Errorf("not a 101: %q", resp)
	case !strings.Contains(strings.ToLower(resp), "\r\nsec-websocket-protocol: sip\r\n"):
		return fmt.Errorf("sip not selected: %q", resp)
	case strings.Contains(strings.ToLower(resp), "sec-websocket-extensions"):
		return fmt.Errorf("an extension was accepted: %q", resp)
	}
	return nil
}

// BenchmarkUpgrade measures one server-side upgrade of Chrome's request
// with the path, Origin and sip checks, fed from memory (no socket). The
// gorilla and coder rows include http.ReadRequest, which they need; the
// net-http-ReadRequest row shows that part alone.
func BenchmarkUpgrade(b *testing.B) {
	b.Run("gobwas-Upgrader", benchGobwasUpgrade(false))
	b.Run("gobwas-Upgrader-Protocolfunc", benchGobwasUpgrade(true))
	b.Run("gorilla-Upgrader", benchHTTPUpgrade(gorillaAccept))
	b.Run("coder-Accept", benchHTTPUpgrade(coderAccept))
	b.Run("net-http-ReadRequest", benchHTTPUpgrade(nil))
}

// benchGobwasUpgrade runs ws.Upgrader.Upgrade on the raw request bytes;
// protocolFunc uses Upgrader.Protocol instead of ProtocolCustom.
func benchGobwasUpgrade(protocolFunc bool) func(*testing.B) {
	return func(b *testing.B) {
		c := newHandshakeChecker()
		u := c.upgrader()
		if protocolFunc {
			u.ProtocolCustom = nil
			u.Protocol = func(t []byte) bool {
				c.sip = c.sip || string(t) == subprotocol
				return string(t) == subprotocol
			}
		}
		rw := &memRW{}
		upgrade := func() error {
			c.reset()
			rw.reset(chromeRequestBytes)
			_, err := u.Upgrade(rw)
			return err
		}
		if err := upgrade(); err != nil {
			b.Fatal(err)
		}
		if err := checkUpgradeResponse(rw.w.String()); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if err := upgrade(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// httpUpgrade upgrades a parsed request through a hijackable writer.
type httpUpgrade func(w *hijackWriter, r *http.Request) error

func gorillaAccept(w *hijackWriter, r *http.Request) error {
	_, err := gorillaUpgrader.Upgrade(w, r, nil)
	return err
}

func coderAccept(w *hijackWriter, r *http.Request) error {
	c, err := coder.Accept(w, r, coderOptions)
	if err == nil && c.Subprotocol() != subprotocol {
		err = errors.New("no sip subprotocol")
	}
	return err
}

// httpHarness reuses one reader, writer and header map across upgrades, so
// that its own allocations stay out of the figures as far as possible.
type httpHarness struct {
	rd   bytes.Reader
	br   *bufio.Reader
	bw   *bufio.Writer
	conn *memConn
	w    *hijackWriter
}

func newHTTPHarness() *httpHarness {
	h := &httpHarness{conn: &memConn{}}
	h.br = bufio.NewReaderSize(&h.rd, 4096)
	h.bw = bufio.NewWriterSize(h.conn, 4096)
	h.w = &hijackWriter{header: http.Header{}, conn: h.conn, brw: bufio.NewReadWriter(h.br, h.bw)}
	return h
}

// run parses chromeRequest, checks the path and calls up (if any).
func (h *httpHarness) run(up httpUpgrade) error {
	h.rd.Reset(chromeRequestBytes)
	h.br.Reset(&h.rd)
	h.bw.Reset(h.conn)
	h.conn.out.Reset()
	clear(h.w.header)
	r, err := http.ReadRequest(h.br)
	if err != nil || up == nil {
		return err
	}
	if r.URL.Path != wsPath {
		return errors.New("unknown path")
	}
	return up(h.w, r)
}

func benchHTTPUpgrade(up httpUpgrade) func(*testing.B) {
	return func(b *testing.B) {
		h := newHTTPHarness()
		if err := h.run(up); err != nil {
			b.Fatal(err)
		}
		if up != nil {
			if err := checkUpgradeResponse(h.conn.out.String()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if err := h.run(up); err != nil {
				b.Fatal(err)
			}
		}
	}
}
