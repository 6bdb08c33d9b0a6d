package resolve

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// HopState is what NextHops.Lookup knows of a name.
type HopState uint8

// The states of a next-hop lookup.
const (
	// HopFound: the address is known (possibly from an answer past its
	// TTL, which is being refreshed meanwhile).
	HopFound HopState = iota
	// HopPending: no answer yet; a lookup has been started (or the queue
	// of lookups was full). Ask again later.
	HopPending
	// HopFailed: the name did not resolve (NXDOMAIN, no usable address,
	// a timeout), or cannot be looked up; this answer is kept for
	// Config.Retry.
	HopFailed
)

// Limits of NextHops.
const (
	// MaxHopNames bounds the names NextHops remembers; beyond it the
	// expired answers, then the oldest ones, are forgotten.
	MaxHopNames = 4096
	// maxHostLen is the longest DNS name (RFC 1035), in presentation form.
	maxHostLen = 253
	// hopQueue is how many lookups may wait for a resolver goroutine.
	hopQueue = 256
)

// NextHops resolves the host names that the fast path meets as the next hop
// of a request (a Route or Request-URI naming a host rather than an IP
// address), following RFC 3263 section 4 for UDP without NAPTR: a name
// with an explicit port is looked up as A/AAAA; a name without one first as
// SRV _sip._udp.NAME (the record of lowest priority, then highest weight,
// gives target and port), then, when there is no SRV record, as A/AAAA
// with port 5060.
//
// Lookup never blocks: it answers from a table that it reads with one
// atomic load, without allocating. A name it does not know yet is queued
// for the goroutines of Run, and Lookup reports HopPending; the fast path
// then drops the request, and the upstream's retransmission (500 ms later
// for UDP, RFC 3261 17.1.1.2) finds the answer. An answer is used for
// Config.Interval and, past that, still used while a refresh runs; a name
// that did not resolve answers HopFailed for Config.Retry. At most
// MaxHopNames names are kept.
type NextHops struct {
	cfg   Config
	table atomic.Pointer[map[string]hopAnswer] // copy on write
	queue chan string                          // keys to look up
	now   func() time.Time

	mu      sync.Mutex      // serializes writers of table, guards pending
	pending map[string]bool // keys queued or being looked up

	lookups, failures atomic.Uint64
}

// hopAnswer is the table's entry for one key.
type hopAnswer struct {
	addr    netip.AddrPort // valid when ok
	ok      bool
	expires int64 // unix nanoseconds
	stored  int64 // unix nanoseconds, for eviction
}

// NewNextHops returns a NextHops with cfg (Interval: how long an answer
// is used before it is refreshed; Retry: how long a failure is; Timeout,
// Network, Resolver and Logger as for a Watcher). Its lookups run once
// Run is called.
func NewNextHops(cfg Config) (*NextHops, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	h := &NextHops{cfg: cfg, queue: make(chan string, hopQueue), now: time.Now, pending: map[string]bool{}}
	empty := map[string]hopAnswer{}
	h.table.Store(&empty)
	return h, nil
}

// HopStats counts a NextHops' activity.
type HopStats struct {
	// Names is the number of names in the table.
	Names int
	// Lookups counts the lookups made, Failures those that failed.
	Lookups, Failures uint64
}

// Stats returns the NextHops' counters.
func (h *NextHops) Stats() HopStats {
	return HopStats{Names: len(*h.table.Load()), Lookups: h.lookups.Load(), Failures: h.failures.Load()}
}

// Lookup returns the address of host with port (0: none given in the URI)
// as far as it is known now; see NextHops. host is a DNS name as written in
// a SIP URI (case does not matter); an IP literal is the caller's to
// handle. It does not block, and does not allocate once the name is known.
func (h *NextHops) Lookup(host []byte, port int) (netip.AddrPort, HopState) {
	if len(host) == 0 || len(host) > maxHostLen || port < 0 || port > 65535 {
		return netip.AddrPort{}, HopFailed
	}
	var buf [maxHostLen + 6]byte
	k := hopKey(buf[:0], host, port)
	a, found := (*h.table.Load())[string(k)]
	now := h.now().UnixNano()
	switch {
	case !found:
		h.enqueue(k)
		return netip.AddrPort{}, HopPending
	case now >= a.expires:
		h.enqueue(k) // refresh; meanwhile the last answer stands
	}
	if !a.ok {
		return netip.AddrPort{}, HopFailed
	}
	return a.addr, HopFound
}

// hopKey appends the table key of host and port: the host in lower case,
// a colon and the port (0 when none was given).
func hopKey(dst, host []byte, port int) []byte {
	for _, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	dst = append(dst, ':')
	return strconv.AppendInt(dst, int64(port), 10)
}

// enqueue queues a lookup of key unless one is queued or running already,
// or the queue is full (the next Lookup of the name tries again).
func (h *NextHops) enqueue(key []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending[string(key)] {
		return
	}
	k := string(key)
	select {
	case h.queue <- k:
		h.pending[k] = true
	default:
	}
}

// Run looks up the queued names on a few goroutines until ctx ends.
func (h *NextHops) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range maxParallel {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case k := <-h.queue:
					h.store(k, h.resolve(ctx, k))
				}
			}
		})
	}
	wg.Wait()
}

// resolve looks key up (RFC 3263 4.2, UDP, no NAPTR). The host is asked as
// the URI wrote it (a trailing dot only if it had one), so a name in the
// hosts file resolves as it does for the system's resolver; an SRV
// record's target is asked as the absolute name it is.
func (h *NextHops) resolve(ctx context.Context, key string) hopAnswer {
	h.lookups.Add(1)
	i := len(key) - 1
	for key[i] != ':' {
		i--
	}
	host := key[:i]
	port, _ := strconv.Atoi(key[i+1:])
	target := host
	if port == 0 {
		port = 5060
		recs, err := h.cfg.lookupSRV(ctx, "_sip._udp."+host)
		var dnsErr *net.DNSError
		switch {
		case err == nil && len(recs) > 0:
			// Lowest priority first (lookupSRV's order); among equals,
			// the highest weight.
			best := recs[0]
			for _, r := range recs[1:] {
				if r.Priority == best.Priority && r.Weight > best.Weight {
					best = r
				}
			}
			target, port = best.query(), int(best.Port)
		case err == nil, errors.As(err, &dnsErr) && dnsErr.IsNotFound:
			// no SRV records: the name's own addresses, port 5060
		default:
			return h.failed(host, "SRV", err)
		}
	}
	addrs, err := h.cfg.lookupHost(ctx, target)
	if err != nil {
		return h.failed(target, "A/AAAA", err)
	}
	now := h.now().UnixNano()
	return hopAnswer{addr: netip.AddrPortFrom(addrs[0], uint16(port)), ok: true, expires: now + int64(h.cfg.Interval), stored: now}
}

// failed logs and counts a failed lookup and returns its negative answer.
func (h *NextHops) failed(name, what string, err error) hopAnswer {
	h.failures.Add(1)
	h.cfg.Logger.Warn("next hop does not resolve", "name", name, "query", what, "err", err)
	now := h.now().UnixNano()
	return hopAnswer{expires: now + int64(h.cfg.Retry), stored: now}
}

// store publishes the answer for key in a new table, forgetting expired
// answers, then the oldest, beyond MaxHopNames.
func (h *NextHops) store(key string, a hopAnswer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.pending, key)
	old := *h.table.Load()
	if prev, ok := old[key]; ok && prev.ok && !a.ok {
		// A failed refresh keeps the last good answer for another round.
		prev.expires = a.expires
		a = prev
	}
	next := maps.Clone(old)
	next[key] = a
	if len(next) > MaxHopNames {
		now := h.now().UnixNano()
		for k, v := range next {
			if k != key && now >= v.expires {
				delete(next, k)
			}
		}
		for len(next) > MaxHopNames {
			oldest, at := "", int64(0)
			for k, v := range next {
				if k != key && (oldest == "" || v.stored < at) {
					oldest, at = k, v.stored
				}
			}
			delete(next, oldest)
		}
	}
	h.table.Store(&next)
}
