// Package admin serves Viaduct's administrative HTTP API.
//
// It is an http.Handler built from small interfaces, so that each part of
// Viaduct contributes what it knows and cmd/viaduct wires them together.
// The upstream endpoints are:
//
//	GET  /api/v1/upstreams              every target, as JSON
//	GET  /api/v1/upstreams/{id}         one target
//	POST /api/v1/upstreams/{id}/drain   admin state draining: no new dialogs,
//	                                    in-dialog requests still delivered
//	POST /api/v1/upstreams/{id}/disable admin state disabled: no traffic
//	POST /api/v1/upstreams/{id}/enable  admin state enabled
//
// {id} is the target's ID as configured (default "udp:10.0.0.1:5060");
// percent-encode it when it contains characters such as '[' or '/'.
// A POST answers 200 with the target's new state, 404 for an unknown ID;
// a wrong method gets 405. When Options.Token is set, every request must
// carry "Authorization: Bearer <token>" or gets 401.
//
// Admin states are separate from health: changing one never changes the
// other, and probes never change an admin state (see package health).
//
// More endpoints (metrics, readiness, reload) are added with Handler.Handle.
package admin

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/health"
)

// Upstreams is what the upstream endpoints read and change.
// *health.Checker satisfies it.
type Upstreams interface {
	// Status returns every target's state, in configuration order.
	Status() []health.Status
	// SetAdmin sets a target's admin state; by says who asked. An
	// unknown ID is an error wrapping balancer.ErrUnknownTarget.
	SetAdmin(id string, a balancer.AdminState, by string) error
}

// Options configures a Handler.
type Options struct {
	// Upstreams serves /api/v1/upstreams; nil leaves those endpoints out
	// (404).
	Upstreams Upstreams
	// Token, when not empty, is the bearer token every request must
	// carry. Set it whenever the admin address is not loopback.
	Token string
	// Logger receives one line per state-changing request; nil discards.
	Logger *slog.Logger
}

// Handler is the admin API. Create it with New; it is safe for concurrent
// use.
type Handler struct {
	mux   *http.ServeMux
	ups   Upstreams
	token []byte
	log   *slog.Logger
}

// New returns the admin API handler for o.
func New(o Options) *Handler {
	h := &Handler{mux: http.NewServeMux(), ups: o.Upstreams, log: o.Logger}
	if o.Token != "" {
		h.token = []byte(o.Token)
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.ups != nil {
		h.mux.HandleFunc("GET /api/v1/upstreams", h.listUpstreams)
		h.mux.HandleFunc("GET /api/v1/upstreams/{id}", h.getUpstream)
		h.mux.HandleFunc("POST /api/v1/upstreams/{id}/drain", h.setAdmin(balancer.Draining))
		h.mux.HandleFunc("POST /api/v1/upstreams/{id}/disable", h.setAdmin(balancer.Disabled))
		h.mux.HandleFunc("POST /api/v1/upstreams/{id}/enable", h.setAdmin(balancer.Enabled))
	}
	return h
}

// Handle registers handler for pattern (net/http.ServeMux syntax, e.g.
// "GET /metrics"), behind the same token check as the built-in endpoints.
// It panics if pattern conflicts with a registered one, as ServeMux does.
func (h *Handler) Handle(pattern string, handler http.Handler) {
	h.mux.Handle(pattern, handler)
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.token != nil && !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="viaduct"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) authorized(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(tok), h.token) == 1
}

// Upstream is the JSON form of one target in the upstream endpoints.
type Upstream struct {
	ID                   string    `json:"id"`
	Address              string    `json:"address"`
	Health               string    `json:"health"`
	HealthReason         string    `json:"health_reason"`
	HealthSince          time.Time `json:"health_since"`
	Admin                string    `json:"admin"`
	AdminSince           time.Time `json:"admin_since"`
	Probed               bool      `json:"probed"`
	ProbeIntervalSeconds float64   `json:"probe_interval_seconds,omitempty"`
	ProbeTimeoutSeconds  float64   `json:"probe_timeout_seconds,omitempty"`
	DetectionSeconds     float64   `json:"detection_bound_seconds,omitempty"`
	LastProbe            time.Time `json:"last_probe,omitzero"`
	LastResult           string    `json:"last_result,omitempty"`
	LastCode             int       `json:"last_code,omitempty"`
	RTTSeconds           float64   `json:"rtt_seconds"`
	RTTAvgSeconds        float64   `json:"rtt_avg_seconds"`
	ConsecutiveFailures  int       `json:"consecutive_failures"`
	ConsecutiveSuccesses int       `json:"consecutive_successes"`
	ProbesSent           uint64    `json:"probes_sent"`
	ProbesOK             uint64    `json:"probes_ok"`
	ProbeTimeouts        uint64    `json:"probe_timeouts"`
	ProbeBadCode         uint64    `json:"probe_bad_code"`
	ProbeSendErrors      uint64    `json:"probe_send_errors"`
	Passive503Bursts     uint64    `json:"passive_503_bursts"`
}

// UpstreamFromStatus converts a health.Status to its JSON form.
func UpstreamFromStatus(s health.Status) Upstream {
	u := Upstream{
		ID:                   s.ID,
		Address:              s.Addr.String(),
		Health:               s.Health.String(),
		HealthReason:         s.HealthReason,
		HealthSince:          s.HealthSince.UTC(),
		Admin:                s.Admin.String(),
		AdminSince:           s.AdminSince.UTC(),
		Probed:               !s.Probe.NeverProbe,
		LastResult:           s.LastResult,
		LastCode:             s.LastCode,
		RTTSeconds:           s.RTT.Seconds(),
		RTTAvgSeconds:        s.RTTAvg.Seconds(),
		ConsecutiveFailures:  s.ConsecutiveFailures,
		ConsecutiveSuccesses: s.ConsecutiveSuccesses,
		ProbesSent:           s.ProbesSent,
		ProbesOK:             s.ProbesOK,
		ProbeTimeouts:        s.ProbeTimeouts,
		ProbeBadCode:         s.ProbeBadCode,
		ProbeSendErrors:      s.SendErrors,
		Passive503Bursts:     s.Passive503,
	}
	if !s.LastProbe.IsZero() {
		u.LastProbe = s.LastProbe.UTC()
	}
	if u.Probed {
		u.ProbeIntervalSeconds = s.Probe.Interval.Seconds()
		u.ProbeTimeoutSeconds = s.Probe.Timeout.Seconds()
		u.DetectionSeconds = s.Probe.DetectionBound().Seconds()
	}
	return u
}

// UpstreamList is the JSON body of GET /api/v1/upstreams.
type UpstreamList struct {
	Upstreams []Upstream `json:"upstreams"`
}

func (h *Handler) listUpstreams(w http.ResponseWriter, r *http.Request) {
	st := h.ups.Status()
	out := UpstreamList{Upstreams: make([]Upstream, len(st))}
	for i, s := range st {
		out.Upstreams[i] = UpstreamFromStatus(s)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) find(id string) (Upstream, bool) {
	for _, s := range h.ups.Status() {
		if s.ID == id {
			return UpstreamFromStatus(s), true
		}
	}
	return Upstream{}, false
}

func (h *Handler) getUpstream(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	u, ok := h.find(id)
	if !ok {
		writeError(w, http.StatusNotFound, "unknown upstream "+quote(id))
		return
	}
	writeJSON(w, http.StatusOK, u)
}

func (h *Handler) setAdmin(a balancer.AdminState) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		by := "admin API " + r.RemoteAddr
		if err := h.ups.SetAdmin(id, a, by); err != nil {
			if errors.Is(err, balancer.ErrUnknownTarget) {
				writeError(w, http.StatusNotFound, "unknown upstream "+quote(id))
				return
			}
			h.log.Error("admin state change failed", "target", id, "admin", a.String(), "by", by, "err", err)
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		u, ok := h.find(id)
		if !ok { // removed by a concurrent reload
			writeError(w, http.StatusNotFound, "unknown upstream "+quote(id))
			return
		}
		writeJSON(w, http.StatusOK, u)
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// writeJSON writes v with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encoding JSON: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// writeError writes {"error": msg}.
func writeError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}
