package metrics_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/viaduct-sip/viaduct/health"
	"github.com/viaduct-sip/viaduct/metrics"
)

func TestConfigHash(t *testing.T) {
	// sha256("listen: [127.0.0.1:5060]\n") starts with these 16 digits
	// (as `sha256sum | cut -c1-16` prints).
	if got := metrics.ConfigHash([]byte("listen: [127.0.0.1:5060]\n")); got != "54b7e6d005eaab23" {
		t.Errorf("ConfigHash = %s", got)
	}
	if metrics.ConfigHash([]byte("a")) == metrics.ConfigHash([]byte("b")) {
		t.Error("different files, same hash")
	}
}

func TestReloads(t *testing.T) {
	var r metrics.Reloads
	col := metrics.New(metrics.Options{Reloads: &r})
	names := []string{"viaduct_config_reloads_total", "viaduct_config_last_reload_successful", "viaduct_config_info"}
	const head = `
# HELP viaduct_config_reloads_total Configuration reloads, by result (success, failure).
# TYPE viaduct_config_reloads_total counter
viaduct_config_reloads_total{result="failure"} %d
viaduct_config_reloads_total{result="success"} %d
# HELP viaduct_config_last_reload_successful Whether the last configuration load attempt succeeded: 1 yes, 0 no.
# TYPE viaduct_config_last_reload_successful gauge
viaduct_config_last_reload_successful %d
# HELP viaduct_config_info The configuration in use (value 1); hash is the first 16 hex digits of the SHA-256 of the file.
# TYPE viaduct_config_info gauge
viaduct_config_info{hash=%q} 1
`
	check := func(step string, fail, ok, last int, hash string) {
		t.Helper()
		exp := fmt.Sprintf(head, fail, ok, last, hash)
		if err := testutil.CollectAndCompare(col, strings.NewReader(exp), names...); err != nil {
			t.Errorf("%s: %v", step, err)
		}
	}
	t0 := time.Now()
	r.Loaded("1111111111111111")
	check("loaded", 0, 0, 1, "1111111111111111")
	r.IncFailure()
	check("refused", 1, 0, 0, "1111111111111111") // the running config stays
	r.IncSuccess("2222222222222222")
	check("reloaded", 1, 1, 1, "2222222222222222")
	s := r.Snapshot()
	if s.LastSuccess.Before(t0) || time.Since(s.LastSuccess) > time.Minute {
		t.Errorf("last success %v, test started %v", s.LastSuccess, t0)
	}
	ts := gatherOne(t, col, "viaduct_config_last_reload_success_timestamp_seconds")[""]
	if want := float64(s.LastSuccess.UnixNano()) / 1e9; ts < want-0.001 || ts > want+0.001 {
		t.Errorf("timestamp metric %v, want %v", ts, want)
	}
}

// fixedHealth serves a fixed status list, for checking the exposition
// format of the RTT histogram to the sample.
type fixedHealth []health.Status

func (f fixedHealth) Status() []health.Status { return f }
func (f fixedHealth) DroppedReplies() uint64  { return 3 }

func TestRTTHistogramExposition(t *testing.T) {
	var h health.RTTHistogram
	for _, d := range []time.Duration{200 * time.Microsecond, 800 * time.Microsecond, 3 * time.Millisecond, 3 * time.Millisecond, 7 * time.Second} {
		h.Observe(d)
	}
	col := metrics.New(metrics.Options{Health: fixedHealth{{ID: "a", Addr: netip.MustParseAddrPort("127.0.0.1:5071"), RTTHist: h}}})
	const exp = `
# HELP viaduct_upstream_probe_rtt_seconds Round-trip time of health probes answered without retransmission.
# TYPE viaduct_upstream_probe_rtt_seconds histogram
viaduct_upstream_probe_rtt_seconds_bucket{upstream="a",le="0.00025"} 1
viaduct_upstream_probe_rtt_seconds_bucket{upstream="a",le="0.0005"} 1
viaduct_upstream_probe_rtt_seconds_bucket{upstream="a",le="0.001"} 2
viaduct_upstream_probe_rtt_seconds_bucket{upstream="a",le="0.0025"} 2
viaduct_upstream_probe_rtt_seconds_bucket{upstream="a",le="0.005"} 4
viaduct_upstream_probe_rtt_seconds_bucket{upstream="a",le="0.01"} 4
viaduct_upstream_probe_rtt_seconds_bucket{upstream="a",le="0.025"} 4
viaduct_upstream_probe_rtt_seconds_bucket{upstream="a",le="0.05"} 4
viaduct_upstream_probe_rtt_seconds_bucket{upstream="a",le="0.1"} 4
viaduct_upstream_probe_rtt_seconds_bucket{upstream="a",le="0.25"} 4
viaduct_upstream_probe_rtt_seconds_bucket{upstream="a",le="0.5"} 4
viaduct_upstream_probe_rtt_seconds_bucket{upstream="a",le="1"} 4
viaduct_upstream_probe_rtt_seconds_bucket{upstream="a",le="2.5"} 4
viaduct_upstream_probe_rtt_seconds_bucket{upstream="a",le="5"} 4
viaduct_upstream_probe_rtt_seconds_bucket{upstream="a",le="+Inf"} 5
viaduct_upstream_probe_rtt_seconds_sum{upstream="a"} 7.007
viaduct_upstream_probe_rtt_seconds_count{upstream="a"} 5
# HELP viaduct_health_probe_replies_dropped_total Probe replies the health checker could not queue (its goroutine was behind; those probes time out).
# TYPE viaduct_health_probe_replies_dropped_total counter
viaduct_health_probe_replies_dropped_total 3
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(exp), "viaduct_upstream_probe_rtt_seconds", "viaduct_health_probe_replies_dropped_total"); err != nil {
		t.Error(err)
	}
	// Without a pool the states come from the checker.
	if up := gatherOne(t, col, "viaduct_upstream_up"); up[`upstream="a"`] != 1 || len(up) != 1 {
		t.Errorf("viaduct_upstream_up = %v", up)
	}
}
