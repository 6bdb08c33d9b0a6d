// Package edge is Viaduct's security room: what a proxy on a public address
// needs before the forwarding core sees a datagram.
//
//   - Access lists: CIDR allow, deny and trusted lists and a blocklist file
//     (an APIBAN or VoIPBL export), in one prefix table swapped atomically on
//     reload and looked up without allocation, on the raw datagram (or, for
//     stream transports, before a connection is accepted: Guard.Gate).
//   - Per-source rate limits (REGISTER, INVITE, other methods) in a table of
//     fixed size (Table), so that a flood from millions of spoofed sources
//     cannot grow memory; sustained violation escalates to a ban.
//   - Bans with a TTL (Bans), added by the rate limits, by the scanner rule
//     or through the admin API, kept across reloads.
//   - A scanner drop: requests whose User-Agent names a known scanner.
//   - Gateway protection: per-upstream caps on new calls per second
//     (Guard.AdmitCall, the core's CallAdmitter).
//
// Every rule has a mode: enforce, log_only (count what would be dropped,
// drop nothing) or off. Guard is the shared state of all of it; Guard.Stage
// is the transport.Stage that runs the rules on every worker.
package edge
