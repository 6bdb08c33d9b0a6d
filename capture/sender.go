package capture

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/viaduct-sip/viaduct/transport/udp"
)

// sendBatch is the most frames one send hands to the kernel (sendmmsg
// takes up to 1024, writev up to IOV_MAX, 1024 on Linux).
const sendBatch = 256

// Timeouts of the TCP connection to the collector.
const (
	tcpDialTimeout  = time.Second
	tcpWriteTimeout = time.Second
	tcpRetry        = time.Second // wait after a failure before the next dial
)

// output sends HEP frames to the collector.
type output interface {
	// send sends frames; it reports how many reached the kernel and the
	// error of the others.
	send(frames [][]byte) (int, error)
	close()
}

// Start starts the sender: a goroutine that drains the rings, sends what
// the collector is to get and files what the traces match. Close stops it.
func (c *Capture) Start(ctx context.Context) error {
	var out output
	if c.hep {
		var err error
		if out, err = c.openOutput(ctx); err != nil {
			return err
		}
	}
	c.stop, c.done = make(chan struct{}), make(chan struct{})
	go c.run(out)
	if c.hep {
		proto := "udp"
		if c.tcp {
			proto = "tcp"
		}
		c.log.Info("HEP capture on", "collector", c.collector.String(), "transport", proto, "agent_id", c.agentID)
	}
	return nil
}

// Close stops the sender after a last pass over the rings.
func (c *Capture) Close() {
	if c.stop == nil {
		return
	}
	close(c.stop)
	<-c.done
	c.stop = nil
}

// openOutput opens the socket to the collector.
func (c *Capture) openOutput(ctx context.Context) (output, error) {
	if c.tcp {
		return &tcpOutput{addr: c.collector.String(), c: c}, nil
	}
	local := netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	if !c.collector.Addr().Unmap().Is4() {
		local = netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
	}
	conn, err := udp.ListenAddrPort(ctx, local, udp.Config{BatchSize: sendBatch})
	if err != nil {
		return nil, fmt.Errorf("capture: HEP socket: %w", err)
	}
	to := c.collector
	if conn.Connect(c.collector) == nil {
		// Frames go out with no address, over the route the kernel
		// looked up once; off Linux each carries the collector's.
		to = netip.AddrPort{}
	}
	return &udpOutput{conn: conn, batch: udp.NewBatch(sendBatch, 0), to: to}, nil
}

// run is the sender's loop: a look at the rings every flushInterval, or
// when a ring fills; none while there is nothing to look at.
func (c *Capture) run(out output) {
	defer close(c.done)
	s := &drainer{c: c, out: out, frames: make([][]byte, 0, sendBatch)}
	tick := time.NewTicker(flushInterval)
	defer tick.Stop()
	for {
		s.drainAll()
		c.traces.expire(time.Now())
		ticks := tick.C
		if s.idle() {
			tick.Stop()
			ticks = nil
		}
		select {
		case <-c.stop:
			s.drainAll()
			if out != nil {
				out.close()
			}
			return
		case <-ticks:
		case <-c.wake:
		}
		if ticks == nil {
			c.idle.Store(false)
			tick.Reset(flushInterval)
		}
	}
}

// idle reports whether the sender may stop ticking: the last look found
// nothing, no trace is armed, and a look after Capture.idle was set (the
// taps then wake the sender for each frame) still finds nothing.
func (s *drainer) idle() bool {
	if s.taken > 0 || s.c.traces.armed.Load() != nil {
		return false
	}
	s.c.idle.Store(true)
	if s.drainAll(); s.taken > 0 {
		s.c.idle.Store(false)
		return false
	}
	return true
}

// drainer empties the rings.
type drainer struct {
	c      *Capture
	out    output
	frames [][]byte
	taken  int // records the last drainAll took
}

// drainAll empties every ring once, taking the records in the order of
// their capture time across the rings (each ring is in that order
// already): a call's messages, captured by several workers, reach the
// collector and the traces in the order they happened.
func (s *drainer) drainAll() {
	taps := *s.c.taps.Load()
	s.taken = 0
	for {
		r := earliest(taps)
		if r == nil {
			break
		}
		body, flags, _ := r.peek()
		r.skip()
		s.taken++
		if flags&flagTrace != 0 {
			s.c.traces.record(body, flags&flagOut != 0)
		}
		if flags&flagHEP != 0 {
			s.frames = append(s.frames, body)
			if len(s.frames) == sendBatch {
				s.flush(taps)
			}
		}
	}
	s.flush(taps)
}

// earliest returns the ring whose next record was captured first, nil
// when every ring is empty.
func earliest(taps []*tap) *ring {
	var first *ring
	var at uint64
	for _, t := range taps {
		body, _, ok := t.ring.peek()
		if !ok {
			continue
		}
		if ts := frameTime(body); first == nil || ts < at {
			first, at = t.ring, ts
		}
	}
	return first
}

// flush sends the frames gathered and frees what the rings held.
func (s *drainer) flush(taps []*tap) {
	if len(s.frames) > 0 {
		s.send()
		s.frames = s.frames[:0]
	}
	for _, t := range taps {
		t.ring.release()
	}
}

// send sends s.frames and counts the outcome.
func (s *drainer) send() {
	st := &s.c.sent
	n, err := s.out.send(s.frames)
	for i, f := range s.frames {
		if i < n {
			st.sentBytes.Add(uint64(len(f)))
			st.sent.Add(1)
		} else {
			st.droppedBytes.Add(uint64(len(f)))
			st.dropped.Add(1)
		}
	}
	if err != nil {
		st.collectorErrors.Add(1)
		s.c.log.Debug("HEP send failed", "collector", s.c.collector.String(), "unsent", len(s.frames)-n, "err", err)
	}
}

// udpOutput sends frames as datagrams with sendmmsg.
type udpOutput struct {
	conn  *udp.Conn
	batch *udp.Batch
	to    netip.AddrPort // the collector; invalid when conn is connected to it
}

func (o *udpOutput) send(frames [][]byte) (int, error) {
	for i, f := range frames {
		o.batch.Msgs[i].SetData(f, o.to)
	}
	if _, err := o.conn.WriteBatch(o.batch, len(frames)); err != nil {
		return 0, err
	}
	// Messages the kernel refused alone carry their error; keep the
	// order (sent first) by counting them at the end.
	sent := 0
	var firstErr error
	for i := range frames {
		if err := o.batch.Msgs[i].Err; err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		sent++
	}
	return sent, firstErr
}

func (o *udpOutput) close() { o.conn.Close() }

// tcpOutput writes frames back to back on a TCP connection, dialled when
// needed; after a failure it waits tcpRetry before dialling again, and
// frames meanwhile are dropped.
type tcpOutput struct {
	addr    string
	c       *Capture
	conn    net.Conn
	retryAt time.Time
	bufs    net.Buffers
}

var errCollectorDown = errors.New("collector connection down")

func (o *tcpOutput) send(frames [][]byte) (int, error) {
	if o.conn == nil {
		if time.Now().Before(o.retryAt) {
			return 0, nil // counted as dropped; the failure was counted once
		}
		conn, err := net.DialTimeout("tcp", o.addr, tcpDialTimeout)
		if err != nil {
			o.retryAt = time.Now().Add(tcpRetry)
			return 0, fmt.Errorf("%w: %w", errCollectorDown, err)
		}
		o.conn = conn
	}
	o.bufs = append(o.bufs[:0], frames...)
	v := o.bufs
	o.conn.SetWriteDeadline(time.Now().Add(tcpWriteTimeout))
	if _, err := v.WriteTo(o.conn); err != nil {
		o.conn.Close()
		o.conn, o.retryAt = nil, time.Now().Add(tcpRetry)
		return 0, err
	}
	return len(frames), nil
}

func (o *tcpOutput) close() {
	if o.conn != nil {
		o.conn.Close()
	}
}
