package stream

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// CloseReason is why a connection was closed.
type CloseReason uint8

// The close reasons, the reason label of viaduct_stream_closed_total.
const (
	ClosedByPeer         CloseReason = iota // the peer closed (EOF) or reset it
	ClosedReadError                         // a read failed
	ClosedWriteError                        // a write failed
	ClosedBadFraming                        // missing, multiple or malformed Content-Length
	ClosedTooLarge                          // a message over Layout.MaxMessage
	ClosedWriteQueue                        // the peer did not read: the write queue hit its cap
	ClosedIdle                              // IdleTimeout (OutboundIdleTimeout) with nothing received
	ClosedFirstMessage                      // no complete first message within FirstMessageTimeout
	ClosedMessageTimeout                    // a message not complete within MessageTimeout
	ClosedHandshake                         // the TLS handshake failed or timed out
	ClosedDialFailed                        // an outbound connect failed
	ClosedShutdown                          // Server.Close
	ClosedUpgrade                           // a WebSocket upgrade request refused (answered with an HTTP error)
	NumCloseReasons
)

var closeReasonNames = [NumCloseReasons]string{"peer", "read_error", "write_error", "bad_framing", "too_large",
	"write_queue", "idle_timeout", "first_message_timeout", "message_timeout", "handshake", "dial_failed", "shutdown", "upgrade"}

func (r CloseReason) String() string { return closeReasonNames[r] }

// Limit is a limit that refused a connection or a send.
type Limit uint8

// The limits, the limit label of viaduct_stream_limit_hits_total.
const (
	LimitConnections      Limit = iota // MaxConnections
	LimitConnectionsPerIP              // MaxConnectionsPerIP
	LimitAcceptRate                    // AcceptRate / AcceptBurst
	LimitGate                          // Layout.Gate said no
	LimitReconnectBackoff              // a send to an address whose dial failed, while backing off
	NumLimits
)

var limitNames = [NumLimits]string{"max_connections", "max_connections_per_ip", "accept_rate", "gate", "reconnect_backoff"}

func (l Limit) String() string { return limitNames[l] }

// Stats is a snapshot of a server's counters.
type Stats struct {
	// OpenIn and OpenOut are the connections open now per listener,
	// accepted and dialled.
	OpenIn, OpenOut []int64
	// Accepted counts the connections accepted (after every limit);
	// Dialed the outbound connections established.
	Accepted, Dialed uint64
	// Closed counts closed connections by reason (index CloseReason).
	Closed [NumCloseReasons]uint64
	// LimitHits counts the refusals of each limit (index Limit).
	LimitHits [NumLimits]uint64
	// HandshakeFailures counts failed TLS handshakes (also closed as
	// ClosedHandshake).
	HandshakeFailures uint64
	// MessagesIn, BytesIn count the messages handed to the handlers and
	// their bytes; MessagesOut, BytesOut what was written or queued.
	MessagesIn, BytesIn, MessagesOut, BytesOut uint64
	// WSUpgrades and WSRefused count the WebSocket upgrades answered with
	// 101 and refused; WSPings the keepalive pings sent to idle clients.
	WSUpgrades, WSRefused, WSPings uint64
	// WSForwarded counts the WebSocket connections whose client address
	// came from a trusted proxy (X-Forwarded-For, PROXY protocol).
	WSForwarded uint64
}

// counters are a server's live counters.
type counters struct {
	openIn, openOut   []atomic.Int64 // per listener
	accepted, dialed  atomic.Uint64
	closed            [NumCloseReasons]atomic.Uint64
	limits            [NumLimits]atomic.Uint64
	handshakeFailures atomic.Uint64
	msgsIn, bytesIn   atomic.Uint64
	msgsOut, bytesOut atomic.Uint64
	wsUpgrades        atomic.Uint64
	wsRefused         atomic.Uint64
	wsPings           atomic.Uint64
	wsForwarded       atomic.Uint64
}

func (c *counters) snapshot() Stats {
	s := Stats{OpenIn: make([]int64, len(c.openIn)), OpenOut: make([]int64, len(c.openOut)),
		Accepted: c.accepted.Load(), Dialed: c.dialed.Load(), HandshakeFailures: c.handshakeFailures.Load(),
		MessagesIn: c.msgsIn.Load(), BytesIn: c.bytesIn.Load(), MessagesOut: c.msgsOut.Load(), BytesOut: c.bytesOut.Load(),
		WSUpgrades: c.wsUpgrades.Load(), WSRefused: c.wsRefused.Load(), WSPings: c.wsPings.Load(),
		WSForwarded: c.wsForwarded.Load()}
	for i := range c.openIn {
		s.OpenIn[i], s.OpenOut[i] = c.openIn[i].Load(), c.openOut[i].Load()
	}
	for i := range c.closed {
		s.Closed[i] = c.closed[i].Load()
	}
	for i := range c.limits {
		s.LimitHits[i] = c.limits[i].Load()
	}
	return s
}

// countOpen adds delta to the open connections of c's listener and
// direction, and to the process's count (Layout.Conns).
func (s *Server) countOpen(c *conn, delta int64) {
	if c.outbound {
		s.count.openOut[c.listener].Add(delta)
	} else {
		s.count.openIn[c.listener].Add(delta)
	}
	if s.layout.Conns != nil {
		s.layout.Conns.Add(delta)
	}
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats { return s.count.snapshot() }

// Collector returns a prometheus.Collector of the servers' counters, each
// labelled with its transport (tcp, tls). Register one Collector for all
// the stream servers of the process (the names would clash otherwise):
//
//	viaduct_stream_connections{transport,direction,listener}   gauge: open connections (direction in|out)
//	viaduct_stream_accepted_total{transport}                   connections accepted
//	viaduct_stream_dialed_total{transport}                     outbound connections established
//	viaduct_stream_closed_total{transport,reason}              connections closed, by CloseReason
//	viaduct_stream_limit_hits_total{transport,limit}           refusals, by Limit
//	viaduct_stream_messages_total{transport,direction}         messages received (in) and sent (out)
//	viaduct_stream_bytes_total{transport,direction}            their bytes
//	viaduct_tls_handshake_failures_total                        failed TLS handshakes
//	viaduct_websocket_upgrades_total{transport,result}          WebSocket upgrades (ws, wss), accepted or refused
//	viaduct_websocket_pings_total{transport}                    keepalive pings sent to idle WebSocket clients
//	viaduct_websocket_forwarded_total{transport}                connections whose client address a trusted proxy gave
func Collector(servers ...*Server) prometheus.Collector {
	return &collector{servers: servers,
		conns:      prometheus.NewDesc("viaduct_stream_connections", "Open TCP/TLS connections, by direction (in: accepted, out: dialled) and listener.", []string{"transport", "direction", "listener"}, nil),
		accepted:   prometheus.NewDesc("viaduct_stream_accepted_total", "TCP/TLS connections accepted.", []string{"transport"}, nil),
		dialed:     prometheus.NewDesc("viaduct_stream_dialed_total", "Outbound TCP/TLS connections established.", []string{"transport"}, nil),
		closed:     prometheus.NewDesc("viaduct_stream_closed_total", "TCP/TLS connections closed, by reason.", []string{"transport", "reason"}, nil),
		limits:     prometheus.NewDesc("viaduct_stream_limit_hits_total", "Connections or sends refused by a limit.", []string{"transport", "limit"}, nil),
		messages:   prometheus.NewDesc("viaduct_stream_messages_total", "SIP messages received (in) and sent (out) over TCP/TLS.", []string{"transport", "direction"}, nil),
		bytes:      prometheus.NewDesc("viaduct_stream_bytes_total", "Bytes of SIP messages received (in) and sent (out) over TCP/TLS.", []string{"transport", "direction"}, nil),
		handshakes: prometheus.NewDesc("viaduct_tls_handshake_failures_total", "TLS handshakes failed or timed out.", nil, nil),
		upgrades:   prometheus.NewDesc("viaduct_websocket_upgrades_total", "WebSocket upgrade requests, by result (accepted: 101; refused: an HTTP error).", []string{"transport", "result"}, nil),
		pings:      prometheus.NewDesc("viaduct_websocket_pings_total", "Keepalive pings sent to idle WebSocket clients.", []string{"transport"}, nil),
		forwarded:  prometheus.NewDesc("viaduct_websocket_forwarded_total", "WebSocket connections whose client address came from a trusted proxy (X-Forwarded-For or PROXY protocol).", []string{"transport"}, nil),
	}
}

type collector struct {
	servers                                                              []*Server
	conns, accepted, dialed, closed, limits, messages, bytes, handshakes *prometheus.Desc
	upgrades, pings, forwarded                                           *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.conns, c.accepted, c.dialed, c.closed, c.limits, c.messages, c.bytes, c.handshakes,
		c.upgrades, c.pings, c.forwarded} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	var handshakeFailures uint64
	for _, s := range c.servers {
		st, kind := s.Stats(), s.kind.String()
		for li := range st.OpenIn {
			l := strconv.Itoa(li)
			ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(st.OpenIn[li]), kind, "in", l)
			ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(st.OpenOut[li]), kind, "out", l)
		}
		ch <- prometheus.MustNewConstMetric(c.accepted, prometheus.CounterValue, float64(st.Accepted), kind)
		ch <- prometheus.MustNewConstMetric(c.dialed, prometheus.CounterValue, float64(st.Dialed), kind)
		for r, v := range st.Closed {
			ch <- prometheus.MustNewConstMetric(c.closed, prometheus.CounterValue, float64(v), kind, CloseReason(r).String())
		}
		for l, v := range st.LimitHits {
			ch <- prometheus.MustNewConstMetric(c.limits, prometheus.CounterValue, float64(v), kind, Limit(l).String())
		}
		ch <- prometheus.MustNewConstMetric(c.messages, prometheus.CounterValue, float64(st.MessagesIn), kind, "in")
		ch <- prometheus.MustNewConstMetric(c.messages, prometheus.CounterValue, float64(st.MessagesOut), kind, "out")
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(st.BytesIn), kind, "in")
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(st.BytesOut), kind, "out")
		handshakeFailures += st.HandshakeFailures
		if s.ws {
			ch <- prometheus.MustNewConstMetric(c.upgrades, prometheus.CounterValue, float64(st.WSUpgrades), kind, "accepted")
			ch <- prometheus.MustNewConstMetric(c.upgrades, prometheus.CounterValue, float64(st.WSRefused), kind, "refused")
			ch <- prometheus.MustNewConstMetric(c.pings, prometheus.CounterValue, float64(st.WSPings), kind)
			ch <- prometheus.MustNewConstMetric(c.forwarded, prometheus.CounterValue, float64(st.WSForwarded), kind)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.handshakes, prometheus.CounterValue, float64(handshakeFailures))
}
