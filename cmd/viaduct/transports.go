package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/viaduct-sip/viaduct/admin"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/internal/config"
	"github.com/viaduct-sip/viaduct/resolve"
	"github.com/viaduct-sip/viaduct/transport"
	"github.com/viaduct-sip/viaduct/transport/stream"
	"github.com/viaduct-sip/viaduct/transport/udp"
)

// The transports as the configuration names them: listen addresses with a
// transport prefix, the tls block, the streams block of the TCP and TLS
// limits, and the wiring of their servers (stream.Bind) into the engine.

// tlsSection is the tls block: the files of the TLS listeners and of
// connections to TLS upstreams.
//
//	tls:
//	  cert_file: /etc/viaduct/tls.crt
//	  key_file: /etc/viaduct/tls.key
//	  client_ca_file: /etc/viaduct/trunk-ca.pem   # mutual TLS: require client certificates
//	  ca_file: /etc/viaduct/upstream-ca.pem       # verify TLS upstreams (default: system pool)
//	  min_version: "1.2"
type tlsSection struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
	CAFile       string `yaml:"ca_file"`
	MinVersion   string `yaml:"min_version"`
}

// listenKinds are the transport prefixes of a listen address.
var listenKinds = []transport.Kind{transport.UDP, transport.TCP, transport.TLS, transport.WS, transport.WSS}

// parseListen parses one listen entry: "udp:", "tcp:" or "tls:" and an
// ip:port, or a plain ip:port, which listens on UDP and TCP both (as
// Kamailio does, RFC 3261 18: every element speaks both).
func parseListen(s string) ([]fastpath.Listener, error) {
	s = strings.TrimSpace(s)
	for _, k := range listenKinds {
		if rest, ok := cutPrefixFold(s, k.String()+":"); ok {
			a, err := parseAddrPort(rest)
			if err != nil {
				return nil, err
			}
			return []fastpath.Listener{{Kind: k, Addr: a}}, nil
		}
	}
	a, err := parseAddrPort(s)
	if err != nil {
		return nil, fmt.Errorf("%w, optionally after udp:, tcp:, tls:, ws: or wss:", err)
	}
	return []fastpath.Listener{{Kind: transport.UDP, Addr: a}, {Kind: transport.TCP, Addr: a}}, nil
}

// cutPrefixFold is strings.CutPrefix ignoring case.
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// listeners parses the listen list, naming the bad entry.
func (fc *fileConfig) listeners() ([]fastpath.Listener, error) {
	var out []fastpath.Listener
	for i, s := range fc.Listen {
		ls, err := parseListen(s)
		if err != nil {
			return nil, &config.FieldError{Field: fmt.Sprintf("listen[%d]", i), Reason: err.Error()}
		}
		out = append(out, ls...)
	}
	return out, nil
}

// streamConfig returns the settings of the TCP and TLS transports (the
// streams and tls blocks, and reuse_port), defaults applied, or a
// *config.FieldError naming the bad key.
func (fc *fileConfig) streamConfig() (stream.ServerConfig, error) {
	c := fc.Streams
	t := fc.TLS
	c.CertFile, c.KeyFile, c.ClientCAFile, c.CAFile, c.MinVersion = t.CertFile, t.KeyFile, t.ClientCAFile, t.CAFile, t.MinVersion
	c.ReusePort = fc.ReusePort
	ws, err := fc.WebSocket.WithDefaults()
	if err != nil {
		return c, prefixField(err, "websocket")
	}
	c.WebSocket = ws
	c, err = c.WithDefaults()
	if err != nil {
		return c, prefixField(err, "streams")
	}
	return c, nil
}

// prefixField puts block. before the field of a *config.FieldError; the
// TLS file keys live in the tls block.
func prefixField(err error, block string) error {
	fe, ok := err.(*config.FieldError)
	if !ok {
		return err
	}
	switch fe.Field {
	case "cert_file", "key_file", "client_ca_file", "ca_file", "min_version":
		block = "tls"
	}
	return &config.FieldError{Field: block + "." + fe.Field, Reason: fe.Reason}
}

// checkTLSListen refuses a tls: listener without a certificate.
func checkTLSListen(ls []fastpath.Listener, sc stream.ServerConfig) error {
	for _, l := range ls {
		if l.Kind.Secure() && sc.CertFile == "" {
			return &config.FieldError{Field: "tls.cert_file", Reason: fmt.Sprintf("required by the listener %s (or --tls-cert)", l)}
		}
	}
	return nil
}

// streamServers are the TCP and TLS servers an engine bound: what a reload
// (new certificates), the upstream TLS names and the metrics reach.
type streamServers struct {
	mu    sync.Mutex
	all   []*stream.Server
	names map[netip.AddrPort]string // TLS upstreams' server names
	log   *slog.Logger
}

// binders returns the engine's Binders of TCP and TLS, recording the
// servers they bind.
func (ss *streamServers) binders(sc stream.ServerConfig) map[transport.Kind]transport.Binder {
	out := map[transport.Kind]transport.Binder{}
	for _, k := range []transport.Kind{transport.TCP, transport.TLS, transport.WS, transport.WSS} {
		bind := stream.Bind(sc, k, ss.log)
		out[k] = func(ctx context.Context, l transport.Layout) (transport.Server, error) {
			srv, err := bind(ctx, l)
			if err != nil {
				return nil, err
			}
			if s, ok := srv.(*stream.Server); ok {
				ss.mu.Lock()
				ss.all = append(ss.all, s)
				for a, n := range ss.names {
					s.SetServerName(a, n)
				}
				ss.mu.Unlock()
			}
			return srv, nil
		}
	}
	return out
}

// servers returns the servers bound so far.
func (ss *streamServers) servers() []*stream.Server {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return append([]*stream.Server(nil), ss.all...)
}

// reloadTLS makes every TLS server read its certificate files again, for
// the connections that come next (established ones keep theirs).
func (ss *streamServers) reloadTLS() error {
	for _, s := range ss.servers() {
		if !s.Kind().Secure() {
			continue
		}
		if err := s.Reload(); err != nil {
			return prefixField(err, "tls")
		}
	}
	return nil
}

// setServerNames tells the TLS servers, those bound and those to come,
// the name to verify each TLS upstream's certificate against.
func (ss *streamServers) setServerNames(names map[netip.AddrPort]string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.names = names
	for _, s := range ss.all {
		for a, n := range names {
			s.SetServerName(a, n)
		}
	}
}

// tlsServerNames returns the server name of every TLS upstream target:
// its entry's tls_server_name, else the host name it was resolved from
// (the domain of an SRV name, RFC 5922 section 4), else none (its
// certificate must then name its IP address).
func (fc *fileConfig) tlsServerNames(ts []resolve.Target) map[netip.AddrPort]string {
	names := map[netip.AddrPort]string{}
	for _, t := range ts {
		if t.Transport != transport.TLS.String() || t.Source >= len(fc.Upstreams) {
			continue
		}
		u := &fc.Upstreams[t.Source]
		if u.TLSServerName != "" {
			names[t.Addr] = u.TLSServerName
			continue
		}
		if src, err := u.source(); err == nil && src.IsDNS() {
			names[t.Addr] = srvDomain(src.Name)
		}
	}
	return names
}

// srvDomain returns the domain of an SRV name (_sips._tcp.example.com:
// example.com), or a host name as it is.
func srvDomain(name string) string {
	labels := strings.Split(name, ".")
	if len(labels) > 2 && strings.HasPrefix(labels[0], "_") && strings.HasPrefix(labels[1], "_") {
		return strings.Join(labels[2:], ".")
	}
	return name
}

// collector is the Prometheus collector of the stream servers.
func (ss *streamServers) collector() prometheus.Collector {
	return stream.Collector(ss.servers()...)
}

// dropOrphanResponses reads orphan_responses: what happens to a response
// whose client's TCP or TLS connection is gone.
func (fc *fileConfig) dropOrphanResponses() (bool, error) {
	switch strings.ToLower(fc.OrphanResponses) {
	case "", "reopen":
		return false, nil
	case "drop":
		return true, nil
	}
	return false, &config.FieldError{Field: "orphan_responses", Reason: fmt.Sprintf("%q is not one of reopen, drop", fc.OrphanResponses)}
}

// bindTransports gives cfg the Binders of its transports: udp.Bind for
// UDP, stream.Bind for TCP and TLS (recorded in ss).
func (fc *fileConfig) bindTransports(cfg *fastpath.Config, ss *streamServers, logger *slog.Logger) error {
	uc, err := fc.udpConfig()
	if err != nil {
		return err
	}
	sc, err := fc.streamConfig()
	if err != nil {
		return err
	}
	cfg.Transport = udp.Bind(uc, logger)
	ss.log = logger
	cfg.Transports = ss.binders(sc)
	return nil
}

// connections counts the TCP and TLS connections open now, per listener
// and per TCP or TLS upstream, for the admin API and the status page.
func (rt *runtime) connections() admin.Connections {
	c := admin.Connections{Listeners: []admin.ListenerConnections{}, Upstreams: []admin.UpstreamConnections{}}
	servers := rt.streams.servers()
	for _, s := range servers {
		st := s.Stats()
		for i, a := range s.Addrs() {
			c.Listeners = append(c.Listeners, admin.ListenerConnections{Transport: s.Kind().String(), Listen: a.String(),
				In: st.OpenIn[i], Out: st.OpenOut[i]})
		}
	}
	for _, t := range rt.eng.Targets() {
		if t.Transport != transport.TCP.String() && t.Transport != transport.TLS.String() {
			continue
		}
		open := 0
		for _, s := range servers {
			if s.Kind().String() == t.Transport {
				open += s.OpenTo(t.Addr)
			}
		}
		c.Upstreams = append(c.Upstreams, admin.UpstreamConnections{ID: t.ID, Address: t.Addr.String(), Transport: t.Transport, Open: open})
	}
	return c
}
