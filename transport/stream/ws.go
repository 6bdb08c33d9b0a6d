package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/http"
	"net/netip"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"
)

// SIP over WebSocket (RFC 7118): a WS or WSS connection is a TCP or TLS
// connection whose first bytes are an HTTP/1.1 upgrade (RFC 6455 4) with
// the sip subprotocol, and which then carries one SIP message per
// WebSocket message. The upgrade and the frames are read from the worker's
// buffer like stream messages: nothing blocks, and a frame split across
// reads waits in the connection's pending buffer.

// wsState is where a WebSocket connection is.
type wsState uint8

const (
	wsUpgrading wsState = iota // waiting for the HTTP upgrade request
	wsOpen                     // upgraded: frames
	wsProxied                  // waiting for a trusted proxy's PROXY protocol header
)

// maxUpgradeRequest bounds the HTTP upgrade request a client may send.
const maxUpgradeRequest = 8 << 10

// WebSocket opcodes (RFC 6455 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// WebSocket close codes (RFC 6455 7.4.1).
const (
	closeNormal        = 1000
	closeProtocolError = 1002
	closeTooBig        = 1009
)

// wsFrame is the header of a frame read from a client.
type wsFrame struct {
	fin     bool
	op      byte
	header  int // header length, mask key included
	payload int // payload length
	mask    [4]byte
}

// Frame header errors: what a client did wrong.
var (
	errWSNeedMore = errors.New("websocket: incomplete frame")
	errWSProtocol = errors.New("websocket: protocol error")
	errWSTooBig   = errors.New("websocket: frame too large")
)

// parseWSFrame reads the header of the client frame at the start of b:
// errWSNeedMore until the whole frame (header and payload) is there,
// errWSProtocol for what RFC 6455 5 forbids a client (an unmasked frame,
// reserved bits without an extension, an unknown opcode, a long or
// fragmented control frame), errWSTooBig for a payload over max.
func parseWSFrame(b []byte, max int) (wsFrame, error) {
	var f wsFrame
	if len(b) < 2 {
		return f, errWSNeedMore
	}
	f.fin, f.op = b[0]&0x80 != 0, b[0]&0x0F
	masked, n := b[1]&0x80 != 0, uint64(b[1]&0x7F)
	f.header = 2
	switch n {
	case 126:
		f.header = 4
	case 127:
		f.header = 10
	}
	if len(b) < f.header+4 {
		return f, errWSNeedMore
	}
	switch n {
	case 126:
		n = uint64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		n = binary.BigEndian.Uint64(b[2:])
	}
	switch {
	case b[0]&0x70 != 0, !masked, f.op > opBinary && f.op < opClose, f.op > opPong:
		return f, errWSProtocol
	case f.op >= opClose && (n > 125 || !f.fin):
		return f, errWSProtocol
	case n > uint64(max):
		return f, errWSTooBig
	}
	copy(f.mask[:], b[f.header:])
	f.header += 4
	f.payload = int(n)
	if len(b) < f.header+f.payload {
		return f, errWSNeedMore
	}
	return f, nil
}

// appendWSHeader appends the header of an unmasked, final server frame of
// opcode op and an n-byte payload.
func appendWSHeader(dst []byte, op byte, n int) []byte {
	dst = append(dst, 0x80|op)
	switch {
	case n <= 125:
		return append(dst, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(dst, 126), uint16(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, 127), uint64(n))
}

// wsHeaderLen is the length of the header appendWSHeader writes.
func wsHeaderLen(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xFFFF:
		return 4
	}
	return 10
}

// consumeWS is consume on a WebSocket connection: the upgrade request
// first, then frames; it returns the start of an incomplete request or
// frame (nil when there is none, or when an error closed the connection).
func (c *conn) consumeWS(b []byte) []byte {
	c.lastRead = time.Now()
	for c.wsState != wsOpen { // a trusted proxy's PROXY header, then the upgrade
		var n int
		if c.wsState == wsProxied {
			n = c.proxyHeader(b)
		} else {
			n = c.upgrade(b)
		}
		switch {
		case n == 0:
			return b
		case n < 0:
			return nil
		}
		b = b[n:]
	}
	max := c.wsMaxPayload()
	for len(b) > 0 {
		f, err := parseWSFrame(b, max)
		switch err {
		case errWSNeedMore:
			return b
		case errWSProtocol:
			c.wsFail(closeProtocolError, ClosedBadFraming)
			return nil
		case errWSTooBig:
			c.wsFail(closeTooBig, ClosedTooLarge)
			return nil
		}
		payload := b[f.header : f.header+f.payload]
		ws.Cipher(payload, f.mask, 0)
		c.wsFrame(&f, payload)
		if c.closed.Load() {
			return nil
		}
		b = b[f.header+f.payload:]
	}
	return nil
}

// proxyHeader reads the PROXY protocol header at the start of b and makes
// its address the client's. It returns the header's length; 0 while it is
// incomplete; -1 when it is malformed (the connection then refused).
func (c *conn) proxyHeader(b []byte) int {
	n, src, err := parseProxyHeader(b)
	switch {
	case err == errProxyNeedMore && len(b) < maxProxyHeader:
		return 0
	case err != nil:
		c.s.log.Debug("websocket: no PROXY protocol header from a trusted proxy", "peer", c.peer, "err", err)
		c.upgradeRefused([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
		return -1
	}
	c.clientFrom(src)
	c.wsState = wsUpgrading
	return n
}

// wsMaxPayload is the largest payload a frame may carry: a frame must fit
// the worker's read buffer whole, header included, as a stream message
// does.
func (c *conn) wsMaxPayload() int { return c.s.layout.MaxMessage + 1 - 14 }

// wsFrame acts on one unmasked frame: a data frame's message goes to the
// handler (assembled first when fragmented), a ping gets its pong, a close
// its close, and the connection ends.
func (c *conn) wsFrame(f *wsFrame, payload []byte) {
	switch f.op {
	case opPing:
		c.wsReply(opPong, payload)
	case opPong: // the answer to a keepalive: reading it was the point
	case opClose:
		code := payload[:min(len(payload), 2)] // echo the status code (RFC 6455 5.5.1)
		c.wsReply(opClose, code)
		c.wsEnd(ClosedByPeer)
	case opText, opBinary:
		if c.wsFrag != nil {
			c.wsFail(closeProtocolError, ClosedBadFraming) // a new message inside a fragmented one
			return
		}
		if bin := f.op == opBinary; bin != c.wsBinary.Load() {
			c.wsBinary.Store(bin)
		}
		if f.fin {
			c.deliver(payload)
			return
		}
		c.wsFrag = append(c.w.getBuf(len(payload)), payload...)
	case opContinuation:
		c.wsContinue(f, payload)
	}
}

// wsContinue adds a continuation frame to the fragmented message and
// delivers the message with its last fragment.
func (c *conn) wsContinue(f *wsFrame, payload []byte) {
	switch {
	case c.wsFrag == nil:
		c.wsFail(closeProtocolError, ClosedBadFraming)
		return
	case len(c.wsFrag)+len(payload) > c.s.layout.MaxMessage:
		c.wsFail(closeTooBig, ClosedTooLarge)
		return
	}
	c.wsFrag = c.wsAppend(c.wsFrag, payload)
	if f.fin {
		msg := c.wsFrag
		c.wsFrag = nil
		c.deliver(msg)
		c.w.putBuf(msg)
	}
}

// wsAppend appends payload to the fragmented message frag, moving it to a
// buffer of the next size class when it outgrows its own: a message being
// assembled holds a buffer sized to what came so far, as a stream
// message's start does.
func (c *conn) wsAppend(frag, payload []byte) []byte {
	if len(frag)+len(payload) <= cap(frag) {
		return append(frag, payload...)
	}
	grown := append(append(c.w.getBuf(len(frag)+len(payload)), frag...), payload...)
	c.w.putBuf(frag)
	return grown
}

// wsReply queues a control frame in the worker's batch of c's answers.
func (c *conn) wsReply(op byte, payload []byte) {
	w := c.w
	if len(w.replies)+2+len(payload) > cap(w.replies) {
		c.flushReplies()
	}
	w.replies = appendWSHeader(w.replies, op, len(payload))
	w.replies = append(w.replies, payload...)
}

// wsFail closes the connection for a client's protocol error: a close
// frame with code, then FIN and a drain, as for a stream framing error.
func (c *conn) wsFail(code uint16, reason CloseReason) {
	c.flushHeld() // the answers to the messages before, ahead of the close frame
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], code)
	c.wsReply(opClose, b[:])
	c.wsEnd(reason)
}

// wsEnd writes the answers so far and closes the connection: its sending
// side first, what the peer still sends drained.
func (c *conn) wsEnd(reason CloseReason) {
	c.flushHeld()
	c.flushReplies()
	c.linger = true
	c.closeHow(reason, unix.SHUT_WR)
}

// wsDataOp is the opcode of the frames c's messages go in: the one of the
// client's last data frame (text until it sent one), so that a client that
// speaks binary frames is answered in binary.
func (c *conn) wsDataOp() byte {
	if c.wsBinary.Load() {
		return opBinary
	}
	return opText
}

// upgrade reads the HTTP upgrade request at the start of b. It returns the
// bytes the request took once it is answered with 101; 0 while it is
// incomplete; -1 when it was refused (answered with an HTTP error, the
// connection closed).
func (c *conn) upgrade(b []byte) int {
	end := bytes.Index(b[:min(len(b), maxUpgradeRequest)], []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) >= maxUpgradeRequest {
			c.upgradeRefused([]byte("HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n"))
			return -1
		}
		return 0
	}
	n := end + 4
	var resp bytes.Buffer
	u := c.s.wsUpgrader(&c.wsCheck)
	c.wsCheck = wsCheck{}
	_, err := u.Upgrade(&upgradeIO{r: bytes.NewReader(b[:n]), w: &resp})
	if err != nil {
		c.s.log.Debug("websocket upgrade refused", "peer", c.peer, "err", err)
		c.upgradeRefused(resp.Bytes())
		return -1
	}
	if err := c.writeUnframed(resp.Bytes()); err != nil {
		return -1
	}
	if c.s.cfg.WebSocket.ClientAddress == ClientAddressForwardedFor && c.trustedProxy() {
		c.clientFrom(netip.AddrPortFrom(c.wsCheck.forwarded, 0))
	}
	c.wsState = wsOpen
	c.s.count.wsUpgrades.Add(1)
	c.phase = phaseFirst
	c.setDeadline(time.Now(), c.s.cfg.FirstMessageTimeout)
	if err := c.establish(); err != nil {
		c.close(ClosedWriteError)
	}
	return n
}

// upgradeRefused answers a refused upgrade with resp and closes the
// connection.
func (c *conn) upgradeRefused(resp []byte) {
	c.writeUnframed(resp)
	c.s.count.wsRefused.Add(1)
	c.linger = true
	c.closeHow(ClosedUpgrade, unix.SHUT_WR)
}

// upgradeIO is the request and the response of one upgrade, for
// ws.Upgrader.
type upgradeIO struct {
	r *bytes.Reader
	w *bytes.Buffer
}

func (u *upgradeIO) Read(p []byte) (int, error)  { return u.r.Read(p) }
func (u *upgradeIO) Write(p []byte) (int, error) { return u.w.Write(p) }

// wsCheck is what the upgrader's callbacks saw of one request.
type wsCheck struct {
	sip       bool       // the client offered the sip subprotocol
	forwarded netip.Addr // the last address of its X-Forwarded-For
}

// Refusals of an upgrade, with their HTTP status.
var (
	errWSOrigin = ws.RejectConnectionError(ws.RejectionStatus(http.StatusForbidden), ws.RejectionReason("origin not allowed"))
	errWSPath   = ws.RejectConnectionError(ws.RejectionStatus(http.StatusNotFound), ws.RejectionReason("path not served"))
	errWSNoSIP  = ws.RejectConnectionError(ws.RejectionStatus(http.StatusBadRequest), ws.RejectionReason("the sip subprotocol is required (RFC 7118)"))
)

// wsUpgrader returns the upgrader of one request, its findings in chk:
// the sip subprotocol required, the Origin and the path checked against
// the allow-lists, no extension accepted (permessage-deflate is declined).
func (s *Server) wsUpgrader(chk *wsCheck) ws.Upgrader {
	cfg := &s.cfg.WebSocket
	return ws.Upgrader{
		ReadBufferSize: maxUpgradeRequest,
		Protocol: func(p []byte) bool {
			if string(p) == "sip" {
				chk.sip = true
				return true
			}
			return false
		},
		OnRequest: func(uri []byte) error {
			if !cfg.PathAllowed(uri) {
				return errWSPath
			}
			return nil
		},
		OnHeader: func(key, value []byte) error {
			switch {
			case bytes.EqualFold(key, []byte("Origin")) && !cfg.OriginAllowed(value):
				return errWSOrigin
			case bytes.EqualFold(key, []byte("X-Forwarded-For")):
				chk.forwarded = lastForwarded(value)
			}
			return nil
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			if !chk.sip {
				return nil, errWSNoSIP
			}
			return nil, nil
		},
	}
}

// wsKeepalive is called when the read deadline of an idle WebSocket
// connection passed: it pings the client and reports true (the connection
// stays), unless the connection received nothing for the idle timeout.
func (c *conn) wsKeepalive() bool {
	ka := c.s.cfg.WebSocket.Keepalive
	if c.wsState != wsOpen || c.phase != phaseIdle || ka <= 0 {
		return false
	}
	now := time.Now()
	if idle := c.s.cfg.idleTimeout(false); idle > 0 && now.Sub(c.lastRead) >= idle {
		return false
	}
	var ping [2]byte
	if err := c.write(appendWSHeader(ping[:0], opPing, 0)); err != nil {
		return false
	}
	c.s.count.wsPings.Add(1)
	c.setDeadline(now, ka)
	return true
}
