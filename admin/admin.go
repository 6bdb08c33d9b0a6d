// Package admin serves Viaduct's administrative HTTP API.
//
// It is an http.Handler built from small interfaces, so that each part of
// Viaduct contributes what it knows and cmd/viaduct wires them together.
// The endpoints are:
//
//	GET  /                              status page (HTML): readiness, the pool, the counters
//	GET  /healthz                       200 "ok" while the process serves HTTP (liveness)
//	GET  /readyz                        200 "ready", or 503 with the reasons: not listening yet,
//	                                    shutting down, or no upstream can take new dialogs
//	GET  /metrics                       Prometheus metrics (Options.Metrics)
//	GET  /api/v1/upstreams              every target, as JSON
//	GET  /api/v1/upstreams/{id}         one target
//	POST /api/v1/upstreams/{id}/drain   admin state draining: no new dialogs,
//	                                    in-dialog requests still delivered
//	POST /api/v1/upstreams/{id}/disable admin state disabled: no traffic
//	POST /api/v1/upstreams/{id}/enable  admin state enabled
//	GET  /api/v1/connections            TCP and TLS connections per listener and per upstream
//
// With Options.StateFile the admin states are saved after every change,
// so that the program can restore them when it starts again.
//
// {id} is the target's ID as configured (default "udp:10.0.0.1:5060");
// percent-encode it when it contains characters such as '[' or '/'.
// A POST answers 200 with the target's new state, 404 for an unknown ID;
// a wrong method gets 405.
//
// # Access
//
// The admin address is loopback by default (127.0.0.1:9090, see Listen).
// When Options.Token is set, every request except /healthz and /readyz must
// carry "Authorization: Bearer <token>" or gets 401; the probes stay open so
// that a load balancer or an orchestrator can poll them, and they tell
// nothing but up or down. Listen refuses a non-loopback address without a
// token.
//
// Admin states are separate from health: changing one never changes the
// other, and probes never change an admin state (see package health).
//
// More endpoints (reload, ...) are added with Handler.Handle.
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
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/health"
	"github.com/viaduct-sip/viaduct/internal/httpjson"
	"github.com/viaduct-sip/viaduct/metrics"
	"github.com/viaduct-sip/viaduct/transport"
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

// Pool is the balancer pool the upstream endpoints, the status page and
// /readyz read weights, priorities and selection from. *balancer.Pool
// satisfies it.
type Pool interface {
	// Table returns the current lookup table.
	Table() *balancer.Table
}

// Engine is the fast path whose counters the status page shows.
// *fastpath.Engine satisfies it.
type Engine interface {
	// Stats returns the counters summed over the workers.
	Stats() fastpath.Stats
}

// Options configures a Handler. Every source is optional: what is nil is
// left out of the pages (and /metrics answers 404 without Metrics).
type Options struct {
	// Upstreams serves /api/v1/upstreams (health, probes, admin
	// changes). Without it the upstream endpoints list the Pool's targets
	// and change their admin state on the Pool; without either they are
	// left out (404).
	Upstreams Upstreams
	// Pool adds weight, priority and selection to the upstreams, and
	// /readyz requires one of its targets to take new dialogs.
	Pool Pool
	// Forwarded adds the requests forwarded to each upstream (and, on the
	// status page, the responses relayed from each); nil means the
	// Engine's when it implements metrics.UpstreamStats.
	Forwarded metrics.UpstreamStats
	// Engine gives the status page its counters.
	Engine Engine
	// Reloads gives the status page the configuration hash and reloads.
	Reloads *metrics.Reloads
	// Metrics is served on GET /metrics (metrics.Handler).
	Metrics http.Handler
	// Ready is the process's readiness for /readyz; nil means listening
	// and not shutting down (only the upstreams are checked).
	Ready *Readiness
	// Token, when not empty, is the bearer token every request but
	// /healthz and /readyz must carry. Required when the admin address
	// is not loopback (see Listen).
	Token string
	// Logger receives one line per state-changing request; nil discards.
	Logger *slog.Logger
	// Connections, when set, gives GET /api/v1/connections and the
	// status page the TCP and TLS connections open now.
	Connections func() Connections
	// StateFile, when set, receives the admin states of every target
	// after each change made through the API (see StateFile); a change
	// that cannot be saved is answered 500, saying so (it is in force).
	StateFile *StateFile
}

// Handler is the admin API. Create it with New; it is safe for concurrent
// use.
type Handler struct {
	mux     *http.ServeMux
	ups     Upstreams
	pool    Pool
	fwd     metrics.UpstreamStats
	eng     Engine
	reloads *metrics.Reloads
	ready   *Readiness
	token   []byte
	log     *slog.Logger
	states  *StateFile
	conns   func() Connections
	started time.Time
}

// New returns the admin API handler for o.
func New(o Options) *Handler {
	h := &Handler{
		mux: http.NewServeMux(), ups: o.Upstreams, pool: o.Pool, fwd: o.Forwarded,
		eng: o.Engine, reloads: o.Reloads, ready: o.Ready, log: o.Logger, states: o.StateFile, conns: o.Connections,
		started: time.Now(),
	}
	if h.fwd == nil {
		if us, ok := o.Engine.(metrics.UpstreamStats); ok {
			h.fwd = us
		}
	}
	if o.Token != "" {
		h.token = []byte(o.Token)
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.ready == nil {
		h.ready = new(Readiness)
		h.ready.SetListening(true)
	}
	h.mux.HandleFunc("GET /{$}", h.statusPage)
	h.mux.HandleFunc("GET /healthz", h.healthz)
	h.mux.HandleFunc("GET /readyz", h.readyz)
	if o.Metrics != nil {
		h.mux.Handle("GET /metrics", o.Metrics)
	}
	if h.conns != nil {
		h.mux.HandleFunc("GET /api/v1/connections", h.connections)
	}
	if h.ups != nil || h.pool != nil {
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
	if h.token != nil && r.URL.Path != "/healthz" && r.URL.Path != "/readyz" && !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="viaduct"`)
		httpjson.Error(w, http.StatusUnauthorized, "missing or wrong bearer token")
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
// Weight, priority, selection and share come from the pool (zero without
// one), requests_forwarded from the engine's counters (absent when not
// counted), the probe fields from the health checker.
type Upstream struct {
	ID                   string    `json:"id"`
	Address              string    `json:"address"`
	Transport            string    `json:"transport"`
	Weight               int       `json:"weight"`
	Priority             int       `json:"priority"`
	NewDialogs           bool      `json:"new_dialogs"`
	InDialog             bool      `json:"in_dialog"`
	Share                float64   `json:"share"`
	RequestsForwarded    *uint64   `json:"requests_forwarded,omitempty"`
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
		Transport:            transport.UDP.String(),
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

// upstreams merges what the checker, the pool and the engine know about
// every target: the pool's targets in configuration order (the checker's
// when there is no pool).
func (h *Handler) upstreams() []Upstream {
	var st []health.Status
	if h.ups != nil {
		st = h.ups.Status()
	}
	if h.pool == nil {
		out := make([]Upstream, len(st))
		for i, s := range st {
			out[i] = UpstreamFromStatus(s)
		}
		return out
	}
	byID := make(map[string]*health.Status, len(st))
	for i := range st {
		byID[st[i].ID] = &st[i]
	}
	var fwd map[uint64]uint64
	if h.fwd != nil {
		fwd = map[uint64]uint64{}
		for _, c := range h.fwd.AppendUpstreamForwarded(nil) {
			fwd[c.IDHash] += c.Count
		}
	}
	snap := h.pool.Table().Snapshot()
	out := make([]Upstream, len(snap))
	for i, t := range snap {
		var u Upstream
		if s, ok := byID[t.ID]; ok {
			u = UpstreamFromStatus(*s)
		} else {
			u = Upstream{ID: t.ID, Address: t.Addr.String()}
		}
		// The pool's states are the ones the balancer acts on.
		u.Health, u.Admin = t.Health.String(), t.Admin.String()
		u.Transport = t.Transport
		u.Weight, u.Priority = t.Weight, t.Priority
		u.NewDialogs, u.InDialog, u.Share = t.NewDialogs, t.InDialog, t.Share
		if fwd != nil {
			n := fwd[t.IDHash()]
			u.RequestsForwarded = &n
		}
		out[i] = u
	}
	return out
}

func (h *Handler) listUpstreams(w http.ResponseWriter, r *http.Request) {
	httpjson.Write(w, http.StatusOK, UpstreamList{Upstreams: h.upstreams()})
}

func (h *Handler) find(id string) (Upstream, bool) {
	for _, u := range h.upstreams() {
		if u.ID == id {
			return u, true
		}
	}
	return Upstream{}, false
}

// adminSetter is a pool that takes admin states (*balancer.Pool), used
// when there is no health checker.
type adminSetter interface {
	SetAdmin(id string, a balancer.AdminState) error
}

// doSetAdmin changes the admin state of target id and, with a state file,
// saves the states of every target.
func (h *Handler) doSetAdmin(id string, a balancer.AdminState, by string) error {
	if h.states == nil {
		return h.setAdminNow(id, a, by)
	}
	return h.states.Change(func() error { return h.setAdminNow(id, a, by) }, h.adminStates)
}

// adminStates returns every target's admin state, for the state file.
func (h *Handler) adminStates() map[string]SavedState {
	out := map[string]SavedState{}
	if h.ups != nil {
		for _, s := range h.ups.Status() {
			out[s.ID] = SavedState{Admin: s.Admin, Since: s.AdminSince}
		}
		return out
	}
	for _, t := range h.pool.Table().Snapshot() {
		out[t.ID] = SavedState{Admin: t.Admin}
	}
	return out
}

func (h *Handler) setAdminNow(id string, a balancer.AdminState, by string) error {
	if h.ups != nil {
		return h.ups.SetAdmin(id, a, by)
	}
	p, ok := h.pool.(adminSetter)
	if !ok {
		return errors.New("admin: the pool does not take admin states")
	}
	if err := p.SetAdmin(id, a); err != nil {
		return err
	}
	h.log.Info("admin state changed", "target", id, "admin", a.String(), "by", by)
	return nil
}

func (h *Handler) getUpstream(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	u, ok := h.find(id)
	if !ok {
		httpjson.Error(w, http.StatusNotFound, "unknown upstream "+quote(id))
		return
	}
	httpjson.Write(w, http.StatusOK, u)
}

func (h *Handler) setAdmin(a balancer.AdminState) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		by := "admin API " + r.RemoteAddr
		if err := h.doSetAdmin(id, a, by); err != nil {
			if errors.Is(err, balancer.ErrUnknownTarget) {
				httpjson.Error(w, http.StatusNotFound, "unknown upstream "+quote(id))
				return
			}
			h.log.Error("admin state change failed", "target", id, "admin", a.String(), "by", by, "err", err)
			httpjson.Error(w, http.StatusInternalServerError, err.Error())
			return
		}
		u, ok := h.find(id)
		if !ok { // removed by a concurrent reload
			httpjson.Error(w, http.StatusNotFound, "unknown upstream "+quote(id))
			return
		}
		httpjson.Write(w, http.StatusOK, u)
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
