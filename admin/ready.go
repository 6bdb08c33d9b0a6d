package admin

import (
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/viaduct-sip/viaduct/balancer"
)

// Readiness is the part of /readyz that the process decides: whether its
// sockets are listening and whether it is shutting down. cmd/viaduct calls
// SetListening(true) once the fast path has started and SetShuttingDown on
// SIGTERM, before the drain period, so that a load balancer polling /readyz
// stops sending new traffic while in-flight transactions still complete.
// The zero value is not listening and not shutting down; it is safe for
// concurrent use.
type Readiness struct {
	listening    atomic.Bool
	shuttingDown atomic.Bool
}

// SetListening records whether the SIP sockets are open.
func (r *Readiness) SetListening(v bool) { r.listening.Store(v) }

// SetShuttingDown marks the process as shutting down: /readyz answers 503
// from now on.
func (r *Readiness) SetShuttingDown() { r.shuttingDown.Store(true) }

// ShuttingDown reports whether SetShuttingDown was called.
func (r *Readiness) ShuttingDown() bool { return r.shuttingDown.Load() }

// Listening reports the last SetListening value.
func (r *Readiness) Listening() bool { return r.listening.Load() }

// notReady returns why the process is not ready, or nothing.
func (h *Handler) notReady() []string {
	var why []string
	if !h.ready.Listening() {
		why = append(why, "not listening")
	}
	if h.ready.ShuttingDown() {
		why = append(why, "shutting down")
	}
	if h.pool != nil {
		why = append(why, upstreamsNotReady(h.pool.Table())...)
	}
	return why
}

// upstreamsNotReady says why the pool's table cannot serve new dialogs as
// it should. In panic mode (every upstream down, forwarded to anyway) the
// process is not ready either: it still forwards what reaches it, but a
// load balancer polling /readyz should prefer an instance with a healthy
// upstream.
func upstreamsNotReady(tab *balancer.Table) []string {
	if tab.Panic() {
		return []string{"every upstream is down: panic mode, forwarding to all of them anyway (health.all_down: forward)"}
	}
	if n, _ := tab.Live(false); n == 0 {
		if tab.AllDown() {
			return []string{"every upstream is down: requests are answered 503 (health.all_down: reject)"}
		}
		return []string{"no upstream can take new dialogs (all down, draining or disabled)"}
	}
	return nil
}

func (h *Handler) healthz(w http.ResponseWriter, r *http.Request) {
	writeText(w, http.StatusOK, "ok\n")
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	if why := h.notReady(); len(why) > 0 {
		writeText(w, http.StatusServiceUnavailable, "not ready: "+strings.Join(why, "; ")+"\n")
		return
	}
	writeText(w, http.StatusOK, "ready\n")
}

func writeText(w http.ResponseWriter, code int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write([]byte(s))
}
