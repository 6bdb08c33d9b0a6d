package capture

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Traces are the per-call traces of the admin API: each is armed for one
// Call-ID or one user (the user part of the From or To URI) and keeps the
// messages that match, up to a count and for a time. A finished trace is
// kept for keepFinished so that it can be read, and at most maxKept
// traces are kept in all.
type Traces struct {
	limits TraceLimits

	mu   sync.Mutex
	all  []*trace // oldest first
	live int      // traces armed
	// onArm is called when a trace is armed (wakes the sender, which
	// ends traces on time).
	onArm func()

	// armed is the set the taps match against: nil when no trace is
	// armed, so that a tap with no collector costs one atomic load.
	armed atomic.Pointer[armedSet]
}

const (
	keepFinished = 15 * time.Minute
	maxKept      = 64
)

// Trace errors, which the admin API answers with 400, 404 or 429.
var (
	ErrTraceInvalid  = errors.New("invalid trace request")
	ErrTraceNotFound = errors.New("no such trace")
	ErrTooManyTraces = errors.New("too many traces armed")
)

// TraceSpec is what a trace matches and how long it runs.
type TraceSpec struct {
	// CallID matches the messages with this Call-ID (exactly).
	CallID string `json:"call_id,omitempty"`
	// User matches the messages whose From or To URI has this user part
	// (exactly, as user parts are case-sensitive).
	User string `json:"user,omitempty"`
	// MaxMessages ends the trace once it holds this many messages.
	MaxMessages int `json:"max_messages"`
	// Duration ends the trace this long after it was armed.
	Duration time.Duration `json:"duration"`
}

// Trace defaults when a request leaves them out.
const (
	DefaultTraceMessages = 100
	DefaultTraceDuration = time.Minute
	maxTraceKey          = 256
)

// check validates s against the limits, defaults applied.
func (l TraceLimits) check(s *TraceSpec) error {
	if (s.CallID == "") == (s.User == "") {
		return fmt.Errorf("%w: give exactly one of call_id and user", ErrTraceInvalid)
	}
	if err := checkKey("call_id", s.CallID); err != nil {
		return err
	}
	if err := checkKey("user", s.User); err != nil {
		return err
	}
	if s.MaxMessages == 0 {
		s.MaxMessages = min(DefaultTraceMessages, l.MaxMessages)
	}
	if s.MaxMessages < 1 || s.MaxMessages > l.MaxMessages {
		return fmt.Errorf("%w: max_messages must be 1 to %d, got %d", ErrTraceInvalid, l.MaxMessages, s.MaxMessages)
	}
	if s.Duration == 0 {
		s.Duration = min(DefaultTraceDuration, l.MaxDuration)
	}
	if s.Duration < time.Second || s.Duration > l.MaxDuration {
		return fmt.Errorf("%w: duration must be 1s to %v, got %v", ErrTraceInvalid, l.MaxDuration, s.Duration)
	}
	return nil
}

// checkKey refuses a Call-ID or user that no message could carry.
func checkKey(name, v string) error {
	if len(v) > maxTraceKey {
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrTraceInvalid, name, maxTraceKey)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: %s may not hold white space, control or non-ASCII characters (byte %d)", ErrTraceInvalid, name, i)
		}
	}
	if name == "user" && bytes.ContainsAny([]byte(v), "@;:<>") {
		return fmt.Errorf("%w: user is the user part of a URI alone, without scheme, @host or parameters", ErrTraceInvalid)
	}
	return nil
}

// trace is one trace. Its spec and times never change; msgs and state
// are guarded by Traces.mu.
type trace struct {
	id      string
	spec    TraceSpec
	callID  []byte
	user    []byte
	started time.Time
	ends    time.Time

	msgs   []TracedMessage
	ended  time.Time // zero while armed
	reason string    // why it ended: max_messages, duration, stopped
}

// matches reports whether a message belongs to the trace.
func (tr *trace) matches(info *msgInfo) bool {
	if tr.callID != nil {
		return bytes.Equal(info.callID, tr.callID)
	}
	return bytes.Equal(uriUser(info.from), tr.user) || bytes.Equal(uriUser(info.to), tr.user)
}

// armedSet is the set of armed traces the taps see.
type armedSet struct{ traces []*trace }

func (s *armedSet) match(info *msgInfo) bool {
	for _, tr := range s.traces {
		if tr.matches(info) {
			return true
		}
	}
	return false
}

// TracedMessage is one message of a trace.
type TracedMessage struct {
	Time     time.Time
	Src, Dst netip.AddrPort
	Proto    uint8 // ProtoUDP or ProtoTCP
	Out      bool  // sent by Viaduct (else received)
	Payload  []byte
}

// TraceInfo describes a trace.
type TraceInfo struct {
	ID       string    `json:"id"`
	CallID   string    `json:"call_id,omitempty"`
	User     string    `json:"user,omitempty"`
	Max      int       `json:"max_messages"`
	Duration string    `json:"duration"`
	Started  time.Time `json:"started"`
	Ends     time.Time `json:"ends"`
	Active   bool      `json:"active"`
	Ended    string    `json:"ended_by,omitempty"`
	Messages int       `json:"messages"`
}

func newTraces(l TraceLimits) *Traces { return &Traces{limits: l} }

// Arm starts a trace of spec (defaults filled in) and returns it.
func (ts *Traces) Arm(spec TraceSpec, now time.Time) (TraceInfo, error) {
	if err := ts.limits.check(&spec); err != nil {
		return TraceInfo{}, err
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.live >= ts.limits.MaxActive {
		return TraceInfo{}, fmt.Errorf("%w: %d armed, capture.traces.max_active is %d", ErrTooManyTraces, ts.live, ts.limits.MaxActive)
	}
	tr := &trace{id: newTraceID(), spec: spec, started: now, ends: now.Add(spec.Duration)}
	if spec.CallID != "" {
		tr.callID = []byte(spec.CallID)
	} else {
		tr.user = []byte(spec.User)
	}
	ts.evict(now)
	ts.all = append(ts.all, tr)
	ts.live++
	ts.publish()
	if ts.onArm != nil {
		ts.onArm()
	}
	return tr.info(), nil
}

// newTraceID returns 16 random hex digits.
func newTraceID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// evict forgets the finished traces past keepFinished, and the oldest
// finished ones beyond maxKept. ts.mu is held.
func (ts *Traces) evict(now time.Time) {
	ts.all = slices.DeleteFunc(ts.all, func(tr *trace) bool {
		return !tr.ended.IsZero() && now.Sub(tr.ended) > keepFinished
	})
	for i := 0; len(ts.all) >= maxKept && i < len(ts.all); {
		if !ts.all[i].ended.IsZero() {
			ts.all = slices.Delete(ts.all, i, i+1)
			continue
		}
		i++
	}
}

// publish stores the armed set for the taps. ts.mu is held.
func (ts *Traces) publish() {
	var set []*trace
	for _, tr := range ts.all {
		if tr.ended.IsZero() {
			set = append(set, tr)
		}
	}
	if len(set) == 0 {
		ts.armed.Store(nil)
		return
	}
	ts.armed.Store(&armedSet{traces: set})
}

// end ends tr for reason. ts.mu is held; the caller publishes.
func (ts *Traces) end(tr *trace, now time.Time, reason string) {
	if tr.ended.IsZero() {
		tr.ended, tr.reason = now, reason
		ts.live--
	}
}

// expire ends the traces whose time is up (the sender calls it after each
// pass over the rings).
func (ts *Traces) expire(now time.Time) {
	if ts.armed.Load() == nil {
		return
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.expireLocked(now)
}

// expireLocked is expire with ts.mu held.
func (ts *Traces) expireLocked(now time.Time) {
	changed := false
	for _, tr := range ts.all {
		if tr.ended.IsZero() && !now.Before(tr.ends) {
			ts.end(tr, tr.ends, "duration")
			changed = true
		}
	}
	if changed {
		ts.publish()
	}
}

// record files the HEP frame of a captured message with the armed traces
// it matches (the sender calls it for the records a tap flagged).
func (ts *Traces) record(frame []byte, out bool) {
	var f Frame
	if _, err := Decode(frame, &f); err != nil {
		return
	}
	var info msgInfo
	scanMessage(f.Payload, &info, true)
	m := TracedMessage{Time: time.Unix(int64(f.Sec), int64(f.Usec)*1000), Src: f.Src, Dst: f.Dst, Proto: f.Proto, Out: out}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	changed := false
	for _, tr := range ts.all {
		if !tr.ended.IsZero() || !tr.matches(&info) || m.Time.After(tr.ends) {
			continue
		}
		if m.Payload == nil {
			m.Payload = bytes.Clone(f.Payload)
		}
		tr.msgs = append(tr.msgs, m)
		if len(tr.msgs) >= tr.spec.MaxMessages {
			ts.end(tr, m.Time, "max_messages")
			changed = true
		}
	}
	if changed {
		ts.publish()
	}
}

// Stop ends the trace id (it stays readable) and returns it.
func (ts *Traces) Stop(id string, now time.Time) (TraceInfo, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	tr := ts.find(id)
	if tr == nil {
		return TraceInfo{}, ErrTraceNotFound
	}
	ts.end(tr, now, "stopped")
	ts.publish()
	return tr.info(), nil
}

// Get returns the trace id and a copy of its messages in the order they
// were captured.
func (ts *Traces) Get(id string) (TraceInfo, []TracedMessage, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.expireLocked(time.Now())
	tr := ts.find(id)
	if tr == nil {
		return TraceInfo{}, nil, ErrTraceNotFound
	}
	msgs := slices.Clone(tr.msgs)
	slices.SortStableFunc(msgs, func(a, b TracedMessage) int { return a.Time.Compare(b.Time) })
	return tr.info(), msgs, nil
}

// List returns every trace kept, oldest first.
func (ts *Traces) List() []TraceInfo {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.expireLocked(time.Now())
	out := make([]TraceInfo, 0, len(ts.all))
	for _, tr := range ts.all {
		out = append(out, tr.info())
	}
	return out
}

// Active returns the number of traces armed.
func (ts *Traces) Active() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.expireLocked(time.Now())
	return ts.live
}

func (ts *Traces) find(id string) *trace {
	for _, tr := range ts.all {
		if tr.id == id {
			return tr
		}
	}
	return nil
}

// info describes tr. Traces.mu is held.
func (tr *trace) info() TraceInfo {
	return TraceInfo{ID: tr.id, CallID: tr.spec.CallID, User: tr.spec.User, Max: tr.spec.MaxMessages,
		Duration: tr.spec.Duration.String(), Started: tr.started, Ends: tr.ends, Active: tr.ended.IsZero(),
		Ended: tr.reason, Messages: len(tr.msgs)}
}
