package admin

import (
	"net/http"

	"github.com/viaduct-sip/viaduct/internal/httpjson"
)

// Connections are the TCP and TLS connections open now, for
// GET /api/v1/connections and the status page.
type Connections struct {
	// Listeners has one entry per TCP or TLS listener.
	Listeners []ListenerConnections `json:"listeners"`
	// Upstreams has one entry per TCP or TLS upstream.
	Upstreams []UpstreamConnections `json:"upstreams"`
}

// ListenerConnections counts the connections of one listener: accepted
// from clients (In) and dialled to upstreams (Out).
type ListenerConnections struct {
	Transport string `json:"transport"`
	Listen    string `json:"listen"`
	In        int64  `json:"in"`
	Out       int64  `json:"out"`
}

// UpstreamConnections counts the connections open to one upstream.
type UpstreamConnections struct {
	ID        string `json:"id"`
	Address   string `json:"address"`
	Transport string `json:"transport"`
	Open      int    `json:"open"`
}

// connections serves GET /api/v1/connections.
func (h *Handler) connections(w http.ResponseWriter, r *http.Request) {
	httpjson.Write(w, http.StatusOK, h.conns())
}
