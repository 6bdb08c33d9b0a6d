package load

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"time"

	"github.com/viaduct-sip/viaduct/internal/enum"
	"github.com/viaduct-sip/viaduct/transport"
)

// Scenario is what the UAC does for each "call" it starts.
type Scenario int

// The scenarios.
const (
	// ScenarioCall is INVITE, (100), 180, 200, ACK, hold, BYE, 200. A 3xx-6xx
	// final response to the INVITE is acknowledged and counted by code.
	ScenarioCall Scenario = iota
	// ScenarioRegister is one REGISTER transaction answered by 200.
	ScenarioRegister
	// ScenarioOptions is one OPTIONS transaction answered by 200.
	ScenarioOptions
	// ScenarioMessage is one MESSAGE transaction answered by 200 (or 202).
	ScenarioMessage
)

var scenarioNames = [...]string{"call", "register", "options", "message"}

// String returns the scenario's name as the CLI spells it.
func (s Scenario) String() string { return enum.Name(scenarioNames[:], s, "Scenario") }

// ParseScenario returns the scenario named s ("call", "register",
// "options" or "message").
func ParseScenario(s string) (Scenario, error) {
	if sc, ok := enum.Parse[Scenario](scenarioNames[:], strings.ToLower(s)); ok {
		return sc, nil
	}
	return 0, fmt.Errorf("unknown scenario %q (want call, register, options or message)", s)
}

// RFC 3261 timer defaults.
const (
	DefaultT1 = 500 * time.Millisecond
	DefaultT2 = 4 * time.Second
)

// UACConfig configures a UAC (the traffic generator). The zero value of a
// field means its default, documented on the field; Target is required.
type UACConfig struct {
	// Target is where every request is sent (the server under test or the
	// proxy in front of it).
	Target netip.AddrPort
	// Scenario is what each call does. Default ScenarioCall.
	Scenario Scenario

	// Transport is udp (the default), tcp or tls. On tcp and tls requests
	// are not retransmitted (RFC 3261 17.1.1.2, 17.1.2.2), the Via says TCP
	// or TLS and the Contact carries ;transport=tcp or tls.
	Transport transport.Kind
	// Connections is how calls use connections on tcp and tls: one shared
	// connection per source (default) or one per call.
	Connections Connections
	// TLS is the client configuration for tls (see ClientTLSConfig);
	// required with it. Its ServerName defaults to the target's address.
	TLS *tls.Config
	// DialTimeout bounds opening a connection, TLS handshake included.
	// Default 5s.
	DialTimeout time.Duration

	// Sources is the number of local sockets (source address and port
	// pairs) traffic is sent from, so per-source limits and SO_REUSEPORT
	// spreading on the target see many clients. Each source is served by
	// its own goroutine. Default: runtime.GOMAXPROCS(0).
	Sources int
	// Bind lists the local addresses sources bind to, used round-robin.
	// Default: the address the kernel would use to reach Target.
	Bind []netip.Addr
	// BindPort, when non-zero, is the first local port: source i binds
	// BindPort+i. Default: ephemeral ports.
	BindPort int

	// PaceQuantum groups the calls of each source into bursts: calls due
	// within one quantum start together, which lets every hop batch its
	// datagrams into fewer system calls and wake-ups. The rate is the
	// same; it is only smooth at this granularity instead of per call.
	// Default 1ms; a negative value paces every call individually.
	PaceQuantum time.Duration

	// MaxOutstanding bounds the calls in progress (over all sources); when
	// reached, new calls wait. Default 65536.
	MaxOutstanding int
	// CallHold is the time between the 200 to the INVITE and the BYE.
	CallHold time.Duration
	// SDPSize is the size in bytes of the INVITE's SDP body; the default
	// SDP (about 130 bytes) is padded with attribute lines to reach it.
	// 0 means the default SDP.
	SDPSize int
	// BodySize is the size of a MESSAGE body in bytes. Default 32.
	BodySize int

	// User is the template for the called user (Request-URI and To),
	// FromUser for the caller (From and Contact); "{n}" is replaced by the
	// call's user number, which runs from UserStart through
	// UserStart+UserCount-1 and wraps. For REGISTER, User is the
	// registering user. Defaults "{n}" and "load", UserStart 100000,
	// UserCount 100000.
	User, FromUser       Template
	UserStart, UserCount uint64
	// Domain is the host part of the Request-URI, From and To. Default:
	// the target's address and port.
	Domain string

	// NoRetrans switches off retransmissions (RFC 3261 Timers A and E).
	NoRetrans bool
	// T1 and T2 are the RFC 3261 timer values. Defaults 500ms and 4s.
	T1, T2 time.Duration
	// Timeout is how long a transaction may wait for its final response
	// before the call fails (Timers B and F). Default 64*T1.
	Timeout time.Duration

	// RecvBuffer and SendBuffer are the socket buffer sizes. Default 16 MiB
	// receive (a burst or a scheduling hiccup then queues instead of being
	// dropped) and 4 MiB send; without CAP_NET_ADMIN the kernel caps them at
	// net.core.rmem_max and wmem_max.
	RecvBuffer, SendBuffer int
	// BatchSize is the number of datagrams per recvmmsg/sendmmsg. Default 64.
	BatchSize int
}

// withDefaults validates c and returns a copy with defaults filled in.
func (c UACConfig) withDefaults() (UACConfig, error) {
	if !c.Target.IsValid() || c.Target.Port() == 0 {
		return c, errors.New("target address (host:port) is required")
	}
	if c.Scenario < ScenarioCall || c.Scenario > ScenarioMessage {
		return c, fmt.Errorf("invalid scenario %d", c.Scenario)
	}
	if err := c.streamDefaults(); err != nil {
		return c, err
	}
	if c.Sources == 0 {
		c.Sources = runtime.GOMAXPROCS(0)
	}
	if c.Sources < 0 || c.Sources > 65535 {
		return c, fmt.Errorf("sources %d out of range 1..65535", c.Sources)
	}
	if c.BindPort < 0 || c.BindPort+c.Sources-1 > 65535 {
		return c, fmt.Errorf("bind port %d with %d sources exceeds port 65535", c.BindPort, c.Sources)
	}
	if c.PaceQuantum == 0 {
		c.PaceQuantum = time.Millisecond
	}
	if c.PaceQuantum > time.Second {
		return c, fmt.Errorf("pace quantum %v longer than a second", c.PaceQuantum)
	}
	if c.MaxOutstanding == 0 {
		c.MaxOutstanding = 65536
	}
	if c.MaxOutstanding < 0 {
		return c, fmt.Errorf("max-outstanding %d must be positive", c.MaxOutstanding)
	}
	if c.MaxOutstanding < c.Sources {
		c.MaxOutstanding = c.Sources
	}
	if c.CallHold < 0 {
		return c, fmt.Errorf("call hold %v must not be negative", c.CallHold)
	}
	if c.SDPSize < 0 || c.SDPSize > 60000 {
		return c, fmt.Errorf("SDP size %d out of range 0..60000", c.SDPSize)
	}
	if c.BodySize == 0 {
		c.BodySize = 32
	}
	if c.BodySize < 0 || c.BodySize > 60000 {
		return c, fmt.Errorf("body size %d out of range 0..60000", c.BodySize)
	}
	if c.User.parts == nil {
		c.User = MustTemplate("{n}")
	}
	if c.FromUser.parts == nil {
		c.FromUser = MustTemplate("load")
	}
	if c.UserStart == 0 && c.UserCount == 0 {
		c.UserStart = 100000
	}
	if c.UserCount == 0 {
		c.UserCount = 100000
	}
	if c.Domain == "" {
		c.Domain = c.Target.String()
	}
	for i := 0; i < len(c.Domain); i++ {
		if ch := c.Domain[i]; ch <= ' ' || ch == '@' || ch == '<' || ch == '>' || ch == ';' || ch == '"' || ch >= 0x7f {
			return c, fmt.Errorf("domain %q: character %q not allowed", c.Domain, ch)
		}
	}
	if c.T1 == 0 {
		c.T1 = DefaultT1
	}
	if c.T2 == 0 {
		c.T2 = DefaultT2
	}
	if c.T1 < time.Millisecond || c.T2 < c.T1 {
		return c, fmt.Errorf("timers T1 %v and T2 %v: want 1ms <= T1 <= T2", c.T1, c.T2)
	}
	if c.Timeout == 0 {
		c.Timeout = 64 * c.T1
	}
	if c.Timeout < 0 {
		return c, fmt.Errorf("timeout %v must be positive", c.Timeout)
	}
	if err := socketDefaults(&c.RecvBuffer, &c.SendBuffer, &c.BatchSize); err != nil {
		return c, err
	}
	return c, nil
}

// socketDefaults fills in the socket settings the UAC and the UAS share:
// 16 MiB receive and 4 MiB send buffers and batches of 64, and checks the
// batch size.
func socketDefaults(recvBuffer, sendBuffer, batchSize *int) error {
	if *recvBuffer == 0 {
		*recvBuffer = 16 << 20
	}
	if *sendBuffer == 0 {
		*sendBuffer = 4 << 20
	}
	if *batchSize == 0 {
		*batchSize = 64
	}
	if *batchSize < 1 || *batchSize > 1024 {
		return fmt.Errorf("batch size %d out of range 1..1024", *batchSize)
	}
	return nil
}

// streamDefaults checks and completes the transport settings.
func (c *UACConfig) streamDefaults() error {
	if err := checkTransport(&c.Transport); err != nil {
		return err
	}
	if c.Connections != ConnShared && c.Connections != ConnPerCall {
		return fmt.Errorf("invalid connections mode %d", c.Connections)
	}
	if c.Transport.Reliable() && c.Connections == ConnPerCall && c.BindPort != 0 {
		return errors.New("bind port: connections per call cannot share one local port")
	}
	if c.Transport.Secure() && c.TLS == nil {
		return errors.New("tls needs a client TLS configuration (a CA to trust, or insecure)")
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.DialTimeout < 0 {
		return fmt.Errorf("dial timeout %v must be positive", c.DialTimeout)
	}
	return nil
}
