package load

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

// maxStreamMessage is the largest message read from a stream: a UDP
// datagram's worth, as large as any the generator sends or answers.
const maxStreamMessage = 65535

// checkTransport refuses the kinds the generator does not speak.
func checkTransport(k *transport.Kind) error {
	if *k == 0 {
		*k = transport.UDP
	}
	if !k.Valid() {
		return fmt.Errorf("transport %v not supported (want udp, tcp, tls, ws or wss)", *k)
	}
	return nil
}

// ParseTransport returns the transport named s: "udp", "tcp", "tls", "ws"
// or "wss" (a UAC only: SIP over WebSocket, as a browser speaks it).
func ParseTransport(s string) (transport.Kind, error) {
	k, ok := transport.ParseKind(s)
	if !ok || checkTransport(&k) != nil {
		return 0, fmt.Errorf("unknown transport %q (want udp, tcp, tls, ws or wss)", s)
	}
	return k, nil
}

// isWebSocket reports whether k is WS or WSS.
func isWebSocket(k transport.Kind) bool { return k == transport.WS || k == transport.WSS }

// Connections says how a UAC on a stream transport uses connections.
type Connections int

const (
	// ConnShared is one connection per source that every call shares, a
	// trunk (SIPp's -t t1 with one source); reopened when it drops.
	ConnShared Connections = iota
	// ConnPerCall is a connection per call, opened for its first request
	// and closed after its last transaction (SIPp's -t tn).
	ConnPerCall
)

var connectionsNames = [...]string{"shared", "per-call"}

// String returns the name ParseConnections accepts.
func (c Connections) String() string {
	if c < 0 || int(c) >= len(connectionsNames) {
		return fmt.Sprintf("Connections(%d)", int(c))
	}
	return connectionsNames[c]
}

// ParseConnections returns the mode named s: "shared" or "per-call".
func ParseConnections(s string) (Connections, error) {
	for i, n := range connectionsNames {
		if s == n {
			return Connections(i), nil
		}
	}
	return 0, fmt.Errorf("unknown connections mode %q (want shared or per-call)", s)
}

// frameReader reads SIP messages from a stream: it skips the CR LF
// keepalives between messages and frames each message by its
// Content-Length (RFC 3261 18.3) with parser.FrameStream. Its buffer
// starts small and grows, up to maxStreamMessage+1 bytes, to hold a long
// message or when reads keep filling it (a busy connection is then read in
// fewer, larger reads).
type frameReader struct {
	r          io.Reader
	buf        []byte
	start, end int  // unread bytes are buf[start:end]
	full       bool // the last read filled the buffer: more may be waiting
}

func newFrameReader(r io.Reader, size int) *frameReader {
	return &frameReader{r: r, buf: make([]byte, size)}
}

// fill reads once from the stream, making room first.
func (f *frameReader) fill() error {
	if f.start == f.end {
		f.start, f.end = 0, 0
	}
	if f.end == len(f.buf) {
		grow := f.start == 0 || (f.full && len(f.buf) <= maxStreamMessage)
		if grow {
			nb := make([]byte, min(2*len(f.buf), maxStreamMessage+1))
			if len(nb) == len(f.buf) {
				return parser.ErrHeadersTooLarge // frame refuses this first
			}
			f.end = copy(nb, f.buf[f.start:f.end])
			f.buf, f.start = nb, 0
		} else {
			f.end = copy(f.buf, f.buf[f.start:f.end])
			f.start = 0
		}
	}
	n, err := f.r.Read(f.buf[f.end:])
	f.full = f.end+n == len(f.buf)
	f.end += n
	if n > 0 && err != nil && !isTimeout(err) {
		err = nil // deliver what came; the error repeats on the next read
	}
	return err
}

// frame returns the next whole message in the buffer, nil when more bytes
// are needed, or the framing error that makes the stream unusable. The
// message stays valid until the next fill.
func (f *frameReader) frame() ([]byte, error) {
	for f.start < f.end && (f.buf[f.start] == '\r' || f.buf[f.start] == '\n') {
		f.start++ // keepalives (RFC 5626 3.5.1) between messages
	}
	if f.start == f.end {
		return nil, nil
	}
	fr, err := parser.FrameStream(f.buf[f.start:f.end], maxStreamMessage)
	if err != nil || fr.Len == 0 {
		return nil, err
	}
	m := f.buf[f.start : f.start+fr.Len]
	f.start += fr.Len
	return m, nil
}

// isTimeout reports whether err is a deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// inboxRef marks the end of one message in an inbox buffer.
type inboxRef struct{ end int }

// inbox carries the messages that connection readers frame to the one
// goroutine that owns the calls (a UAC source): readers append under the
// lock, the owner swaps the buffers out and reads them without it. A full
// inbox makes readers wait, which pushes back on the peer through TCP.
type inbox struct {
	mu     sync.Mutex
	space  sync.Cond
	buf    []byte
	refs   []inboxRef
	opened []opening     // per-call connections opened (or not), in order
	closed []*streamConn // connections that ended, in order
	stop   bool
	wake   chan struct{} // capacity 1: something arrived
}

// inboxLimit is the bytes an inbox holds before readers wait.
const inboxLimit = 1 << 20

func newInbox() *inbox {
	in := &inbox{wake: make(chan struct{}, 1), buf: make([]byte, 0, 64<<10), refs: make([]inboxRef, 0, 256)}
	in.space.L = &in.mu
	return in
}

func (in *inbox) signal() {
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// deliver moves every whole message in f into the inbox. It returns a
// framing error, or errInboxStopped once the owner has gone.
func (in *inbox) deliver(f *frameReader) error {
	in.mu.Lock()
	n := 0
	var err error
	for {
		for len(in.buf) > inboxLimit && !in.stop {
			in.space.Wait()
		}
		if in.stop {
			err = errInboxStopped
			break
		}
		var m []byte
		m, err = f.frame()
		if m == nil {
			break
		}
		in.buf = append(in.buf, m...)
		in.refs = append(in.refs, inboxRef{len(in.buf)})
		n++
	}
	in.mu.Unlock()
	if n > 0 {
		in.signal()
	}
	return err
}

var errInboxStopped = errors.New("inbox stopped")

// opening is the outcome of opening a per-call connection.
type opening struct {
	sc   *streamConn
	conn net.Conn // nil when err
	err  error
}

// connOpened records the outcome of opening sc; false when the owner has
// gone (the caller then closes conn).
func (in *inbox) connOpened(o opening) bool {
	in.mu.Lock()
	stop := in.stop
	if !stop {
		in.opened = append(in.opened, o)
	}
	in.mu.Unlock()
	in.signal()
	return !stop
}

// connEnded records that c's reader stopped (the peer closed it, or a read
// or framing error).
func (in *inbox) connEnded(c *streamConn) {
	in.mu.Lock()
	in.closed = append(in.closed, c)
	in.mu.Unlock()
	in.signal()
}

// inboxBatch is what the owner took out of the inbox.
type inboxBatch struct {
	buf    []byte
	refs   []inboxRef
	opened []opening
	closed []*streamConn
}

// take swaps the inbox's contents with b's (emptied) buffers.
func (in *inbox) take(b *inboxBatch) {
	b.buf, b.refs, b.opened, b.closed = b.buf[:0], b.refs[:0], b.opened[:0], b.closed[:0]
	in.mu.Lock()
	in.buf, b.buf = b.buf, in.buf
	in.refs, b.refs = b.refs, in.refs
	in.opened, b.opened = b.opened, in.opened
	in.closed, b.closed = b.closed, in.closed
	in.space.Broadcast()
	in.mu.Unlock()
}

// shutdown releases readers waiting for space; they then stop.
func (in *inbox) shutdown() {
	in.mu.Lock()
	in.stop = true
	in.space.Broadcast()
	in.mu.Unlock()
}
