package fastpath

import (
	"fmt"

	"github.com/viaduct-sip/viaduct/balancer"
)

// Update replaces the upstream targets and the key policy of a running (or
// not yet started) engine: a configuration reload. targets are validated as
// Config.Targets are (errors are *FieldError values naming
// "upstreams[i].<key>"); keys nil means balancer.DefaultPolicy(). On error
// nothing changes.
//
// The default pool is updated with balancer.Pool.Update, so targets that
// remain (by ID) keep their health and admin states and their calls, and
// the new upstream set (the addresses whose requests may be routed by Route
// or Request-URI) and key policy are published with one atomic store.
// Workers load them once per request, so every request is handled wholly
// under the old or wholly under the new configuration, and no datagram is
// lost or delayed: nothing on the fast path waits for an Update. With a
// Config.Picker, only the upstream set and the keys change.
//
// The balancing mode, listen addresses, workers, buffers and the secret
// cannot change without a new Engine.
func (e *Engine) Update(targets []balancer.Target, keys *balancer.Policy) error {
	if len(targets) == 0 {
		return fieldErr("upstreams", "at least one upstream is required")
	}
	ts, err := balancer.NormalizeConfig(targets, targetTransports...)
	if err != nil {
		return err
	}
	if err := checkTargetListeners(ts, e.cfg.Listeners); err != nil {
		return err
	}
	if keys == nil {
		keys = balancer.DefaultPolicy()
	}
	e.updateMu.Lock()
	defer e.updateMu.Unlock()
	if e.pool != nil {
		if err := e.pool.Update(ts); err != nil {
			return fmt.Errorf("fastpath: upstreams: %w", err)
		}
	}
	e.route.Store(newRouting(ts, keys))
	return nil
}
