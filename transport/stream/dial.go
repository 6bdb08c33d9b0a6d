package stream

import (
	"fmt"
	"log/slog"
	"net"
	"time"
)

// dialFor makes a new outbound connection to k with b (n messages) queued
// on it, and
// dials it in the background, later sends queuing behind b until it is
// connected; it returns nil, or the connection another send dialled
// meanwhile (b not sent), or an error while k's reconnect backoff runs.
func (s *Server) dialFor(k connKey, b []byte, n int) (*conn, error) {
	w := s.pick(k.listener)
	if w == nil {
		return nil, fmt.Errorf("%s: send to %s: %w", s.kind, k.addr, errNotServing)
	}
	t := s.table
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.byPeer[k]; c != nil { // another send dialled it meanwhile
		return c, nil
	}
	if t.closed {
		return nil, fmt.Errorf("%s: send to %s: %w", s.kind, k.addr, errNotServing)
	}
	if b, ok := t.backoff[k]; ok && time.Now().Before(b.next) {
		s.count.limits[LimitReconnectBackoff].Add(1)
		return nil, fmt.Errorf("%s: send to %s: %w (%v)", s.kind, k.addr, errBackingOff, b.delay)
	}
	if len(b) > s.cfg.WriteQueue {
		return nil, fmt.Errorf("%s: send to %s: %w", s.kind, k.addr, errWriteQueue)
	}
	c := s.newConn(k.listener, k.addr, true)
	c.w = w
	c.early = append([]byte(nil), b...)
	t.insert(c)
	s.countOpen(c, 1)
	s.count.msgsOut.Add(uint64(n))
	s.count.bytesOut.Add(uint64(len(b)))
	s.wg.Add(1)
	go s.dial(c)
	return nil, nil
}

// dial connects c (TCP connect, then the TLS handshake), writes what was
// sent meanwhile and reads it as any connection; or closes it and starts
// (or doubles) the peer's backoff.
func (s *Server) dial(c *conn) {
	k := connKey{c.listener, c.peer}
	if err := s.connect(c); err != nil {
		reason := ClosedDialFailed
		if c.tls != nil {
			reason = ClosedHandshake
		}
		now := time.Now()
		level := slog.LevelDebug
		if first := s.table.dialFailed(k, now, s.cfg.ReconnectBackoff, s.cfg.MaxReconnectBackoff); first && s.warnings.take(now) {
			level = slog.LevelWarn // a new outage: an upstream down, a certificate refused
		}
		s.log.Log(s.ctx, level, "connection failed", "transport", s.kind, "peer", c.peer, "reason", reason, "err", err,
			"retry_after", s.cfg.ReconnectBackoff)
		c.close(reason)
		c.release()
		s.wg.Done()
		return
	}
	s.table.dialed(k)
	s.count.dialed.Add(1)
	if err := c.establish(); err != nil {
		c.close(ClosedWriteError)
	}
	c.start()
	go c.readLoop() // a fresh stack: the handshake's grew this one
}

// connect dials c's peer from its listener's address (port chosen by the
// kernel) and runs the TLS handshake.
func (s *Server) connect(c *conn) error {
	d := net.Dialer{Timeout: s.cfg.DialTimeout}
	if local := s.addrs[c.listener].Addr(); !local.IsUnspecified() && local.Is4() == c.peer.Addr().Is4() {
		d.LocalAddr = &net.TCPAddr{IP: local.AsSlice(), Zone: local.Zone()}
	}
	nc, err := d.DialContext(s.ctx, "tcp", c.peer.String())
	if err != nil {
		return err
	}
	if err := c.attach(nc.(*net.TCPConn)); err != nil {
		return err
	}
	return c.handshake()
}
