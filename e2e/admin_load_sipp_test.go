package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
)

// TestAdminAnswersUnderLoad runs a steady SIPp stream through the real
// binary on one P (GOMAXPROCS=1, so one worker, which then waits for its
// datagrams in recvmmsg: the default park_after) and checks that the admin
// API still answers within a second while the stream lasts. The worker keeps
// its P all that time; the API's goroutines, which wait for the network,
// run only because the worker passes through the netpoller now and then
// (without that, they waited for the whole stream).
func TestAdminAnswersUnderLoad(t *testing.T) {
	sipp := testenv.Sipp(t)
	dir := t.TempDir()
	bin := buildViaduct(t, dir)
	pv, pa := freePort(t, "udp"), freePort(t, "tcp")
	pu := []int{freePort(t, "udp"), freePort(t, "udp")}
	for i, p := range pu {
		start(t, dir, "uas"+strconv.Itoa(i), sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", strconv.Itoa(p), "-nostdin")
	}
	// The child inherits the environment; this process's runtime read its
	// own GOMAXPROCS at start and is not affected.
	t.Setenv("GOMAXPROCS", "1")
	start(t, dir, "viaduct", bin, "--listen", fmt.Sprintf("127.0.0.1:%d", pv),
		"--upstream", fmt.Sprintf("127.0.0.1:%d", pu[0]), "--upstream", fmt.Sprintf("127.0.0.1:%d", pu[1]),
		"--admin-listen", fmt.Sprintf("127.0.0.1:%d", pa), "--shutdown-drain", "0")
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", pa)
	client := &http.Client{Timeout: 3 * time.Second}
	get := func() (time.Duration, error) {
		begin := time.Now()
		resp, err := client.Get(metrics)
		if err != nil {
			return time.Since(begin), err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return time.Since(begin), fmt.Errorf("status %s", resp.Status)
		}
		return time.Since(begin), nil
	}
	for begin := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if _, err := get(); err == nil {
			break
		} else if time.Since(begin) > 5*time.Second {
			t.Fatalf("admin API not up after 5 s: %v", err)
		}
	}

	const calls, rate = 6000, 1000 // 6 s, 6,000 messages/s through the worker
	var lat []time.Duration
	r := runUAC(t, dir, sipp, pv, calls, rate, "uac", func() {
		time.Sleep(1500 * time.Millisecond) // the stream is steady by now
		for i := 0; i < 5; i++ {
			d, err := get()
			if err != nil {
				t.Errorf("GET /metrics %d under load: %v after %v", i, err, d)
				return
			}
			lat = append(lat, d)
			time.Sleep(200 * time.Millisecond)
		}
	})
	t.Logf("GET /metrics under load: %v; calls %+v", lat, r)
	for i, d := range lat {
		if d > time.Second {
			t.Errorf("GET /metrics %d under load took %v, want under 1 s", i, d)
		}
	}
	if r.exit != 0 || r.failed != 0 || r.successful != calls {
		t.Errorf("calls: %+v, want all %d successful", r, calls)
	}
}
