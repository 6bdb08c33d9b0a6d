package fastpath

import (
	"bytes"
	"net/netip"

	"github.com/cespare/xxhash/v2"
	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

// Picker chooses the upstream for a balanced request (one that is not
// routed by its Route or Request-URI). keyHash is balancer.HashKey of the
// key that Config.Keys names for the request's method (the Call-ID when the
// request lacks that key); inDialog reports whether the request belongs to
// an existing dialog (see the package documentation), which a draining
// upstream still accepts. Pick must return the same upstream for the same
// key while the upstream set is unchanged, must not allocate, and is called
// concurrently by every worker. ok is false when no upstream is available;
// the request is then answered 503.
//
// The engine's default is the balancer.Pool built from Config.Upstreams or
// Config.Targets (see Engine.Pool), which also serves round robin;
// Config.Picker replaces it.
type Picker interface {
	Pick(keyHash uint64, inDialog bool) (upstream netip.AddrPort, ok bool)
}

// PoolPicker adapts a balancer.Pool to Picker: every Pick loads the pool's
// current table (one atomic load) and picks from it by the key hash, so
// health and admin changes made on the pool apply to the next request.
func PoolPicker(p *balancer.Pool) Picker { return poolPicker{p} }

type poolPicker struct{ p *balancer.Pool }

// Pick implements Picker.
func (pp poolPicker) Pick(key uint64, inDialog bool) (netip.AddrPort, bool) {
	t, ok := pp.p.Table().Pick(key, inDialog)
	if !ok {
		return netip.AddrPort{}, false
	}
	return t.Addr, true
}

// poolTargets returns the targets of the default pool for a configuration
// with defaults applied: Config.Targets, or every Config.Upstreams address
// with weight 1 and the default ID. Addresses are unmapped.
func poolTargets(c *Config) []balancer.Target {
	if len(c.Targets) > 0 {
		return append([]balancer.Target(nil), c.Targets...)
	}
	ts := make([]balancer.Target, len(c.Upstreams))
	for i, u := range c.Upstreams {
		a := netip.AddrPortFrom(u.Addr().Unmap(), u.Port())
		udp := transport.UDP.String()
		ts[i] = balancer.Target{ID: balancer.DefaultID(udp, a), Addr: a, Transport: udp, Weight: balancer.DefaultWeight}
	}
	return ts
}

// maxKeyUnescape is the longest URI user part unescaped before hashing;
// a longer one is hashed as written.
const maxKeyUnescape = 256

// keyRule is a balancer.KeyRule ready for the hot path: the header name as
// bytes for parser.Message.FindName.
type keyRule struct {
	kind   balancer.KeyKind
	header []byte
}

// keyPolicy is Config.Keys compiled: the rule of every method the parser
// names in an array, the policy itself for other methods, and the header
// names of its header rules as bytes.
type keyPolicy struct {
	byMethod [NumMethods]keyRule
	policy   *balancer.Policy
	headers  []namedHeader
}

type namedHeader struct {
	name string
	b    []byte
}

func compilePolicy(p *balancer.Policy) keyPolicy {
	kp := keyPolicy{policy: p}
	for _, r := range p.Rules() {
		if kr, err := balancer.ParseKeyRule(r); err == nil && kr.Kind == balancer.KeyHeader {
			kp.headers = append(kp.headers, namedHeader{kr.Header, []byte(kr.Header)})
		}
	}
	for m := parser.Method(1); int(m) < NumMethods; m++ {
		if name := m.String(); name != "" {
			kp.byMethod[m] = kp.compile(p.For([]byte(name)))
		}
	}
	// CANCEL and the ACK of a non-2xx response must reach the INVITE's
	// upstream: they hash the INVITE's key, whatever the policy says.
	// Their Request-URI, Call-ID, From and To URIs are the INVITE's (RFC
	// 3261 9.1, 17.1.1.3; aorHash ignores the To tag), so every key but
	// header:NAME (a header they need not copy) hashes as the INVITE's.
	kp.byMethod[parser.MethodCANCEL] = kp.byMethod[parser.MethodINVITE]
	kp.byMethod[parser.MethodACK] = kp.byMethod[parser.MethodINVITE]
	return kp
}

func (kp *keyPolicy) compile(r balancer.KeyRule) keyRule {
	if r.Kind != balancer.KeyHeader {
		return keyRule{kind: r.Kind}
	}
	for i := range kp.headers {
		if kp.headers[i].name == r.Header {
			return keyRule{kind: r.Kind, header: kp.headers[i].b}
		}
	}
	return keyRule{kind: balancer.KeyCallID} // not reached: Rules lists every header rule
}

// rule returns the key rule for the request in m.
func (kp *keyPolicy) rule(m *parser.Message) keyRule {
	if id := m.MethodID(); id != parser.MethodOther && int(id) < NumMethods {
		return kp.byMethod[id]
	}
	return kp.compile(kp.policy.For(m.Method()))
}

// inDialog reports whether a request is picked as part of an existing
// dialog (balancer.Table.Pick's inDialog): it has a To tag, and it is
// neither a CANCEL nor what looks like the ACK of a non-2xx final response.
// Those two belong to the INVITE's transaction and must reach where the
// INVITE went, which was picked as a new dialog. The ACK of a 2xx follows
// the dialog's route set (RFC 3261 12.2.1.1, 13.2.2.4), the ACK of a non-2xx
// copies the INVITE's Route headers (17.1.1.3), so without state the
// difference shows only as a Route header: an ACK without Route is taken
// for a non-2xx ACK (Kamailio's default script makes the same call: an ACK
// with a To tag that loose_route does not match is hop-by-hop).
func inDialog(meth parser.Method, toTag []byte, routes int) bool {
	if len(toTag) == 0 || meth == parser.MethodCANCEL {
		return false
	}
	return meth != parser.MethodACK || routes > 0
}

// pick chooses the upstream of a balanced request into r (dest, and for a
// pool target its ID hash, counted and transport): by Config.Picker (UDP),
// or from the pool's current table with the worker's round-robin cursor,
// hashing the request's key only when the table needs it. It reports false
// when there is none.
func (w *Worker) pick(r *reqState, inDialog bool) bool {
	e := w.e
	if e.picker != nil {
		var ok bool
		r.dest, ok = e.picker.Pick(w.keyHash(&r.to, r.receivedRURI()), inDialog)
		return ok
	}
	tab := e.pool.Table()
	var h uint64
	if tab.NeedsKey() {
		h = w.keyHash(&r.to, r.receivedRURI())
	}
	t, ok := tab.Select(h, &w.rr, inDialog)
	if !ok {
		return false
	}
	r.dest, r.picked, r.counted, r.sendKind = t.Addr, t.IDHash(), true, targetKind(t.Transport)
	r.acceptsTCP = t.AcceptsTCP
	return true
}

// keyHash returns balancer.HashKey of the request's balancing key, as the
// policy names it for the method, or of its Call-ID when the request lacks
// that key (counted in Stats.KeyFallbacks). to is the parsed To header;
// ruri is the Request-URI as received, already parsed, or nil to have it
// parsed here.
func (w *Worker) keyHash(to *parser.NameAddr, ruri *parser.URI) uint64 {
	m := &w.m
	r := w.rt.keys.rule(m)
	var (
		h  uint64
		ok bool
	)
	switch r.kind {
	case balancer.KeyCallID:
		return xxhash.Sum64(m.CallID())
	case balancer.KeyToAOR:
		h, ok = w.aorHash(to.URI)
	case balancer.KeyFromURI:
		if from, err := m.From(); err == nil {
			h, ok = w.aorHash(from.URI)
		}
	case balancer.KeyRequestUser, balancer.KeyRequestAOR:
		var u parser.URI
		if ruri == nil {
			if parser.ParseURI(m.RequestURI(), &u) != nil {
				break
			}
			ruri = &u
		}
		if r.kind == balancer.KeyRequestUser {
			h, ok = w.ruriUserHash(ruri)
		} else {
			// The To AOR's normalisation: one AOR, one hash, whichever
			// header it is read from.
			h, ok = w.uriAORHash(ruri)
		}
	case balancer.KeyHeader:
		if hd, found := m.FindName(r.header); found && len(hd.Value) > 0 {
			h, ok = xxhash.Sum64(hd.Value), true
		}
	}
	if !ok {
		w.c.keyFallback.inc()
		return xxhash.Sum64(m.CallID())
	}
	return h
}

// aorHash hashes the address of record of a SIP or SIPS URI: user@host
// (host alone without a user part), the user part unescaped, the host
// lower-cased, without scheme, password, port, parameters or headers. It is
// balancer.HashKey of that string, computed without building it. Other
// schemes, and URIs that do not parse, have no AOR here. It serves to-aor,
// from-uri and ruri-aor alike, so that an AOR hashes the same from any of
// them.
func (w *Worker) aorHash(uri []byte) (uint64, bool) {
	var u parser.URI
	if parser.ParseURI(uri, &u) != nil {
		return 0, false
	}
	return w.uriAORHash(&u)
}

// uriAORHash is aorHash of a parsed URI.
func (w *Worker) uriAORHash(u *parser.URI) (uint64, bool) {
	if !u.IsSIP() || len(u.Host) == 0 {
		return 0, false
	}
	user := w.unescapeUser(u.User)
	if n := len(user) + 1 + len(u.Host); n <= cap(w.aorBuf) {
		// Build user@host in the worker's buffer and hash it at once
		// (faster than streaming three pieces through a Digest).
		b := w.aorBuf[:0]
		if len(user) > 0 {
			b = append(b, user...)
			b = append(b, '@')
		}
		for _, c := range u.Host {
			b = append(b, parser.Lower(c))
		}
		return xxhash.Sum64(b), true
	}
	d := w.xx
	d.Reset()
	if len(user) > 0 {
		d.Write(user)
		d.Write(atSign)
	}
	writeLower(d, u.Host)
	return d.Sum64(), true
}

// ruriUserHash hashes the user part of a parsed Request-URI: a SIP or SIPS
// URI's user (unescaped), or a tel URI's number (as written, without
// parameters).
func (w *Worker) ruriUserHash(u *parser.URI) (uint64, bool) {
	if u.IsSIP() {
		if len(u.User) == 0 {
			return 0, false
		}
		return xxhash.Sum64(w.unescapeUser(u.User)), true
	}
	if parser.EqualFold(u.Scheme, "tel") {
		num := u.Opaque
		if i := bytes.IndexByte(num, ';'); i >= 0 {
			num = num[:i]
		}
		if len(num) > 0 {
			return xxhash.Sum64(num), true
		}
	}
	return 0, false
}

// unescapeUser returns a URI user part with its %XX escapes decoded (RFC
// 3261 19.1.4: escaped and unescaped characters compare equal), in the
// worker's key buffer; as written when it has no escape, is malformed or
// is longer than maxKeyUnescape.
func (w *Worker) unescapeUser(user []byte) []byte {
	if bytes.IndexByte(user, '%') < 0 || len(user) > cap(w.keyBuf) {
		return user
	}
	b, err := parser.Unescape(w.keyBuf[:0], user)
	if err != nil {
		return user
	}
	return b
}

var atSign = []byte{'@'}
