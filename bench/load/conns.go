package load

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/viaduct-sip/viaduct/internal/enum"
	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

// Keepalive is what HoldConns sends on each connection it opens.
type Keepalive int

const (
	// KeepaliveNone sends nothing: the connection stays silent.
	KeepaliveNone Keepalive = iota
	// KeepaliveCRLF sends one double CR LF ping (RFC 5626 3.5.1).
	KeepaliveCRLF
	// KeepaliveOptions sends one OPTIONS request and waits for its
	// response.
	KeepaliveOptions
)

var keepaliveNames = [...]string{"none", "crlf", "options"}

// String returns the name ParseKeepalive accepts.
func (k Keepalive) String() string { return enum.Name(keepaliveNames[:], k, "Keepalive") }

// ParseKeepalive returns the keepalive named s: "none", "crlf" or
// "options".
func ParseKeepalive(s string) (Keepalive, error) {
	if k, ok := enum.Parse[Keepalive](keepaliveNames[:], s); ok {
		return k, nil
	}
	return 0, fmt.Errorf("unknown keepalive %q (want none, crlf or options)", s)
}

// ConnsConfig configures HoldConns, the idle-connections mode: open Count
// connections to Target and hold them, to measure what idle connections
// cost the server.
type ConnsConfig struct {
	// Target is the server to connect to (required).
	Target netip.AddrPort
	// Transport is tcp (the default) or tls.
	Transport transport.Kind
	// TLS is the client configuration for tls (required with it).
	TLS *tls.Config
	// Count is the number of connections to open (required).
	Count int
	// Hold is how long the connections are held once open. 0: closed at
	// once.
	Hold time.Duration
	// Bind lists the local addresses the connections come from, used
	// round-robin. Default: the kernel's choice; or, for an IPv4 loopback
	// target and more than 4096 connections, 127.0.0.2 and up, 4096
	// connections each (one address would run out of ephemeral ports at
	// about 28,000, and slows down well before).
	Bind []netip.Addr
	// Keepalive is what each connection sends once open. Default none.
	Keepalive Keepalive
	// Parallel is the number of connections being opened at once.
	// Default 64.
	Parallel int
	// DialTimeout bounds opening a connection (TLS handshake included)
	// and waiting for the OPTIONS response. Default 5s.
	DialTimeout time.Duration
}

func (c ConnsConfig) withDefaults() (ConnsConfig, error) {
	if !c.Target.IsValid() || c.Target.Port() == 0 {
		return c, errors.New("target address (host:port) is required")
	}
	if c.Transport == 0 {
		c.Transport = transport.TCP
	}
	if !c.Transport.Reliable() {
		return c, fmt.Errorf("transport %v: connections are tcp, tls, ws or wss", c.Transport)
	}
	if c.Transport.Secure() && c.TLS == nil {
		return c, errors.New("tls needs a client TLS configuration (a CA to trust, or insecure)")
	}
	if c.Count <= 0 || c.Count > 1_000_000 {
		return c, fmt.Errorf("count %d out of range 1..1000000", c.Count)
	}
	if c.Hold < 0 {
		return c, fmt.Errorf("hold %v must not be negative", c.Hold)
	}
	if c.Keepalive < KeepaliveNone || c.Keepalive > KeepaliveOptions {
		return c, fmt.Errorf("invalid keepalive %d", c.Keepalive)
	}
	if c.Parallel == 0 {
		c.Parallel = 64
	}
	if c.Parallel < 1 || c.Parallel > 4096 {
		return c, fmt.Errorf("parallel %d out of range 1..4096", c.Parallel)
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.DialTimeout < 0 {
		return c, fmt.Errorf("dial timeout %v must be positive", c.DialTimeout)
	}
	return c, nil
}

// ConnsReport is the outcome of HoldConns.
type ConnsReport struct {
	Transport string `json:"transport"`
	Target    string `json:"target"`
	Keepalive string `json:"keepalive"`
	Requested int    `json:"requested"`
	// Opened connections were connected (and TLS handshaken); Failed were
	// not, FailedBy says why.
	Opened   int            `json:"opened"`
	Failed   int            `json:"failed"`
	FailedBy map[string]int `json:"failed_by_reason,omitempty"`
	// Answered counts the OPTIONS answered (KeepaliveOptions).
	Answered int `json:"options_answered,omitempty"`
	// Alive counts the connections still open at the end of the hold;
	// the others were closed by the server meanwhile.
	Alive int `json:"alive_at_end"`
	// SourceAddrs are the local addresses the connections came from
	// (empty: the kernel's choice).
	SourceAddrs []string `json:"source_addresses,omitempty"`
	OpenSeconds float64  `json:"open_seconds"`
	OpenRate    float64  `json:"open_rate"`
	HeldSeconds float64  `json:"held_seconds"`
	CPUSeconds  float64  `json:"cpu_seconds"`
	Aborted     bool     `json:"aborted,omitempty"`
	// OpenFilesLimit is the process's open-files limit during the run
	// (raised for Count if allowed; 0 where unknown); Note says when it
	// could not be raised far enough.
	OpenFilesLimit uint64 `json:"open_files_limit,omitempty"`
	Note           string `json:"note,omitempty"`
}

// HoldConns opens cfg.Count connections to cfg.Target (cfg.Parallel at a
// time), sends each its keepalive, holds them all for cfg.Hold (or until
// ctx ends), checks which are still open, closes them and reports. It
// raises the open-files limit as far as Count needs, or may. progress, if not
// nil, is called about once a second while connections open.
func HoldConns(ctx context.Context, cfg ConnsConfig, progress func(opened, failed int)) (*ConnsReport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("conns config: %w", err)
	}
	limit, limitErr := raiseOpenFiles(uint64(cfg.Count) + 256)
	sources, err := connSources(cfg)
	if err != nil {
		return nil, fmt.Errorf("conns: %w", err)
	}
	h := &connHolder{cfg: cfg, sources: sources, conns: make([]net.Conn, cfg.Count), failedBy: map[string]int{},
		runID: strconv.FormatInt(time.Now().UnixNano()%1e9, 36)}
	if cfg.Transport.Secure() {
		h.tls = clientTLS(cfg.TLS, cfg.Target.Addr().String())
	}
	rep := &ConnsReport{Transport: cfg.Transport.String(), Target: cfg.Target.String(), Keepalive: cfg.Keepalive.String(),
		Requested: cfg.Count, OpenFilesLimit: limit}
	if limitErr != nil {
		rep.Note = limitErr.Error() + "; connections beyond it fail (run several conns processes)"
	}
	for _, a := range sources {
		rep.SourceAddrs = append(rep.SourceAddrs, a.String())
	}
	cpu0 := processCPU()
	t0 := time.Now()
	h.openAll(ctx, progress)
	rep.OpenSeconds = round3(time.Since(t0).Seconds())
	if rep.OpenSeconds > 0 {
		rep.OpenRate = round3(float64(h.opened.Load()) / rep.OpenSeconds)
	}
	t1 := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(cfg.Hold):
	}
	rep.Aborted = ctx.Err() != nil
	rep.HeldSeconds = round3(time.Since(t1).Seconds())
	for _, c := range h.conns {
		if c != nil && connAlive(c) {
			rep.Alive++
		}
	}
	h.closeAll()
	rep.Opened, rep.Failed, rep.Answered = int(h.opened.Load()), int(h.failed.Load()), int(h.answered.Load())
	rep.FailedBy = h.failedBy
	rep.CPUSeconds = round3((processCPU() - cpu0).Seconds())
	return rep, nil
}

// connHolder opens and keeps the connections of HoldConns.
type connHolder struct {
	cfg     ConnsConfig
	tls     *tls.Config
	sources []netip.Addr
	runID   string
	conns   []net.Conn

	opened, failed, answered atomic.Int64
	mu                       sync.Mutex
	failedBy                 map[string]int
}

// openAll opens the connections, cfg.Parallel at a time, until all are
// tried or ctx ends.
func (h *connHolder) openAll(ctx context.Context, progress func(opened, failed int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range h.cfg.Parallel {
		wg.Go(func() {
			for i := range next {
				h.openOne(ctx, i)
			}
		})
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
feed:
	for i := range h.conns {
		for {
			select {
			case next <- i:
				continue feed
			case <-ctx.Done():
				break feed
			case <-tick.C:
				if progress != nil {
					progress(int(h.opened.Load()), int(h.failed.Load()))
				}
			}
		}
	}
	close(next)
	wg.Wait()
	if progress != nil {
		progress(int(h.opened.Load()), int(h.failed.Load()))
	}
}

// openOne opens connection i and sends its keepalive.
func (h *connHolder) openOne(ctx context.Context, i int) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.DialTimeout)
	defer cancel()
	d := net.Dialer{Control: bindNoPort}
	if len(h.sources) > 0 {
		d.LocalAddr = &net.TCPAddr{IP: h.sources[i%len(h.sources)].AsSlice()}
	}
	c, err := d.DialContext(ctx, "tcp", h.cfg.Target.String())
	if err == nil && h.tls != nil {
		tc := tls.Client(c, h.tls)
		if err = tc.HandshakeContext(ctx); err != nil {
			c.Close()
			err = fmt.Errorf("tls handshake: %w", err)
		}
		c = tc
	}
	if err == nil && isWebSocket(h.cfg.Transport) {
		var w *wsClient
		if w, err = wsUpgrade(c, h.cfg.Target.String(), h.cfg.DialTimeout); err != nil {
			c.Close()
		} else {
			c = w
		}
	}
	if err == nil {
		err = h.keepalive(ctx, c, i)
		if err != nil {
			c.Close()
		}
	}
	if err != nil {
		h.failed.Add(1)
		h.mu.Lock()
		h.failedBy[dialFailure(err)]++
		h.mu.Unlock()
		return
	}
	h.conns[i] = c
	h.opened.Add(1)
}

// keepalive sends connection i's keepalive and, for OPTIONS, reads the
// response.
func (h *connHolder) keepalive(ctx context.Context, c net.Conn, i int) error {
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	defer c.SetDeadline(time.Time{})
	switch h.cfg.Keepalive {
	case KeepaliveCRLF:
		_, err := c.Write([]byte("\r\n\r\n"))
		return err
	case KeepaliveOptions:
		if _, err := c.Write(h.options(c, i)); err != nil {
			return err
		}
		f := newFrameReader(c, 2048)
		for {
			if err := f.fill(); err != nil {
				return fmt.Errorf("options: %w", err)
			}
			m, err := f.frame()
			if err != nil {
				return fmt.Errorf("options response: %w", err)
			}
			var msg parser.Message
			if m != nil && parser.Parse(m, &msg) == nil && !msg.IsRequest() && msg.StatusCode() >= 200 {
				h.answered.Add(1)
				return nil
			}
		}
	}
	return nil
}

// options builds the OPTIONS request of connection i.
func (h *connHolder) options(c net.Conn, i int) []byte {
	local := c.LocalAddr().String()
	k := h.cfg.Transport
	n := strconv.Itoa(i)
	return []byte("OPTIONS sip:" + h.cfg.Target.String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/" + k.ViaToken() + " " + local + ";branch=z9hG4bK-c" + h.runID + "-" + n + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:conns@" + local + ">;tag=c" + n + "\r\nTo: <sip:" + h.cfg.Target.String() + ">\r\n" +
		"Call-ID: c" + n + "-" + h.runID + "@vl\r\nCSeq: 1 OPTIONS\r\n" +
		"Contact: <sip:conns@" + local + ";transport=" + k.String() + ">\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n")
}

func (h *connHolder) closeAll() {
	for i, c := range h.conns {
		if c != nil {
			c.Close()
			h.conns[i] = nil
		}
	}
}

// dialFailure names the reason a connection failed, for the report.
func dialFailure(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return "no local port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case strings.Contains(err.Error(), "options"):
		return "options unanswered"
	case strings.Contains(err.Error(), "tls"):
		return "tls"
	case isTimeout(err), errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	}
	return "other"
}

// loopbackPerSource is how many connections to a loopback target come
// from one source address: beyond a few thousand, connect(2) takes longer
// and longer to find a free port (three times the CPU at 19,000), and
// 127.0.0.0/8 has addresses to spare.
const loopbackPerSource = 4096

// connSources returns the local addresses connections come from: Bind;
// for an IPv4 loopback target and more than loopbackPerSource
// connections, 127.0.0.2 and up, loopbackPerSource connections each; or
// nil, the kernel's choice, when one address has the ephemeral ports.
func connSources(cfg ConnsConfig) ([]netip.Addr, error) {
	if len(cfg.Bind) > 0 {
		return cfg.Bind, nil
	}
	t := cfg.Target.Addr().Unmap()
	if t.Is4() && t.IsLoopback() && cfg.Count > loopbackPerSource {
		addrs := make([]netip.Addr, (cfg.Count+loopbackPerSource-1)/loopbackPerSource)
		for i := range addrs {
			addrs[i] = netip.AddrFrom4([4]byte{127, 0, byte((i + 2) >> 8), byte(i + 2)})
		}
		return addrs, nil
	}
	if perAddr := ephemeralPorts() * 9 / 10; cfg.Count > perAddr { // leave some for everyone else
		return nil, fmt.Errorf("%d connections to %v need more ephemeral ports than one source address has (%d): give several local addresses to bind", cfg.Count, cfg.Target, perAddr)
	}
	return nil, nil
}

// ephemeralPorts returns the size of the kernel's ephemeral port range
// (28232 by Linux's default when it cannot be read).
func ephemeralPorts() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			lo, err1 := strconv.Atoi(f[0])
			hi, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && hi >= lo {
				return hi - lo + 1
			}
		}
	}
	return 28232
}
