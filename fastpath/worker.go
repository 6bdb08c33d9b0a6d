package fastpath

import (
	"github.com/cespare/xxhash/v2"
	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

// Worker is the per-goroutine state of the fast path: a parser.Message, the
// MAC state, edit lists and scratch buffers and its counters. A Worker is
// not safe for concurrent use.
type Worker struct {
	e       *Engine
	c       *counters
	m       parser.Message
	mac     *macer
	prevMac *macer // Config.PreviousSecret's, or nil
	xx      *xxhash.Digest
	edits   editList
	redits  editList
	scratch []byte
	keyBuf  []byte   // unescaped URI user parts for key hashing
	aorBuf  []byte   // user@host of an AOR key
	rr      uint64   // round-robin cursor (balancer.Table.Select)
	rt      *routing // the engine's routing, loaded at the start of each request
	req     reqState // the request being handled

	txBuf      []byte     // branch, host and port of an RFC 3261 transaction key (txkey.go)
	replyLines replyLines // the lines of a request being answered (reply.go)
	replyVia   parser.Via // its top Via
	retryAfter uint32     // a Retry-After the reply being built carries, 0 for none
	up         *upCounters

	src      transport.Peer   // where the message being handled came from
	server   transport.Server // the transport a socket worker reads, nil for NewWorker's
	listener int              // its listener and worker index, for its kernel drops
	index    int
}

// srcConn names the connection the message being handled came on, for a
// branch (zero for a datagram).
func (w *Worker) srcConn() flowRef {
	if w.src.Flow == 0 {
		return flowRef{}
	}
	return flowRef{boot: w.e.boot, flow: w.src.Flow}
}

// NewWorker returns a Worker that no transport drives: Handle can be
// called directly (tests, benchmarks, fuzzing). Its counters are its own
// (Worker.Stats), not part of Engine.Stats.
func (e *Engine) NewWorker() *Worker {
	return e.newWorker()
}

// previousMacer returns the macer of Config.PreviousSecret, or nil if there
// is none.
func (e *Engine) previousMacer() *macer {
	if e.cfg.PreviousSecret == nil {
		return nil
	}
	return newMacer(e.cfg.PreviousSecret)
}

func (e *Engine) newWorker() *Worker {
	return &Worker{
		e:       e,
		c:       new(counters),
		mac:     newMacer(e.cfg.Secret),
		prevMac: e.previousMacer(),
		xx:      xxhash.New(),
		scratch: make([]byte, 0, 1024+len(e.adv.sentBy)+len("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")),
		keyBuf:  make([]byte, 0, maxKeyUnescape),
		txBuf:   make([]byte, 0, 160),
		aorBuf:  make([]byte, 0, 2*maxKeyUnescape),
		rr:      e.nextCursor.Add(1) - 1,
		rt:      e.route.Load(),
		up:      newUpCounters(e.numTargets()),
	}
}

// numTargets is the number of targets of the default pool (0 with a
// Picker), to size the per-upstream counters.
func (e *Engine) numTargets() int {
	if e.pool == nil {
		return 0
	}
	return e.pool.Table().Len()
}

// Stats returns a snapshot of the worker's counters.
func (w *Worker) Stats() Stats {
	var s Stats
	w.c.snapshot(&s)
	if w.server != nil {
		s.KernelDrops = w.server.KernelDrops(w.listener, w.index)
	}
	return s
}

// OutputBufferSize is the capacity an Output.Buf needs so that Handle never
// grows it: MaxMessageSize plus room for what a rewrite adds.
func (e *Engine) OutputBufferSize() int { return e.cfg.MaxMessageSize + headroom }
