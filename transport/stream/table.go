package stream

import (
	"net/netip"
	"sync"
	"time"
)

// connKey names the connections a send with Flow 0 may use: those of one
// listener with one peer address.
type connKey struct {
	listener int
	addr     netip.AddrPort
}

// table holds the open connections: by flow id, by peer for sends with
// Flow 0, the inbound count per source IP for the limits, and the dial
// backoff per peer.
type table struct {
	mu      sync.RWMutex
	byFlow  map[uint64]*conn
	byPeer  map[connKey]*conn
	perIP   map[netip.Addr]int
	inbound int
	backoff map[connKey]backoff
	closed  bool
}

// backoff is the state of a peer whose dial failed.
type backoff struct {
	next  time.Time     // no dial before then
	delay time.Duration // the last wait, doubled on the next failure
}

func newTable() *table {
	return &table{byFlow: make(map[uint64]*conn), byPeer: make(map[connKey]*conn),
		perIP: make(map[netip.Addr]int), backoff: make(map[connKey]backoff)}
}

// flow returns the open connection with flow id id, or nil.
func (t *table) flow(id uint64) *conn {
	t.mu.RLock()
	c := t.byFlow[id]
	t.mu.RUnlock()
	return c
}

// peer returns the open connection to k, or nil.
func (t *table) peer(k connKey) *conn {
	t.mu.RLock()
	c := t.byPeer[k]
	t.mu.RUnlock()
	return c
}

// admit registers the inbound connection c unless a limit refuses it,
// which it returns (ok false).
func (t *table) admit(c *conn, cfg *ServerConfig) (Limit, bool) {
	ip := c.peer.Addr()
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return LimitConnections, false
	case t.inbound >= cfg.MaxConnections:
		return LimitConnections, false
	case t.perIP[ip] >= cfg.MaxConnectionsPerIP && !cfg.WebSocket.trusts(ip): // a trusted proxy carries many clients
		return LimitConnectionsPerIP, false
	}
	t.inbound++
	t.perIP[ip]++
	t.insert(c)
	return 0, true
}

// insert registers c by flow and by peer (the newest connection to a peer
// is the one sends with Flow 0 use). t.mu is held.
func (t *table) insert(c *conn) {
	t.byFlow[c.id] = c
	t.byPeer[connKey{c.listener, c.peer}] = c
}

// remove unregisters c.
func (t *table) remove(c *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byFlow[c.id] != c {
		return
	}
	delete(t.byFlow, c.id)
	k := connKey{c.listener, c.peer}
	if t.byPeer[k] == c {
		delete(t.byPeer, k)
	}
	if !c.outbound {
		t.inbound--
		ip := c.peer.Addr()
		if t.perIP[ip] <= 1 {
			delete(t.perIP, ip)
		} else {
			t.perIP[ip]--
		}
	}
}

// all returns every open connection.
func (t *table) all() []*conn {
	t.mu.RLock()
	defer t.mu.RUnlock()
	cs := make([]*conn, 0, len(t.byFlow))
	for _, c := range t.byFlow {
		cs = append(cs, c)
	}
	return cs
}

// maxBackoffs bounds the peers whose failed dials the table remembers:
// every failed reopen towards a client adds one, and a peer is forgotten
// only when a dial to it succeeds.
const maxBackoffs = 1 << 16

// dialFailed doubles k's backoff (or starts it at min), capped at max. It
// reports whether the failure starts an outage: k's dials had not been
// failing (or were forgotten). A full table first forgets the peers
// whose backoff has passed; a peer that finds it still full gets no
// backoff.
func (t *table) dialFailed(k connKey, now time.Time, min, max time.Duration) (first bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, known := t.backoff[k]
	if !known && len(t.backoff) >= maxBackoffs {
		for pk, pb := range t.backoff {
			if pb.next.Before(now) {
				delete(t.backoff, pk)
			}
		}
		if len(t.backoff) >= maxBackoffs {
			return true
		}
	}
	b.delay = clamp(b.delay*2, min, max)
	b.next = now.Add(b.delay)
	t.backoff[k] = b
	return !known
}

func clamp(d, lo, hi time.Duration) time.Duration {
	return max(lo, min(d, hi))
}

// dialed forgets k's backoff after a successful dial.
func (t *table) dialed(k connKey) {
	t.mu.Lock()
	delete(t.backoff, k)
	t.mu.Unlock()
}

// tokenBucket limits the accept rate.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate float64, burst int) *tokenBucket {
	return &tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// take takes a token, reporting false when there is none.
func (b *tokenBucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
