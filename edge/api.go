package edge

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/viaduct-sip/viaduct/internal/httpjson"
)

// The admin API of the edge, mounted by cmd/viaduct on the admin Handler
// (which applies the bearer token to every endpoint):
//
//	GET    /api/v1/bans              the bans in force
//	POST   /api/v1/bans              add (or renew) a ban: {"prefix": "192.0.2.0/24", "ttl": "1h", "reason": "..."}
//	DELETE /api/v1/bans/{prefix...}  lift a ban (an address or a CIDR, such as 192.0.2.0/24)
//	GET    /api/v1/edge/top?n=20     the sources with the highest current request rates
//	GET    /api/v1/edge              the counters

// Routes returns the edge's endpoints by their http.ServeMux pattern.
func (g *Guard) Routes() map[string]http.Handler {
	return map[string]http.Handler{
		"GET /api/v1/bans":                http.HandlerFunc(g.listBans),
		"POST /api/v1/bans":               http.HandlerFunc(g.addBan),
		"DELETE /api/v1/bans/{prefix...}": http.HandlerFunc(g.removeBan),
		"GET /api/v1/edge/top":            http.HandlerFunc(g.top),
		"GET /api/v1/edge":                http.HandlerFunc(g.status),
	}
}

// BanRequest is the body of POST /api/v1/bans.
type BanRequest struct {
	Prefix string `json:"prefix"`
	// TTL is a Go duration ("90s", "1h"); empty means bans.ttl.
	TTL    string `json:"ttl"`
	Reason string `json:"reason"`
}

// maxBanTTL bounds a manual ban's TTL.
const maxBanTTL = 365 * 24 * time.Hour

func (g *Guard) listBans(w http.ResponseWriter, _ *http.Request) {
	httpjson.Write(w, http.StatusOK, struct {
		Bans []Ban `json:"bans"`
	}{g.bans.List()})
}

func (g *Guard) addBan(w http.ResponseWriter, r *http.Request) {
	var req BanRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		httpjson.Error(w, http.StatusBadRequest, "body: want {\"prefix\": \"192.0.2.0/24\", \"ttl\": \"1h\", \"reason\": \"...\"}: "+err.Error())
		return
	}
	p, err := ParsePrefix(req.Prefix)
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, "prefix: "+err.Error())
		return
	}
	ttl := g.rules.Load().banTTL
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl < time.Second || ttl > maxBanTTL {
			httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("ttl: want a duration from 1s to %v, such as 90s or 1h, got %q", maxBanTTL, req.TTL))
			return
		}
	}
	if err := g.bans.Add(p, ttl, OriginManual, req.Reason); err != nil {
		httpjson.Error(w, http.StatusConflict, err.Error())
		return
	}
	g.logger.Info("edge: source banned", "source", p.String(), "origin", "manual", "reason", req.Reason, "ttl", ttl, "by", r.RemoteAddr)
	for _, b := range g.bans.List() {
		if b.Prefix == p.String() {
			httpjson.Write(w, http.StatusCreated, b)
			return
		}
	}
	httpjson.Error(w, http.StatusInternalServerError, "ban added but not listed")
}

func (g *Guard) removeBan(w http.ResponseWriter, r *http.Request) {
	p, err := ParsePrefix(r.PathValue("prefix"))
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, "prefix: "+err.Error())
		return
	}
	if !g.bans.Remove(p) {
		httpjson.Error(w, http.StatusNotFound, "no ban of "+p.String())
		return
	}
	g.logger.Info("edge: ban lifted", "source", p.String(), "by", r.RemoteAddr)
	w.WriteHeader(http.StatusNoContent)
}

// maxTop bounds n of GET /api/v1/edge/top.
const maxTop = 1000

func (g *Guard) top(w http.ResponseWriter, r *http.Request) {
	n := 20
	if s := r.URL.Query().Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > maxTop {
			httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("n: want 1 to %d, got %q", maxTop, s))
			return
		}
		n = v
	}
	httpjson.Write(w, http.StatusOK, struct {
		Top []Talker `json:"top"`
	}{g.table.Top(n, g.clock.now())})
}

func (g *Guard) status(w http.ResponseWriter, _ *http.Request) {
	s := g.Stats()
	type rc struct {
		Reason    string `json:"reason"`
		Rule      string `json:"rule"`
		Dropped   uint64 `json:"dropped"`
		WouldDrop uint64 `json:"would_drop"`
	}
	out := struct {
		Summary       string `json:"summary"`
		Admitted      uint64 `json:"admitted"`
		Drops         []rc   `json:"drops"`
		TableEntries  int64  `json:"table_entries"`
		TableCapacity int    `json:"table_capacity"`
		Evictions     uint64 `json:"table_evictions"`
		BansActive    int    `json:"bans_active"`
	}{Summary: g.Summary(), Admitted: s.Admitted, TableEntries: s.TableEntries, TableCapacity: s.TableCapacity, Evictions: s.Evictions}
	for _, d := range s.Drops {
		if d.Dropped > 0 || d.WouldDrop > 0 {
			out.Drops = append(out.Drops, rc{d.Reason, d.Rule, d.Dropped, d.WouldDrop})
		}
	}
	for _, n := range s.BansActive {
		out.BansActive += n
	}
	httpjson.Write(w, http.StatusOK, out)
}
