package load

import (
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/bench/load/hist"
	"github.com/viaduct-sip/viaduct/transport"
)

func TestProgressAndTable(t *testing.T) {
	var prev, cur Counts
	cur.Started, cur.Completed, cur.Failed = 2000, 1890, 10
	cur.Timeouts, cur.Rejected, cur.Codes[486] = 4, 6, 6
	cur.Retransmissions = 17
	var h hist.Histogram
	for i := 0; i < 1000; i++ {
		h.Record(int64(i) * 1000) // 0 to 0.999 ms
	}
	h.Snapshot(&cur.Response)
	line := Progress(3*time.Second, &cur, &prev, time.Second)
	for _, want := range []string{"rate   2000.0/s", "out    100", "ok      1890", "fail 10 (486 6, timeout 4)", "retrans 17", "p50 0.49", "p99 0.98"} {
		if !strings.Contains(line, want) {
			t.Errorf("progress line lacks %q:\n%s", want, line)
		}
	}

	r := &Result{Rate: 1000, Sending: 2 * time.Second, Elapsed: 3 * time.Second, Counts: cur, CPU: 1500 * time.Millisecond,
		Cores: 2, Scenario: ScenarioCall}
	rep := r.Report(0.001)
	if rep.AchievedRate != 1000 || rep.Passed || rep.FailedBy["486"] != 6 || rep.FailedBy["timeout"] != 4 || rep.CPUCores != 0.5 {
		t.Fatalf("report %+v", rep)
	}
	var b strings.Builder
	rep.WriteTable(&b)
	for _, want := range []string{"achieved rate          1000.0/s", "486 6, timeout 4", "p99.9", "INVITE->200", "1.50s CPU, 0.50 cores of 2 (25%)", "FAIL"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestStreamReport(t *testing.T) {
	var c Counts
	c.Started, c.Completed, c.Failed, c.ConnLost, c.ConnectFailed = 10, 7, 3, 2, 1
	c.ConnsOpened, c.ConnsFailed, c.ConnsDropped = 9, 1, 2
	r := &Result{Rate: 10, Sending: time.Second, Elapsed: time.Second, Counts: c, Scenario: ScenarioCall,
		Transport: transport.TLS, Connections: ConnPerCall}
	rep := r.Report(0.5)
	if rep.Transport != "tls" || rep.Connections != "per-call" || rep.ConnsOpened != 9 || rep.ConnsFailed != 1 ||
		rep.ConnsDropped != 2 || rep.FailedBy["connection lost"] != 2 || rep.FailedBy["connect failed"] != 1 {
		t.Fatalf("report %+v", rep)
	}
	var b strings.Builder
	rep.WriteTable(&b)
	for _, want := range []string{"over tls (per-call connections)", "opened 9, failed to open 1, dropped 2, reconnects 0", "connection lost 2"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
