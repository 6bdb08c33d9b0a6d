// Package wslib holds measurements, not production code: benchmarks and
// tests that compare WebSocket libraries for Viaduct's SIP over WebSocket
// transport (RFC 7118) on the server side.
//
// Candidates: github.com/gobwas/ws (low-level API and wsutil),
// github.com/gorilla/websocket and github.com/coder/websocket.
// See RESULTS.md for the figures and the recommendation.
package wslib
