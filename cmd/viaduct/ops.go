package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/viaduct-sip/viaduct/admin"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/health"
	"github.com/viaduct-sip/viaduct/internal/config"
	"github.com/viaduct-sip/viaduct/metrics"
)

// ops is the operations side of a running Viaduct: readiness (/readyz),
// the record of configuration loads (viaduct_config_* metrics), and the
// admin API that serves them with /metrics, the upstream API and the status
// page.
//
// For the code that reloads the configuration and shuts down gracefully:
//
//	o.reloads.IncSuccess(metrics.ConfigHash(fileBytes)) // a reload applied
//	o.reloads.IncFailure()                              // a reload refused
//	o.ready.SetShuttingDown()                           // SIGTERM: /readyz turns 503 at once
//	o.handler.Handle("POST /api/v1/reload", h)          // more admin endpoints (nil handler: admin off)
type ops struct {
	ready   admin.Readiness
	reloads metrics.Reloads
	handler *admin.Handler // nil when the admin API is off
	srv     *admin.Server  // nil when the admin API is off
	logger  *slog.Logger
	// states saves the admin states (nil without admin.state_file).
	states *admin.StateFile
	// collectors are the Prometheus collectors of other rooms (the stream
	// transports, capture, the edge), registered beside Viaduct's own.
	collectors []prometheus.Collector
	// connections counts the TCP and TLS connections (admin.Options).
	connections func() admin.Connections
}

// adminKeys are the keys of the admin section.
var adminKeys = []string{"listen", "token", "token_file", "state_file"}

// UnmarshalYAML decodes the admin section strictly (an unknown key is an
// error naming its line) and records whether listen was given, so that
// its absence selects admin.DefaultListen and an explicit "" or off
// disables the API.
func (a *adminConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: admin is a mapping with %s", n.Line, strings.Join(adminKeys, ", "))
	}
	if err := checkKeys(n, adminKeys, "admin"); err != nil {
		return err
	}
	type plain adminConfig // without this method
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*a = adminConfig(p)
	a.listenSet = hasKey(n, "listen")
	return nil
}

// loadToken reads TokenFile into Token. Errors name the YAML key.
func (a *adminConfig) loadToken() error {
	if a.TokenFile == "" {
		return nil
	}
	if a.Token != "" {
		return &config.FieldError{Field: "admin.token_file", Reason: "give either token or token_file, not both"}
	}
	b, err := os.ReadFile(a.TokenFile)
	if err != nil {
		return &config.FieldError{Field: "admin.token_file", Reason: err.Error()}
	}
	a.Token = strings.TrimRight(string(b), "\r\n")
	if a.Token == "" {
		return &config.FieldError{Field: "admin.token_file", Reason: a.TokenFile + " is empty"}
	}
	return nil
}

// effectiveListen is the admin address in use: the configured one, or
// admin.DefaultListen when neither the file nor --admin-listen named one.
func (a *adminConfig) effectiveListen() string {
	if !a.listenSet {
		return admin.DefaultListen
	}
	return a.Listen
}

// configHash identifies the configuration for viaduct_config_info: the
// hash of the file's bytes, or of the command line when there is no file.
func configHash(path string, args []string) string {
	if path != "" {
		if b, err := os.ReadFile(path); err == nil {
			return metrics.ConfigHash(b)
		}
	}
	return metrics.ConfigHash([]byte(strings.Join(args, "\x00")))
}

// startOps starts the admin API (unless it is off) over the engine, the
// checker, the metrics collector and o's readiness and reloads. An address
// given explicitly that cannot be bound is an error; when the default
// address is taken (another instance, a Prometheus server on 9090), Viaduct
// runs without the admin API and says so.
func (o *ops) start(ac adminConfig, eng *fastpath.Engine, chk *health.Checker) error {
	listen := ac.effectiveListen()
	if admin.Disabled(listen) {
		o.logger.Info("admin API off")
		return nil
	}
	ln, err := admin.Listen(listen, ac.Token)
	if err != nil {
		if !ac.listenSet && errors.Is(err, syscall.EADDRINUSE) {
			o.logger.Warn("admin API off: its default address is in use; set admin.listen (or --admin-listen) to another address, or off", "addr", listen, "err", err)
			return nil
		}
		return fmt.Errorf("admin.listen: %w", err)
	}
	col := metrics.New(metrics.Options{Engine: eng, Health: chk, Pool: eng.Pool(), Reloads: &o.reloads})
	reg, err := metrics.NewRegistry(col, o.collectors...)
	if err != nil {
		ln.Close()
		return err
	}
	o.handler = admin.New(admin.Options{
		Upstreams: chk, Pool: eng.Pool(), Engine: eng, Reloads: &o.reloads,
		Metrics: metrics.Handler(reg, o.logger), Ready: &o.ready,
		Token: ac.Token, Logger: o.logger, StateFile: o.states, Connections: o.connections,
	})
	o.srv = admin.Serve(ln, o.handler, o.logger)
	o.logger.Info("admin API listening", "addr", ln.Addr().String(), "token", ac.Token != "",
		"metrics", "http://"+ln.Addr().String()+"/metrics")
	return nil
}

// stop stops the admin API, waiting up to 2 s for requests in progress.
func (o *ops) stop() {
	if o.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := o.srv.Shutdown(ctx); err != nil {
		o.logger.Warn("admin API shutdown", "err", err)
	}
}

// adminConfig is the admin section of the YAML file (decoded by its
// UnmarshalYAML in ops.go).
type adminConfig struct {
	// Listen is the TCP ip:port of the admin HTTP API; "" or "off"
	// disables it; absent means admin.DefaultListen (127.0.0.1:9090).
	Listen string `yaml:"listen"`
	// Token, when set, is the bearer token every admin request but
	// /healthz and /readyz must carry.
	Token string `yaml:"token"`
	// TokenFile is a file holding the token (trailing newline ignored),
	// e.g. a systemd credential; give token or token_file, not both.
	TokenFile string `yaml:"token_file"`
	// StateFile is where the upstreams' admin states are saved after each
	// change and restored from at start (see states.go); "" keeps them in
	// memory only.
	StateFile string `yaml:"state_file"`
	// listenSet records that the file or --admin-listen gave Listen.
	listenSet bool
}

// check validates the admin section: the token (loaded from token_file
// into Token), the listen address and the state file. Errors name the YAML
// key.
func (a *adminConfig) check() error {
	if err := checkAdminListen(a); err != nil {
		return err
	}
	return checkStateFile(a)
}

// checkAdminListen validates the admin section: "" or "off" is off;
// otherwise an ip:port (or localhost:port), and a token whenever the address
// is not loopback (the API can drain and disable upstreams).
func checkAdminListen(ac *adminConfig) error {
	if err := ac.loadToken(); err != nil {
		return err
	}
	listen := ac.effectiveListen()
	if admin.Disabled(listen) {
		return nil
	}
	if err := admin.CheckListen(listen, ac.Token); err != nil {
		return &config.FieldError{Field: "admin.listen", Reason: err.Error()}
	}
	return nil
}

// checkStateFile validates admin.state_file: its directory must exist.
func checkStateFile(ac *adminConfig) error {
	if err := admin.CheckStateFile(ac.StateFile); err != nil {
		return &config.FieldError{Field: "admin.state_file", Reason: err.Error()}
	}
	return nil
}
