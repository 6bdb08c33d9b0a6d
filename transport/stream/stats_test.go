package stream

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"gopkg.in/yaml.v3"

	"github.com/viaduct-sip/viaduct/internal/config"
	"github.com/viaduct-sip/viaduct/transport"
)

// The collector exports the counters with the transport label.
func TestCollector(t *testing.T) {
	s := serve(t, transport.TCP, ServerConfig{}, testLayout(), newRecorder(true))
	c := dialFrom(t, "", s.Addrs()[0])
	c.Write(sipMsg(1))
	readFull(t, c, len(sipMsg(1)))
	c.Write([]byte("OPTIONS sip:x SIP/2.0\r\n\r\n"))
	expectClosed(t, c)
	eventually(t, "closed", func() bool { return s.Stats().OpenIn[0] == 0 })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(Collector(s))
	want := `
# HELP viaduct_stream_accepted_total TCP/TLS connections accepted.
# TYPE viaduct_stream_accepted_total counter
viaduct_stream_accepted_total{transport="tcp"} 1
# HELP viaduct_stream_messages_total SIP messages received (in) and sent (out) over TCP/TLS.
# TYPE viaduct_stream_messages_total counter
viaduct_stream_messages_total{direction="in",transport="tcp"} 2
viaduct_stream_messages_total{direction="out",transport="tcp"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "viaduct_stream_accepted_total", "viaduct_stream_messages_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(Collector(s), "viaduct_stream_closed_total"); n != int(NumCloseReasons) {
		t.Errorf("%d closed_total series, want %d", n, NumCloseReasons)
	}
	var closed *dto.Metric
	for _, mf := range must(reg.Gather()) {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "viaduct_stream_closed_total" && labelIs(m, "reason", "bad_framing") {
				closed = m
			}
		}
	}
	if v := closed.GetCounter().GetValue(); v != 1 {
		t.Errorf("viaduct_stream_closed_total{reason=bad_framing} = %v, want 1", v)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func labelIs(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// The limits decode from YAML with the keys their errors name; the TLS
// files are not among them (Viaduct's tls block gives them).
func TestConfigYAML(t *testing.T) {
	var c ServerConfig
	in := "max_connections_per_ip: 7\nmessage_timeout: 2s\nidle_timeout: -1s\nwrite_queue: 1024\n"
	if err := yaml.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	want := ServerConfig{MaxConnectionsPerIP: 7, MessageTimeout: 2 * time.Second, IdleTimeout: -time.Second, WriteQueue: 1024}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("decoded %+v, want %+v", c, want)
	}
	dec := yaml.NewDecoder(strings.NewReader("cert_file: a.pem\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err == nil {
		t.Error("cert_file decoded into the limits block")
	}
}

// Defaults apply to zero fields; bad values name their key.
func TestConfigDefaults(t *testing.T) {
	c, err := ServerConfig{}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxConnections != DefaultMaxConnections || c.WriteQueue != DefaultWriteQueue || c.IdleTimeout != DefaultIdleTimeout ||
		c.MessageTimeout != DefaultMessageTimeout || c.idleTimeout(true) != 0 {
		t.Errorf("defaults %+v", c)
	}
	if c, _ := (ServerConfig{IdleTimeout: -1}).WithDefaults(); c.idleTimeout(false) != 0 {
		t.Errorf("negative idle timeout: %v, want none", c.idleTimeout(false))
	}
	for _, tc := range []struct {
		c   ServerConfig
		key string
	}{
		{ServerConfig{MaxConnections: -1}, "max_connections"},
		{ServerConfig{WriteQueue: -5}, "write_queue"},
		{ServerConfig{MessageTimeout: -time.Second}, "message_timeout"},
		{ServerConfig{MinVersion: "1.1"}, "min_version"},
		{ServerConfig{CertFile: "a.pem"}, "key_file"},
		{ServerConfig{ReconnectBackoff: time.Minute}, "max_reconnect_backoff"},
	} {
		_, err := tc.c.WithDefaults()
		var fe *config.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.key {
			t.Errorf("%+v: %v, want an error naming %s", tc.c, err, tc.key)
		}
	}
}
