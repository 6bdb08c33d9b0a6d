package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"

	"github.com/viaduct-sip/viaduct/capture"
	"github.com/viaduct-sip/viaduct/internal/config"
	"github.com/viaduct-sip/viaduct/transport"
)

// The capture room's wiring (issue #18): the capture section and --hep,
// the tap on every transport worker, the HEP sender, the trace endpoints
// of the admin API and the viaduct_capture_* metrics.
//
// The tap is a transport.Stage. Stages wrap the core's Handler, the first
// outermost; the capture's goes after the edge's, so that it sees what the
// edge admits (and not what the edge refuses before the core sees it).
// Requests Viaduct originates itself (health probes, sent with
// Server.Originate) pass through no Handler and are not captured.
//
// The capture section is read at start only; a reload checks it and
// reports a change as needing a restart.

// newCapture builds the capture of fc (its sender starts with the engine).
func newCapture(fc *fileConfig, logger *slog.Logger) (*capture.Capture, error) {
	c, err := capture.New(fc.Capture, logger)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// checkCapture validates the capture section of a configuration a reload
// reads.
func checkCapture(fc *fileConfig) error {
	c := fc.Capture.WithDefaults()
	return config.Prefix("capture", c.Validate())
}

// stages returns the transport stages in the order they wrap the core:
// the edge's (when it is wired) goes before the capture's.
func (rt *runtime) stages() []transport.Stage {
	return []transport.Stage{rt.capture.Stage}
}

// startCapture gives the tap the listen addresses (known once the engine
// has bound them) and starts the HEP sender.
func (rt *runtime) startCapture(ctx context.Context) error {
	rt.capture.SetListenAddrs(rt.eng.ListenAddrs())
	if err := rt.capture.Start(ctx); err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	return nil
}

// mountTraces adds the trace endpoints to the admin API (bearer token
// and all).
func (rt *runtime) mountTraces() {
	if rt.op.handler == nil {
		return
	}
	ts := rt.capture.Traces()
	rt.op.handler.Handle("POST /api/v1/traces", ts.ArmHandler())
	rt.op.handler.Handle("GET /api/v1/traces", ts.ListHandler())
	rt.op.handler.Handle("GET /api/v1/traces/{id}", ts.GetHandler())
	rt.op.handler.Handle("DELETE /api/v1/traces/{id}", ts.StopHandler())
}

// captureChanged reports whether a reload changed the capture section
// (applied only by a restart).
func captureChanged(boot, next *fileConfig) bool {
	return !reflect.DeepEqual(boot.Capture, next.Capture)
}

// printCapture prints the capture section's line of --check.
func printCapture(w io.Writer, fc *fileConfig) {
	c := fc.Capture.WithDefaults()
	hep := "off"
	if c.HEP.Address != "" {
		hep = c.HEP.Transport + ":" + c.HEP.Address
	}
	methods := "all"
	if len(c.Methods) > 0 {
		methods = strings.Join(c.Methods, ",")
	}
	fmt.Fprintf(w, "viaduct: capture hep=%s agent_id=%d auth_key=%v methods=%s direction=%s sample_rate=%v ring_size=%d traces=max_active:%d,max_messages:%d,max_duration:%v\n",
		hep, c.HEP.AgentID, c.HEP.AuthKeyFile != "", methods, c.Direction, *c.SampleRate, c.RingSize,
		c.Traces.MaxActive, c.Traces.MaxMessages, c.Traces.MaxDuration)
}

// defineCaptureFlags defines --hep.
func (cl *cmdLine) defineCaptureFlags() {
	fs, hc := cl.fs, &cl.set.Capture.HEP
	fs.StringVar(&hc.Address, "hep", "", "send every message received and sent as HEPv3 to the collector at `ip:port` "+
		"(heplify-server, Homer; UDP unless capture.hep.transport is tcp); default: none [capture.hep.address]")
	cl.onSet("hep", func(fc *fileConfig) { fc.Capture.HEP.Address = hc.Address })
}
