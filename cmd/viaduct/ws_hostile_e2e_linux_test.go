package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/bench/load"
	"github.com/viaduct-sip/viaduct/transport"
)

// wsHostileConfig is the Viaduct of TestBinaryHostileWebSocketClients: a
// ws: listener admitting the load generator's origin, limits lowered so
// that each hostile client meets its limit within seconds.
const wsHostileConfig = `workers: 2
upstreams: ["%s"]
websocket:
  origins: ["https://viaduct-load.invalid"]
streams:
  handshake_timeout: 1s
  accept_rate: 50
  accept_burst: 100
`

// Issue #16: "Hostile clients: a bad Origin, a wrong subprotocol, an
// upgrade that never completes, a 10 MB frame, a masked-frame violation, a
// flood of upgrades: each is refused or closed, counted, and does not
// disturb the browser's calls." viaduct-load's UAC places calls over a
// WebSocket (two connections, as two browser tabs) through the binary to a
// UAS while hostile clients on other source addresses do each of these;
// every one is refused or closed and counted under its reason, and no call
// of the UAC fails.
func TestBinaryHostileWebSocketClients(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	uas := newUAS(t)
	wsAddr := freeTCPPort(t)
	v := startStreamsViaduct(t, fmt.Sprintf(wsHostileConfig, uas.Addr()), "ws:"+wsAddr.String())
	uac, err := load.NewUAC(load.UACConfig{Target: wsAddr, Transport: transport.WS, Sources: 2, CallHold: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uac.Close() })
	const rate, sending = 100, 8 * time.Second
	ran := make(chan *load.Result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		r, err := uac.Run(ctx, load.RunOptions{Rate: rate, Duration: sending, Drain: 5 * time.Second})
		if err != nil {
			t.Errorf("ws uac: %v", err)
		}
		ran <- r
	}()
	waitUACConnections(t, uac, 2)

	req := func(origin, protocol string) string {
		return fmt.Sprintf("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: %s\r\nOrigin: %s\r\n\r\n", protocol, origin)
	}
	good := req("https://viaduct-load.invalid", "sip")
	for i, h := range []struct {
		name, request string
		status        int
		after         []byte // sent once upgraded
	}{
		{"bad origin", req("https://evil.example", "sip"), http.StatusForbidden, nil},
		{"wrong subprotocol", req("https://viaduct-load.invalid", "chat"), http.StatusBadRequest, nil},
		{"10 MB frame", good, http.StatusSwitchingProtocols, []byte{0x82, 0xFF, 0, 0, 0, 0, 0, 0xA0, 0, 0, 1, 2, 3, 4}},
		{"unmasked frame", good, http.StatusSwitchingProtocols, []byte("\x81\x05hello")},
	} {
		from := netip.AddrFrom4([4]byte{127, 0, 0, byte(20 + i)})
		runHostile(t, h.name, func() { hostileUpgrade(t, from, wsAddr, h.request, h.status, h.after) })
	}
	runHostile(t, "upgrade never completes", func() {
		c, err := dialFrom(netip.MustParseAddr("127.0.0.30"), wsAddr, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n"))
		if closed, after := closedWithin(c, 5*time.Second); !closed {
			t.Errorf("a half upgrade request still open after %v (handshake_timeout 1s)", after)
		}
	})
	upgraded := hostileUpgradeFlood(t, wsAddr)
	t.Logf("upgrade flood: %d of 400 upgraded", upgraded)

	r := <-ran
	if r != nil {
		rep := r.Report(0)
		t.Logf("ws uac: %d started, %d completed, %d failed %v", rep.Started, rep.Completed, rep.Failed, rep.FailedBy)
		if rep.Failed != 0 || rep.Completed != rep.Started || rep.Started < uint64(rate*sending.Seconds()*0.9) {
			t.Errorf("ws uac: %d started, %d completed, %d failed %v; want every call of %v at %d/s completed",
				rep.Started, rep.Completed, rep.Failed, rep.FailedBy, sending, rate)
		}
	}
	expectCounted(t, v, 2, "viaduct_websocket_upgrades_total", `result="refused"`, `transport="ws"`)
	expectCounted(t, v, 2, "viaduct_stream_closed_total", `reason="upgrade"`, `transport="ws"`)
	expectCounted(t, v, 1, "viaduct_stream_closed_total", `reason="too_large"`, `transport="ws"`)
	expectCounted(t, v, 1, "viaduct_stream_closed_total", `reason="bad_framing"`, `transport="ws"`)
	expectCounted(t, v, 1, "viaduct_stream_closed_total", `reason="handshake"`, `transport="ws"`)
	expectCounted(t, v, 1, "viaduct_stream_limit_hits_total", `limit="accept_rate"`, `transport="ws"`)
	if upgraded == 0 || upgraded == 400 {
		t.Errorf("the flood's upgrades: %d of 400 went through, want some (accept_burst 100) and not all", upgraded)
	}
}

// hostileUpgrade sends request from from, expects status, and once
// upgraded sends after and expects Viaduct's close frame and the end of
// the connection.
func hostileUpgrade(t *testing.T, from netip.Addr, to netip.AddrPort, request string, status int, after []byte) {
	c, err := dialFrom(from, to, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte(request))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != status {
		t.Errorf("upgrade from %v: %v %v, want %d", from, resp, err, status)
		return
	}
	if after != nil {
		c.Write(after)
		if h, err := br.Peek(2); err != nil || h[0] != 0x88 {
			t.Errorf("after %q: %x %v, want a close frame", after, h, err)
		}
	}
	if closed, d := closedWithin(&bufConn{Conn: c, r: br}, 5*time.Second); !closed {
		t.Errorf("connection from %v still open after %v", from, d)
	}
}

// bufConn reads through r what a bufio.Reader has begun to read of Conn.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// hostileUpgradeFlood opens 400 connections from 8 addresses at once,
// each sending an upgrade; the accept rate refuses what is over its burst.
// It returns how many were upgraded.
func hostileUpgradeFlood(t *testing.T, to netip.AddrPort) int {
	var upgraded atomic.Int64
	var wg sync.WaitGroup
	for i := range 400 {
		from := netip.AddrFrom4([4]byte{127, 0, 1, byte(1 + i%8)})
		wg.Go(func() {
			c, err := dialFrom(from, to, 0)
			if err != nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"+
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: sip\r\n\r\n")
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil && strings.HasPrefix(resp.Status, "101") {
				upgraded.Add(1)
			}
		})
	}
	wg.Wait()
	return int(upgraded.Load())
}
