// Package stream is Viaduct's TCP, TLS and WebSocket transport (RFC 3261
// 18.3 framing, RFC 5626 keepalives, RFC 7118): Server, the
// transport.Server the core binds with stream.Bind(cfg, kind, log), kind
// one of transport.TCP, TLS, WS and WSS.
//
// # Connections and workers
//
// Each listen address has Layout.Workers handlers. Every connection,
// accepted or dialled, is bound to one worker of its listener for its life,
// so its messages are handled in order by one handler, and a handler is
// never called concurrently (each worker has a mutex). A connection has one
// goroutine, parked in the netpoller inside syscall.RawConn.Read while the
// socket is empty and holding no read buffer then: the read callback takes
// the worker's mutex, reads into the worker's buffer, hands each complete
// message (parser.FrameStream; CR LF keepalives skipped, a CRLF CRLF ping
// answered with CRLF) to the handler with the connection's flow, and
// writes what the handler returns: the answers to the messages of one read
// that go back on the same connection leave together, in one write. Only the start of a message split across
// reads is kept, in a buffer of MaxMessage+1 bytes from the worker's pool,
// until the message is complete (MessageTimeout bounds how long). Measured
// at 19,800 idle connections (BenchmarkIdleConnMemory): about 6 KiB of RSS
// per TCP connection (a 4 KiB goroutine stack, 1.5 KiB of heap) and 12 KiB
// per TLS connection; steady state, a message read, handled and answered
// allocates nothing on TCP (TestSteadyStateAllocs).
//
// TLS runs crypto/tls over the same socket: the handshake blocks (bounded
// by HandshakeTimeout) on a goroutine that then starts the reader on a
// fresh one; afterwards tls.Conn reads the socket without blocking from
// inside the read callback, and its writes go through the write queue.
//
// # WebSocket
//
// A WS or WSS connection is a TCP or TLS connection that begins with an
// HTTP upgrade (RFC 6455 4, the sip subprotocol required, Origin and path
// checked against WebSocketConfig, gobwas/ws's Upgrader run on the request
// bytes read like a message), then carries one SIP message per WebSocket
// message: frames are parsed from the worker's buffer, unmasked in place
// and handed over whole (fragments assembled in a pooled buffer); answers
// go in unmasked frames. Idle clients are pinged; a WebSocket client is
// never dialled. Behind a trusted proxy the client's address may come from
// X-Forwarded-For or a PROXY protocol header (ws_proxy.go).
//
// # Flows
//
// Peer.Flow names one connection for the process's life (a 64-bit counter,
// never reused). A send to the flow of a closed connection fails with an
// error wrapping transport.ErrFlowGone. A send with Flow 0 goes over the
// open connection to Peer.Addr on Peer.Listener, accepted (from that
// address and port) or dialled, or dials a new one from the listener's IP
// and an ephemeral port; the message waits in the new connection's queue
// until it is connected (the sender never waits). Outbound connections stay
// open (OutboundIdleTimeout, default none) and are read like inbound ones.
// After a failed dial (or handshake), sends to that address fail at once
// until ReconnectBackoff has passed, doubling per failure up to
// MaxReconnectBackoff; the next send after that dials again.
//
// # Writes
//
// A write never blocks: what the socket does not take at once is queued
// on the connection and written by a goroutine of its own when the socket
// is writable. Writes to one connection leave in the order they were made,
// from any goroutine. A peer that does not read is closed when its queue
// would pass WriteQueue bytes.
//
// # Limits
//
// Every limit has a default and a counter (Stats, Collector):
//
//	limit                  ServerConfig field     default   counted as
//	connections in all     MaxConnections         50000     limit max_connections
//	connections per IP     MaxConnectionsPerIP    1024      limit max_connections_per_ip
//	accept rate            AcceptRate/Burst       2000/s, 4000  limit accept_rate
//	access list            Layout.Gate            none      limit gate
//	TLS handshake          HandshakeTimeout       5s        closed handshake
//	first message          FirstMessageTimeout    10s       closed first_message_timeout
//	one message            MessageTimeout         5s        closed message_timeout
//	idle, inbound          IdleTimeout            10m       closed idle_timeout
//	idle, outbound         OutboundIdleTimeout    none      closed idle_timeout
//	message size           Layout.MaxMessage      (core)    closed too_large
//	write queue            WriteQueue             256 KiB   closed write_queue
//	connect                DialTimeout            5s        closed dial_failed
//	reconnect backoff      ReconnectBackoff       250ms..30s  limit reconnect_backoff
//
// A refused connection is closed at once, before any byte of it is read.
// On a framing error (no, several or a malformed Content-Length; a message
// over MaxMessage) the handler gets the header block so that the core can
// answer 400 or 513 on the connection; its answer is written (queue
// included), then the connection's sending side is shut (FIN) and what the
// peer still sends is read and dropped for up to a second before the
// socket is closed, so that no reset destroys the answer (Close may wait
// that long for such a connection).
package stream
