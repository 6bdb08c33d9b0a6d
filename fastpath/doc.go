// Package fastpath is Viaduct's stateless SIP forwarding engine over UDP
// (RFC 3261 16.11, with the request processing of 16.3-16.6, the transport
// rules of 18, RFC 3581 and RFC 2543 compatibility).
//
// # Structure
//
// An Engine owns Config.Workers workers per listen address. Each worker is
// one goroutine with its own SO_REUSEPORT socket (package fastpath/udp), one
// parser.Message, one read batch, one write batch per listen address and its
// own output buffers; it loops over
//
//	recvmmsg -> Handle each datagram into its own buffer -> WriteBatch (sendmmsg)
//
// inside one udp.Conn.ReadLoop (which parks the worker after a batch that
// emptied the socket, without a further recvmmsg to hear EAGAIN), with no
// lock, channel or atomic read-modify-write per message (the
// balancer's table pointer is one atomic load; counters are single-writer
// stores). Messages of one flow arrive on one socket, are handled in order
// and written in order in the same batch, so a call's 180 never overtakes
// its 200. Worker.Handle is the whole per-message path without the socket
// and is exported so tests, benchmarks and fuzzers can drive it; it
// allocates nothing.
//
// # Requests
//
// A request is parsed and validated; a malformed one is answered with a
// stateless 400 whose reason phrase names the fault (505 for another SIP
// version), when its top Via can be answered to, and dropped otherwise.
// ACKs and responses are never answered. Then, in order:
//
//   - A message over Config.MaxMessageSize gets 513.
//   - Route preprocessing (16.4): a Request-URI that is Viaduct's own
//     Record-Route URI (with lr) was put there by a strict router: it is
//     replaced by the last Route value, which is removed. A top Route naming
//     Viaduct is removed.
//   - OPTIONS addressed to Viaduct itself (its address, no user part, no
//     Route left) is answered 200 (keepalive), also with Max-Forwards 0.
//   - Max-Forwards 0 gets 483; otherwise it is decremented, or inserted as
//     70 when absent.
//   - Loop detection (16.3 item 4): a Via of Viaduct's whose branch carries
//     the same loop hash (over Request-URI, Route, Proxy-Require,
//     Proxy-Authorization) means a loop: 482. A different hash is a spiral
//     and is forwarded.
//   - Destination: a request from a configured upstream (exact ip:port) goes
//     to its next Route, else its Request-URI; a host name there is asked
//     of Config.NextHops (503 without one, see NextHopResolver). A request of
//     an existing dialog whose next hop names an upstream by IP address
//     and port goes to that upstream (see Dialogs below). Every other
//     request is balanced: it goes to the upstream the pool chooses for it
//     (see Balancing below), or gets 503 when none is available. Clients
//     therefore cannot make Viaduct send anywhere but to an upstream: it
//     is not an open relay.
//   - The previous hop's Via gets received and rport (RFC 3581); Viaduct's
//     Via goes on top with a branch derived only from the request (see
//     below); Record-Route is added to dialog-forming requests when
//     configured, and so is Path, with the client's address, to a
//     client's REGISTER (Config.Path). A request from an upstream whose
//     top Route is such a Path entry of Viaduct's goes to the recorded
//     address instead of its next hop.
//
// # Balancing
//
// The engine's balancer.Pool (Engine.Pool) holds the upstreams as targets
// with their IDs, weights and priorities (Config.Targets, or Config.Upstreams
// with weight 1 and IDs "udp:ADDR"); health checks and admin actions change
// their states on the pool, which publishes a new table, and the next
// request sees it (one atomic load, no lock).
//
// In the default mode, balancer.ModeHash, a request goes to the target that
// weighted consistent hashing assigns to its key. Config.Keys names the key
// per method:
//
//   - call-id: the Call-ID (default for every method but REGISTER): a
//     call's requests, its CANCEL and its retransmissions all reach one
//     upstream.
//   - to-aor: the To URI's user@host (default for REGISTER): every
//     REGISTER of one address of record reaches one registrar, whatever
//     its Call-ID.
//   - from-uri: the From URI's user@host.
//   - ruri-user: the Request-URI's user part (a tel URI's number).
//   - ruri-aor: the Request-URI's user@host, normalised as to-aor's: an
//     INVITE to a user reaches the registrar that to-aor sent the user's
//     REGISTERs to (registrars that do not share their location table).
//   - header:NAME: the value of the first NAME header line (its compact
//     form counts as the same header), as written.
//
// CANCEL and ACK always hash INVITE's key, so that they reach the INVITE's
// upstream. Keys other than call-id suit methods that create no dialog
// (REGISTER, MESSAGE, PUBLISH, OPTIONS): the From of a BYE the callee sends
// is the callee, so from-uri on INVITE would split a call's requests. The
// exception is ruri-aor on requests that address a registered user
// (INVITE, SUBSCRIBE, REFER) in front of registrars that do not share
// their location table: only the registrar holding the callee can route
// the request, and its Record-Route keeps the rest of the dialog there
// (in-dialog requests follow the upstream they name, below).
//
// AORs are hashed as user@host with the user part unescaped and the host
// lower-cased, without scheme, port or parameters (a URI without a user
// part: the host alone), so sip:Alice@Example.COM:5060;transport=udp and
// sips:Alice@example.com are one AOR; only sip and sips URIs have one. A
// request that lacks its key is hashed on its Call-ID and counted in
// Stats.KeyFallbacks.
//
// A request is picked as part of an existing dialog (balancer.Table.Pick's
// inDialog: a draining target still takes it) when it carries a To tag,
// except CANCEL and an ACK without Route header: both belong to the
// INVITE's transaction and must go where the INVITE went. Without state an
// ACK of a 2xx response and an ACK of a non-2xx response differ only by
// their route set (the former follows the dialog's route set, the latter
// copies the INVITE's Route headers): an ACK with a To tag and a Route
// header is in-dialog, one without Route is taken for a non-2xx ACK. This
// matters only for a key that hashes to a draining target; there a 2xx
// ACK without Route (a client that sends in-dialog requests to Viaduct as
// its outbound proxy, without Record-Route) goes where a new dialog would.
//
// In balancer.ModeRoundRobin every balanced request goes to the next
// target of a smooth weighted cycle (one cursor per worker): no key is
// hashed and there is no affinity at all, so retransmissions, CANCEL, ACK
// and in-dialog requests may reach another upstream than their INVITE.
// Use it only when any upstream can handle any request (upstreams that
// share transaction and dialog state, or stateless next hops).
//
// # Dialogs
//
// Hashing sends a key to the same upstream only while the set of targets
// stays the same: a call set up while its key's upstream drained or was
// down lives on another upstream, and once the key's upstream is back its
// in-dialog requests would hash there. So an in-dialog request (as above)
// from a client first looks at its next hop, as a stateful proxy would
// route it (RFC 3261 16.6 items 6 and 7): the next Route value once
// Viaduct's own is removed, else the Request-URI. When that names a
// configured upstream by IP address and port (or maddr; port 5060 when
// absent) and that upstream takes in-dialog requests (up, and enabled or
// draining), the request goes there, whatever its key hashes to, in both
// modes; Stats.DialogRouted counts it. The next hop names the upstream
// when the upstream Record-Routes itself, or when it is the dialog's
// remote target (its Contact: a B2BUA, PBX or SBC) and Viaduct is in the
// route set (Config.RecordRoute) or is the client's outbound proxy. A next
// hop that is not an upstream (a callee behind an upstream proxy that does
// not Record-Route, a host name), or an upstream that is down or disabled,
// leaves the request to balancing as before. Initial requests, CANCEL and
// non-2xx ACK never look at it, so a client can choose an upstream only
// for requests that the upstream answers within an existing dialog, and
// never a destination that is not an upstream. With Config.Picker the
// Picker alone decides.
//
// # Reload
//
// Engine.Update replaces the targets and the key policy while the workers
// run: the pool is updated in place (targets that remain, by ID, keep their
// health and admin states and their keys' mapping), and the upstream set
// and the compiled key policy are published together as one immutable value
// behind an atomic pointer, which a worker loads once at the start of each
// request. Nothing on the fast path waits for a reload, allocates because
// of one, or sees half of one. Listen addresses, workers, buffers, the
// balancing mode and the secret belong to the sockets and the pool's
// construction and need a new Engine.
//
// # The branch
//
// "z9hG4bKvd1" + listen index + 64-bit transaction key + 40-bit loop hash +
// 64-bit MAC, all base32. The transaction key comes from the client's
// branch and sent-by (RFC 3261 clients) or from Request-URI, To tag (not for
// ACK), From tag, Call-ID, CSeq number and top Via (RFC 2543 clients), never
// from the method: retransmissions, CANCEL and the ACK of a non-2xx response
// get the INVITE's branch and, hashing the same key (the Call-ID by
// default), reach the same upstream. The MAC (SipHash-2-4 keyed from Config.Secret) covers the branch
// and the previous hop's via-parm as forwarded.
//
// # Responses
//
// A response is forwarded only if its top Via carries Viaduct's sent-by and
// a branch whose MAC matches the via-parm below it; any other response is
// dropped and counted as forged (Kamailio and OpenSIPS forward such replies
// by default; Viaduct cannot be used as a reflector). Viaduct's via-parm is
// removed and the response goes to the next Via's maddr, else its received
// address (and rport port), else its sent-by (port 5060 by default), from the
// listen address the request came in on when the address family allows. A
// response with no Via below Viaduct's answers a request Viaduct sent itself
// (Engine.AppendVia, Engine.SendFrom) and goes to the LocalResponseHandler.
//
// # Local replies
//
// 400, 482, 483, 503, 505, 513 and the 200 to OPTIONS are built statelessly
// (RFC 3261 8.2.6, 16.11): all Via lines (received and rport added to the
// top one), From, To with a deterministic tag, Call-ID, CSeq and
// Content-Length 0, sent to the request's source address at the rport or
// sent-by port (a maddr in the request is ignored, to avoid reflection).
//
// # SO_REUSEPORT and one busy peer
//
// The kernel picks the socket of a reuse-port group by a hash of the
// 4-tuple, so all datagrams from one source address and port land on one
// worker. With one SIPp UAC and two UAS instances in front of four workers,
// 3000 calls gave datagrams per worker of [9000 0 9000 0]: the UAC's
// requests on one worker, both UAS's responses on another (the hash put
// them together), two workers idle. A single heavy peer (one SBC, one
// upstream proxy sending from one port) is therefore served by one core.
// This is the price of per-flow order for free: one socket, one reader, in
// arrival order. Spreading one source over cores would need a dispatch
// stage keyed by Call-ID (hand-off queues between workers, or a BPF
// program that hashes the Call-ID), which costs a cross-core hand-off per
// message; Viaduct does not do it.
package fastpath
