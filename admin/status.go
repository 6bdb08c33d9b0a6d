package admin

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/metrics"
)

// statusTemplate is the read-only status page: server-rendered, no
// script, refreshed by the browser every 5 seconds.
var statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"ms":      func(s float64) string { return strconv.FormatFloat(s*1000, 'f', 2, 64) },
	"pct":     func(f float64) string { return strconv.FormatFloat(f*100, 'f', 1, 64) + "%" },
	"ago":     ago,
	"deref":   func(p *uint64) uint64 { return *p },
	"isoTime": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="5">
<title>Viaduct status</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f3f3f3}
.up,.enabled,.ready{color:#070;font-weight:600}
.down,.disabled,.notready{color:#b00;font-weight:600}
.draining{color:#a60;font-weight:600}
.muted{color:#777}
.grid{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}
</style>
</head>
<body>
<h1>Viaduct</h1>
<p>{{if .Ready}}<span class="ready">ready</span>{{else}}<span class="notready">not ready</span>: {{range $i, $r := .NotReady}}{{if $i}}; {{end}}{{$r}}{{end}}{{end}}
· up {{.Uptime}}{{if .Config}} · config <code>{{.Config.Hash}}</code> loaded {{ago .Config.LastSuccess}} ago ({{.Config.Success}} reloads, {{.Config.Failure}} refused{{if .Config.LastFailed}}, <span class="down">last reload refused</span>{{end}}){{end}}</p>

<h2>Upstreams</h2>
{{if .Upstreams}}<table>
<tr><th>ID</th><th>Address</th><th>Health</th><th>Admin</th><th>Weight</th><th>Priority</th><th>New dialogs</th><th>Share</th><th>RTT ms (avg)</th><th>Probes ok / sent</th><th>Timeouts</th><th>Bad code</th>{{if .Forwarded}}<th>Forwarded</th><th title="responses relayed from the upstream (by source address), by status class">Responses relayed</th>{{end}}</tr>
{{range .Upstreams}}<tr>
<td>{{.ID}}</td><td>{{.Address}}</td>
<td><span class="{{.Health}}">{{.Health}}</span>{{if .HealthReason}} <span class="muted">({{.HealthReason}}, since {{isoTime .HealthSince}})</span>{{end}}</td>
<td><span class="{{.Admin}}">{{.Admin}}</span></td>
<td class="n">{{.Weight}}</td><td class="n">{{.Priority}}</td>
<td>{{if .NewDialogs}}yes{{else}}<span class="muted">no</span>{{end}}</td>
<td class="n">{{pct .Share}}</td>
<td class="n">{{if not .Probed}}<span class="muted">not probed</span>{{else if gt .RTTAvgSeconds 0.0}}{{ms .RTTSeconds}} ({{ms .RTTAvgSeconds}}){{else}}<span class="muted">no answer yet</span>{{end}}</td>
<td class="n">{{.ProbesOK}} / {{.ProbesSent}}</td>
<td class="n">{{.ProbeTimeouts}}</td><td class="n">{{.ProbeBadCode}}</td>
{{if .RequestsForwarded}}<td class="n">{{deref .RequestsForwarded}}</td>{{end}}
{{if .Responses}}<td class="n">{{range $i, $c := .Responses.Classes}}{{if $i}} · {{end}}<span class="{{if $c.Alert}}down{{end}}">{{$c.Name}}&nbsp;{{$c.Value}}</span>{{else}}<span class="muted">none</span>{{end}}</td>{{end}}
</tr>
{{end}}</table>
{{else}}<p class="muted">no upstream configured</p>{{end}}

{{with .Connections}}<h2>Connections</h2>
<table><tr><th>Listener</th><th>Transport</th><th>From clients</th><th>To upstreams</th></tr>
{{range .Listeners}}<tr><td>{{.Listen}}</td><td>{{.Transport}}</td><td class="n">{{.In}}</td><td class="n">{{.Out}}</td></tr>{{else}}<tr><td colspan="4" class="muted">no TCP or TLS listener</td></tr>{{end}}
{{range .Upstreams}}<tr><td>upstream {{.ID}}</td><td>{{.Transport}}</td><td></td><td class="n">{{.Open}}</td></tr>{{end}}
</table>{{end}}
{{with .Stats}}<h2>Counters</h2>
<div class="grid">
<table>
<tr><th colspan="2">Traffic</th></tr>
<tr><td>Datagrams received</td><td class="n">{{.DatagramsIn}}</td></tr>
<tr><td>Datagrams sent</td><td class="n">{{.DatagramsOut}}</td></tr>
<tr><td>Bytes received</td><td class="n">{{.BytesIn}}</td></tr>
<tr><td>Bytes sent</td><td class="n">{{.BytesOut}}</td></tr>
<tr><td>Requests received</td><td class="n">{{.Requests}}</td></tr>
<tr><td>Requests forwarded</td><td class="n">{{.RequestsForwarded}}</td></tr>
<tr><td>Responses received</td><td class="n">{{.ResponsesReceived}}</td></tr>
<tr><td>Responses forwarded</td><td class="n">{{.ResponsesForwarded}}</td></tr>
<tr><td>Kernel receive drops</td><td class="n">{{.KernelDrops}}</td></tr>
</table>
<table>
<tr><th colspan="2">Requests by method</th></tr>
{{range .Methods}}<tr><td>{{.Name}}</td><td class="n">{{.Value}}</td></tr>{{else}}<tr><td colspan="2" class="muted">none yet</td></tr>{{end}}
</table>
<table>
<tr><th colspan="2">Responses forwarded</th></tr>
{{range .Classes}}<tr><td>{{.Name}}</td><td class="n">{{.Value}}</td></tr>{{else}}<tr><td colspan="2" class="muted">none yet</td></tr>{{end}}
</table>
<table>
<tr><th colspan="2">Local replies</th></tr>
{{range .Local}}<tr><td>{{.Name}}</td><td class="n">{{.Value}}</td></tr>{{else}}<tr><td colspan="2" class="muted">none</td></tr>{{end}}
</table>
<table>
<tr><th colspan="2">Drops</th></tr>
{{range .Drops}}<tr><td>{{.Name}}</td><td class="n">{{.Value}}</td></tr>{{else}}<tr><td colspan="2" class="muted">none</td></tr>{{end}}
</table>
</div>{{end}}
<p class="muted">JSON: <a href="api/v1/upstreams">/api/v1/upstreams</a> · <a href="metrics">/metrics</a> · <a href="readyz">/readyz</a> · refreshed every 5 s</p>
</body>
</html>
`))

// statusData is what the status page shows.
type statusData struct {
	Ready     bool
	NotReady  []string
	Uptime    string
	Config    *metrics.ReloadStats
	Upstreams []statusUpstream
	Forwarded bool
	Stats     *statusCounters
	// Connections are the TCP and TLS connections (nil: not known).
	Connections *Connections
}

// statusUpstream is one row of the upstream table.
type statusUpstream struct {
	Upstream
	// Responses are the responses relayed from the upstream; nil when
	// the engine does not count them.
	Responses *responseClasses
}

// responseClasses are the non-zero response counts of one upstream by
// class, 5xx flagged.
type responseClasses struct {
	Classes []classCount
}

// classCount is the count of one status class; Alert marks server
// failures (5xx).
type classCount struct {
	Name  string
	Value uint64
	Alert bool
}

// statusUpstreams returns the upstreams with the responses relayed from
// each, when the engine counts them.
func (h *Handler) statusUpstreams() []statusUpstream {
	ups := h.upstreams()
	out := make([]statusUpstream, len(ups))
	var resp map[uint64][7]uint64
	var tab *balancer.Table
	if h.fwd != nil && h.pool != nil {
		resp = metrics.UpstreamResponsesByID(h.fwd)
		tab = h.pool.Table()
	}
	for i, u := range ups {
		out[i].Upstream = u
		if resp == nil {
			continue
		}
		var byClass [7]uint64
		if t, ok := tab.ByID(u.ID); ok {
			byClass = resp[t.IDHash()]
		}
		rc := new(responseClasses)
		for k := 1; k < len(byClass); k++ {
			if n := byClass[k]; n > 0 {
				rc.Classes = append(rc.Classes, classCount{metrics.ClassLabel(k), n, k == 5})
			}
		}
		out[i].Responses = rc
	}
	return out
}

// named is one labelled count.
type named struct {
	Name  string
	Value uint64
}

// statusCounters are the engine's counters summed for display; the lists
// hold the non-zero entries only.
type statusCounters struct {
	fastpath.Stats
	Requests, ResponsesForwarded   uint64
	Methods, Classes, Local, Drops []named
}

func countersOf(s fastpath.Stats) *statusCounters {
	c := &statusCounters{Stats: s}
	for i, n := range s.RequestsByMethod {
		c.Requests += n
		if n > 0 {
			c.Methods = appendNamed(c.Methods, metrics.MethodLabel(i), n)
		}
	}
	for k := 1; k < len(s.ResponsesForwarded); k++ {
		if n := s.ResponsesForwarded[k]; n > 0 {
			c.ResponsesForwarded += n
			c.Classes = append(c.Classes, named{metrics.ClassLabel(k), n})
		}
	}
	for i, n := range s.LocalReplies {
		if n > 0 {
			c.Local = append(c.Local, named{strconv.Itoa(fastpath.LocalCode(i).Status()), n})
		}
	}
	for i, n := range s.Drops {
		if n > 0 && fastpath.DropReason(i) != fastpath.DropNone {
			c.Drops = append(c.Drops, named{fastpath.DropReason(i).String(), n})
		}
	}
	return c
}

// appendNamed adds n to the entry called name, or appends one ("other"
// covers two indexes).
func appendNamed(l []named, name string, n uint64) []named {
	for i := range l {
		if l[i].Name == name {
			l[i].Value += n
			return l
		}
	}
	return append(l, named{name, n})
}

func (h *Handler) statusPage(w http.ResponseWriter, r *http.Request) {
	d := statusData{Uptime: ago(h.started)}
	d.NotReady = h.notReady()
	d.Ready = len(d.NotReady) == 0
	if h.reloads != nil {
		rs := h.reloads.Snapshot()
		if rs.Hash != "" {
			d.Config = &rs
		}
	}
	if h.ups != nil || h.pool != nil {
		d.Upstreams = h.statusUpstreams()
		d.Forwarded = h.fwd != nil && h.pool != nil
	}
	if h.eng != nil {
		d.Stats = countersOf(h.eng.Stats())
	}
	if h.conns != nil {
		c := h.conns()
		d.Connections = &c
	}
	var buf bytes.Buffer
	if err := statusTemplate.Execute(&buf, d); err != nil {
		h.log.Error("admin: status page", "err", err)
		writeText(w, http.StatusInternalServerError, "status page: "+err.Error()+"\n")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

// ago formats the time since t to the second.
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return fmt.Sprint(d)
}
