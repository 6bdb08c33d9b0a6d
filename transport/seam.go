package transport

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
)

// ErrFlowGone is the error of a send over a connection (Peer.Flow) that is
// closed.
var ErrFlowGone = errors.New("transport: flow gone")

// Peer is the other end of a message as a transport sees it: where a
// received message came from, or where one is to be sent.
type Peer struct {
	// Addr is the peer's address and port.
	Addr netip.AddrPort
	// Kind is the transport the message travels over.
	Kind Kind
	// Listener is the index of the listener (one listen address of one
	// transport) that received the message or is to send it.
	Listener int
	// Flow names the connection a message came on or is to leave on; 0
	// for datagrams, and for a message to a peer the transport may reach
	// over any connection of its own.
	Flow uint64
}

// Outbound is a message a Handler asks its transport to send.
type Outbound struct {
	// Buf holds the message. The transport sets it to an empty slice with
	// Layout.OutputSize bytes of capacity before each Handle.
	Buf []byte
	// To is where it goes.
	To Peer
}

// Handler is the forwarding core as a transport sees it: a transport
// worker hands it every message it receives and sends what it asks. A
// Handler belongs to one worker goroutine and is never called
// concurrently.
type Handler interface {
	// Handle processes msg, received from src, and fills out; it reports
	// whether out is to be sent. It keeps no reference to msg or out.Buf
	// after it returns.
	Handle(msg []byte, src Peer, out *Outbound) bool
	// Sent reports the fate of an Outbound that Handle asked to send: err
	// is nil once the transport has handed it to the kernel.
	Sent(out *Outbound, err error)
}

// A Flusher is a Handler that holds the messages it sends itself (those
// for connections) until its transport's batch ends, so that what one
// batch gives one connection leaves in one write: a trunk's 180 and 200,
// read together, reach it in one TCP segment. A transport whose Handler is
// a Flusher calls Flush after the last message of each batch it handed
// over (a connection's read, a recvmmsg), before it waits for more; the
// held messages leave then, in the order they were handled.
type Flusher interface {
	Flush()
}

// A Coalescer is a Server that sends several messages for one peer in one
// write.
type Coalescer interface {
	// SendAll is Send of each message of b in turn, in one write where
	// the transport can: the messages lie back to back in b, message i
	// ending at ends[i] (the last end is len(b)). An error wrapping
	// ErrFlowGone means none of them was sent.
	SendAll(b []byte, ends []int, to Peer) error
	// FlowOpen reports whether the connection flow names is open: a
	// Handler holds a message for it only then, and leaves a closed one to
	// the core at once.
	FlowOpen(flow uint64) bool
}

// Layout is what the core asks of a transport it binds.
type Layout struct {
	// Addrs are the listen addresses, one listener each, in the core's
	// order (Peer.Listener indexes them).
	Addrs []netip.AddrPort
	// Workers is the number of worker goroutines per listener.
	Workers int
	// MaxMessage is the largest message a Handler accepts. A transport
	// hands over up to one byte more, so that an oversize message can be
	// recognised and refused.
	MaxMessage int
	// OutputSize is the capacity of each Outbound.Buf.
	OutputSize int
	// Gate, if set, is asked before a stream transport accepts a
	// connection; nil accepts every connection.
	Gate ConnGate
	// Conns, if set, is shared by every transport of the process: stream
	// transports count their open connections in it. While it is above
	// zero, a worker that could keep its P waiting in the kernel (UDP's
	// park_after) parks in the Go netpoller instead, so that the
	// connections' goroutines get a P the moment they have a message.
	Conns *atomic.Int64
}

// Server is one transport's bound listeners: the sockets and connections,
// the worker goroutines that read them, and the sending.
type Server interface {
	// Kind is the transport of its listeners.
	Kind() Kind
	// Addrs returns the bound address of each listener, with the port the
	// kernel chose for port 0.
	Addrs() []netip.AddrPort
	// Serve starts the workers, each calling the Handler newHandler made
	// for it (worker counts from 0 per listener; Workers is the worker
	// that reads a listener's origin socket, see Originate), and returns.
	Serve(newHandler func(listener, worker int) Handler)
	// Origin returns the local address of the socket a request the proxy
	// originates itself (a health probe) leaves from when sent with
	// Originate on listener: a port of this process alone, so that its
	// responses come back here even when several processes (or hosts)
	// share the listen address. Its IP may be a wildcard, the kernel then
	// choosing the source address by route.
	Origin(listener int) netip.AddrPort
	// Originate sends b to to.Addr from listener to.Listener's origin
	// address, outside the workers' batches.
	Originate(b []byte, to Peer) error
	// Send sends b to `to` from listener to.Listener (over connection
	// to.Flow on a stream transport), from any goroutine, outside the
	// workers' batches and without blocking: a message that cannot be
	// written at once is queued by a stream transport (bounded) or refused.
	// It keeps no reference to b. Messages Send is given for one peer
	// leave in the order Send was called. An error wrapping ErrFlowGone
	// means to.Flow names a connection that is closed.
	Send(b []byte, to Peer) error
	// KernelDrops returns the messages the kernel dropped for want of
	// buffer space on a worker's socket (0 where it cannot tell).
	KernelDrops(listener, worker int) uint64
	// Close stops the workers, after the batch each is handling, and
	// closes every socket.
	Close() error
}

// Binder opens a Server for a Layout; ctx bounds the setup only.
type Binder func(ctx context.Context, l Layout) (Server, error)

// Position names one transport worker to a Stage: the listener it serves
// (an index into Layout.Addrs), the worker's index on that listener, and
// the transport.
type Position struct {
	Kind     Kind
	Listener int
	Worker   int
}

// A Stage wraps the Handler of one transport worker, so that a room the
// core does not import takes part in every message without being written
// into the core: the edge admits or drops a message before the core sees
// it, capture taps what came in and what was sent. A Stage's Handler calls
// next for every message it lets through, on the same goroutine; like
// every Handler it is never called concurrently.
type Stage func(next Handler, at Position) Handler

// ConnGate decides whether a stream transport accepts a connection from
// src, before any byte of it is read (the edge's access lists). It is
// called concurrently and must not block.
type ConnGate func(src netip.AddrPort) bool
