package load

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/viaduct-sip/viaduct/bench/load/hist"
)

// Latency is a latency summary in milliseconds.
type Latency struct {
	N     uint64  `json:"n"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
	Min   float64 `json:"min_ms"`
	Valid bool    `json:"-"`
}

func ms(ns float64) float64 { return float64(int64(ns/1e3)) / 1e3 } // microsecond precision

// LatencyOf summarizes a histogram of nanosecond values.
func LatencyOf(s *hist.Snapshot) Latency {
	if s.N == 0 {
		return Latency{}
	}
	return Latency{
		N: s.N, Mean: ms(s.Mean()), Valid: true,
		P50: ms(float64(s.Percentile(50))), P90: ms(float64(s.Percentile(90))),
		P99: ms(float64(s.Percentile(99))), P999: ms(float64(s.Percentile(99.9))),
		Max: ms(float64(s.Max)), Min: ms(float64(s.MinValue())),
	}
}

// Report is the machine-readable summary of a run (what --json writes).
type Report struct {
	Scenario       string            `json:"scenario"`
	Target         string            `json:"target"`
	Transport      string            `json:"transport"`
	Connections    string            `json:"connections,omitempty"`
	TargetRate     float64           `json:"target_rate"`
	AchievedRate   float64           `json:"achieved_rate"`
	CompletedRate  float64           `json:"completed_rate"`
	SendingSeconds float64           `json:"sending_seconds"`
	ElapsedSeconds float64           `json:"elapsed_seconds"`
	Started        uint64            `json:"started"`
	Completed      uint64            `json:"completed"`
	Failed         uint64            `json:"failed"`
	FailureRatio   float64           `json:"failure_ratio"`
	FailedBy       map[string]uint64 `json:"failed_by_reason"`
	Retrans        uint64            `json:"retransmissions"`
	Sent           uint64            `json:"messages_sent"`
	Received       uint64            `json:"messages_received"`
	SendErrors     uint64            `json:"send_errors"`
	Duplicates     uint64            `json:"duplicate_responses"`
	Late           uint64            `json:"late_responses"`
	Stray          uint64            `json:"stray_messages"`
	ParseErrors    uint64            `json:"parse_errors"`
	Unexpected     uint64            `json:"unexpected_messages"`
	KernelDrops    uint64            `json:"kernel_receive_drops"`
	ConnsOpened    uint64            `json:"connections_opened,omitempty"`
	ConnsFailed    uint64            `json:"connections_failed,omitempty"`
	ConnsDropped   uint64            `json:"connections_dropped,omitempty"`
	Reconnects     uint64            `json:"reconnects,omitempty"`
	TLSResumed     uint64            `json:"tls_resumed,omitempty"`
	RecvBatch      float64           `json:"avg_recv_batch"`
	SendBatch      float64           `json:"avg_send_batch"`
	FirstResponse  Latency           `json:"latency_first_response"`
	InviteTo200    *Latency          `json:"latency_invite_to_200,omitempty"`
	CPUSeconds     float64           `json:"cpu_seconds"`
	CPUCores       float64           `json:"cpu_cores_used"`
	Cores          int               `json:"cores_available"`
	Aborted        bool              `json:"aborted,omitempty"`
	Passed         bool              `json:"passed"`
	MaxFail        float64           `json:"max_fail_ratio"`
}

// FailedBy returns the failures by reason: "timeout", "bye timeout",
// "unfinished", "connection lost", "connect failed", a status code such as "486" for a rejected call, or
// "bye 481" for a BYE answered with an error.
func (c *Counts) FailedBy() map[string]uint64 {
	m := map[string]uint64{}
	if c.Timeouts > 0 {
		m["timeout"] = c.Timeouts
	}
	if c.ByeTimeouts > 0 {
		m["bye timeout"] = c.ByeTimeouts
	}
	if c.Unfinished > 0 {
		m["unfinished"] = c.Unfinished
	}
	if c.ConnLost > 0 {
		m["connection lost"] = c.ConnLost
	}
	if c.ConnectFailed > 0 {
		m["connect failed"] = c.ConnectFailed
	}
	for code, n := range c.Codes {
		if n > 0 {
			m[strconv.Itoa(code)] = n
		}
	}
	for code, n := range c.ByeCodes {
		if n > 0 {
			m["bye "+strconv.Itoa(code)] = n
		}
	}
	return m
}

// failureSummary formats FailedBy as "timeout 3, 486 2" (largest first).
func failureSummary(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, m[k])
	}
	return b.String()
}

// Report summarizes r; maxFail is the failure ratio above which the run
// did not pass.
func (r *Result) Report(maxFail float64) Report {
	c := &r.Counts
	rep := Report{
		Scenario: r.Scenario.String(), Target: r.TargetAddr.String(), Transport: r.Transport.String(),
		TargetRate: r.Rate, AchievedRate: round3(r.Achieved()),
		SendingSeconds: round3(r.Sending.Seconds()), ElapsedSeconds: round3(r.Elapsed.Seconds()),
		Started: c.Started, Completed: c.Completed, Failed: c.Failed,
		FailureRatio: r.FailureRatio(), FailedBy: c.FailedBy(),
		Retrans: c.Retransmissions, Sent: c.Sent, Received: c.Received, SendErrors: c.SendErrors,
		Duplicates: c.Duplicates, Late: c.Late, Stray: c.Stray, ParseErrors: c.ParseErrors,
		Unexpected: c.Unexpected, KernelDrops: c.KernelDrops,
		FirstResponse: LatencyOf(&c.Response),
		CPUSeconds:    round3(r.CPU.Seconds()), Cores: r.Cores, Aborted: r.Aborted,
		MaxFail: maxFail,
	}
	if r.Transport.Reliable() {
		rep.Connections = r.Connections.String()
		rep.ConnsOpened, rep.ConnsFailed, rep.ConnsDropped, rep.Reconnects = c.ConnsOpened, c.ConnsFailed, c.ConnsDropped, c.Reconnects
		rep.TLSResumed = c.Resumed
	}
	if c.ReadCalls > 0 {
		rep.RecvBatch = round3(float64(c.Received) / float64(c.ReadCalls))
	}
	if c.WriteCalls > 0 {
		rep.SendBatch = round3(float64(c.Sent) / float64(c.WriteCalls))
	}
	if r.Sending > 0 {
		rep.CompletedRate = round3(float64(c.Completed) / r.Sending.Seconds())
	}
	if r.Elapsed > 0 {
		rep.CPUCores = round3(r.CPU.Seconds() / r.Elapsed.Seconds())
	}
	if r.Scenario == ScenarioCall {
		l := LatencyOf(&c.Setup)
		rep.InviteTo200 = &l
	}
	rep.Passed = !r.Aborted && r.FailureRatio() <= maxFail && c.Started > 0
	return rep
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// WriteTable writes rep as a human-readable table.
func (rep *Report) WriteTable(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	over := ""
	if rep.Transport != "" && rep.Transport != "udp" {
		over = " over " + rep.Transport + " (" + rep.Connections + " connections)"
	}
	p("viaduct-load uac: %s scenario against %s%s\n", rep.Scenario, rep.Target, over)
	tr := "unlimited"
	if rep.TargetRate > 0 {
		tr = fmt.Sprintf("%.1f/s", rep.TargetRate)
	}
	p("  %-22s %s\n", "target rate", tr)
	p("  %-22s %.1f/s (completed %.1f/s)\n", "achieved rate", rep.AchievedRate, rep.CompletedRate)
	p("  %-22s %.3fs sending, %.3fs with drain\n", "time", rep.SendingSeconds, rep.ElapsedSeconds)
	p("  %-22s %d\n", "started", rep.Started)
	p("  %-22s %d\n", "completed", rep.Completed)
	p("  %-22s %d (%.4f%%)\n", "failed", rep.Failed, 100*rep.FailureRatio)
	if len(rep.FailedBy) > 0 {
		p("  %-22s %s\n", "  by reason/code", failureSummary(rep.FailedBy))
	}
	p("  %-22s %d\n", "retransmissions", rep.Retrans)
	p("  %-22s sent %d, received %d (%.1f and %.1f per system call)\n", "messages", rep.Sent, rep.Received, rep.SendBatch, rep.RecvBatch)
	if over != "" {
		p("  %-22s opened %d, failed to open %d, dropped %d, reconnects %d", "connections",
			rep.ConnsOpened, rep.ConnsFailed, rep.ConnsDropped, rep.Reconnects)
		if rep.TLSResumed > 0 {
			p(", TLS sessions resumed %d", rep.TLSResumed)
		}
		p("\n")
	}
	if n := rep.SendErrors + rep.Duplicates + rep.Late + rep.Stray + rep.ParseErrors + rep.Unexpected + rep.KernelDrops; n > 0 {
		p("  %-22s send errors %d, kernel receive drops %d, duplicates %d, late %d, stray %d, unparsable %d, unexpected %d\n", "other",
			rep.SendErrors, rep.KernelDrops, rep.Duplicates, rep.Late, rep.Stray, rep.ParseErrors, rep.Unexpected)
	}
	p("  %-22s %9s %9s %9s %9s %9s %9s %9s\n", "latency (ms)", "p50", "p90", "p99", "p99.9", "max", "mean", "count")
	row := func(name string, l *Latency) {
		p("  %-22s %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9d\n", name, l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean, l.N)
	}
	row("  request->1st resp.", &rep.FirstResponse)
	if rep.InviteTo200 != nil {
		row("  INVITE->200", rep.InviteTo200)
	}
	p("  %-22s %.2fs CPU, %.2f cores of %d (%.0f%%)\n", "generator CPU", rep.CPUSeconds, rep.CPUCores, rep.Cores,
		100*rep.CPUCores/float64(max(rep.Cores, 1)))
	if rep.Cores > 0 && rep.CPUCores > 0.9*float64(rep.Cores) {
		p("  %-22s the generator used nearly all its cores: it may be the bottleneck\n", "note")
	}
	verdict := "PASS"
	if !rep.Passed {
		verdict = "FAIL"
	}
	p("  %-22s %s (failures %.4f%%, limit %.4f%%)\n", "result", verdict, 100*rep.FailureRatio, 100*rep.MaxFail)
}

// Progress formats one live progress line from two successive snapshots
// taken dt apart.
func Progress(elapsed time.Duration, cur, prev *Counts, dt time.Duration) string {
	var d Counts
	d.Sub(cur, prev)
	rate := float64(d.Started) / dt.Seconds()
	var b strings.Builder
	fmt.Fprintf(&b, "[%6.1fs] rate %8.1f/s  out %6d  ok %9d  fail %d", elapsed.Seconds(), rate,
		cur.Outstanding(), cur.Completed, cur.Failed)
	if cur.Failed > 0 {
		fmt.Fprintf(&b, " (%s)", failureSummary(cur.FailedBy()))
	}
	fmt.Fprintf(&b, "  retrans %d", cur.Retransmissions)
	if d.Response.N > 0 {
		fmt.Fprintf(&b, "  p50 %.3fms p99 %.3fms", float64(d.Response.Percentile(50))/1e6, float64(d.Response.Percentile(99))/1e6)
	}
	return b.String()
}
