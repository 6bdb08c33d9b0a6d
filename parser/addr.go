package parser

import "bytes"

// NameAddr is a From, To, Contact, Route, Record-Route or Path value:
// an optional display name, a URI, and header parameters.
type NameAddr struct {
	// Display is the display name as written (quotes included when quoted),
	// or nil.
	Display []byte
	// URI is the raw URI, without the angle brackets that may enclose it.
	// For a Contact of "*" it is "*".
	URI []byte
	// Params is the raw header parameter list after the URI (";tag=a;lr"),
	// starting with its first ';', or nil. When the URI is not enclosed in
	// angle brackets, every parameter after it belongs to the header, not
	// to the URI (RFC 3261 20.10).
	Params []byte
	// Tag is the value of the tag parameter, or nil.
	Tag []byte
	// Angle reports whether the URI was enclosed in angle brackets.
	Angle bool
}

// Param returns the value of the header parameter name and whether it is
// present.
func (a *NameAddr) Param(name string) ([]byte, bool) { return Param(a.Params, name) }

// ParseNameAddr parses b, one name-addr or addr-spec with its parameters,
// into a. Besides unterminated quoted strings and angle brackets it reports
// what RFC 3261 25.1 forbids and a proxy must not pass on: an unquoted
// display name that is not tokens and LWS (ErrBadDisplayName), white space
// inside the URI (ErrURIWhiteSpace), and a comma that starts a second value
// (ErrAddrList).
func ParseNameAddr(b []byte, a *NameAddr) error { return parseNameAddr(b, a, true) }

// parseNameAddr is ParseNameAddr; withTag false leaves a.Tag nil, for a
// caller that only validates.
func parseNameAddr(b []byte, a *NameAddr, withTag bool) error {
	*a = NameAddr{}
	b = trimWS(b)
	if len(b) == 0 {
		return ErrBadNameAddr
	}
	if len(b) == 1 && b[0] == '*' {
		a.URI = b
		return nil
	}
	i, err := a.parseDisplayName(b)
	if err != nil {
		return err
	}
	var rest []byte
	if i < len(b) && b[i] == '<' {
		gt := bytes.IndexByte(b[i:], '>')
		if gt < 0 {
			return ErrUnterminatedAngle
		}
		a.URI = trimWS(b[i+1 : i+gt])
		if hasSpaceOrCtl(a.URI) {
			return ErrURIWhiteSpace
		}
		a.Angle = true
		rest = b[i+gt+1:]
	} else {
		// addr-spec: the URI ends at the first ';' (or white space, or
		// a comma: a URI holding one must be in angle brackets, RFC 3261
		// 20.10, so a comma here starts a second value).
		j := i
		for j < len(b) && b[j] != ';' && b[j] != ',' && !isWS(b[j]) {
			if b[j] == '>' {
				return ErrBadNameAddr
			}
			j++
		}
		a.URI = b[i:j]
		rest = b[j:]
		if k := skipWS(b, j); k > j && k < len(b) && b[k] != ';' && b[k] != ',' {
			return ErrURIWhiteSpace // "sip:bob smith@host"
		}
	}
	if len(a.URI) == 0 {
		return ErrBadNameAddr
	}
	rest = trimWS(rest)
	if len(rest) > 0 {
		if rest[0] == ',' {
			return ErrAddrList
		}
		if rest[0] != ';' {
			return ErrBadNameAddr
		}
		a.Params = rest
		if a.Tag, err = scanHeaderParams(rest, withTag); err != nil {
			return err
		}
	}
	return nil
}

// parseDisplayName reads the display name at the start of b, if any, into
// a and returns where the rest begins: the '<' of a name-addr, or 0 for an
// addr-spec (which cannot hold '<'). A quoted display name must be followed
// by '<'; an unquoted one is tokens and LWS.
func (a *NameAddr) parseDisplayName(b []byte) (int, error) {
	if b[0] == '"' {
		j := scanQuoted(b, 0)
		if j < 0 {
			return 0, ErrUnterminatedQuote
		}
		a.Display = b[:j]
		i := skipWS(b, j)
		if i >= len(b) || b[i] != '<' {
			return 0, ErrBadNameAddr
		}
		return i, nil
	}
	lt := bytes.IndexByte(b, '<')
	if lt < 0 {
		return 0, nil // an addr-spec
	}
	bad := false
	for _, c := range b[:lt] {
		if displayTable[c] == 0 {
			if c == '"' {
				return 0, ErrBadNameAddr
			}
			bad = true
		}
	}
	if bad {
		return 0, ErrBadDisplayName
	}
	if d := trimWS(b[:lt]); len(d) > 0 {
		a.Display = d
	}
	return lt, nil
}

// displayTable marks the bytes of an unquoted display name (RFC 3261 25.1:
// *(token LWS)); it is never modified.
var displayTable = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		if isTokenChar(byte(c)) || isWS(byte(c)) {
			t[c] = 1
		}
	}
	return t
}()

// scanHeaderParams checks a ";name[=value]" list in one pass and, with
// withTag, returns the value of its first tag parameter (empty, not nil, for
// a tag without a value; nil when there is none): every quoted value must be
// terminated, and a comma outside quotes ends the value (parameter values
// are tokens, hosts or quoted strings), so a second value follows:
// ErrAddrList. Runs of other bytes are skipped four at a time.
func scanHeaderParams(p []byte, withTag bool) (tag []byte, err error) {
	if !hasQuoteOrComma(p) {
		if withTag {
			tag = firstTag(p)
		}
		return tag, nil
	}
	for i := scanRun(p, 0, &plainParamTable); i < len(p); i = scanRun(p, i+1, &plainParamTable) {
		switch p[i] {
		case '"':
			j := scanQuoted(p, i)
			if j < 0 {
				return nil, ErrUnterminatedQuote
			}
			i = j - 1
		case ',':
			return nil, ErrAddrList
		case ';':
			if withTag && tag == nil {
				tag = tagAt(p, i+1)
			}
		}
	}
	return tag, nil
}

// firstTag returns the value of the first tag parameter of a list that
// holds no quoted string (see scanHeaderParams).
func firstTag(p []byte) []byte {
	for i := 0; i < len(p); {
		k := bytes.IndexByte(p[i:], ';')
		if k < 0 {
			return nil
		}
		i += k + 1
		if tag := tagAt(p, i); tag != nil {
			return tag
		}
	}
	return nil
}

// hasQuoteOrComma reports whether p holds '"' or ',', eight bytes at a
// time: a zero byte of x ^ c shows as in belowSPOr.
func hasQuoteOrComma(p []byte) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	const quotes, commas = '"' * ones, ',' * ones
	i := 0
	for ; i+8 <= len(p); i += 8 {
		x := load64(p[i:])
		y, z := x^quotes, x^commas
		if ((y-ones)&^y|(z-ones)&^z)&highs != 0 {
			return true
		}
	}
	for ; i < len(p); i++ {
		if p[i] == '"' || p[i] == ',' {
			return true
		}
	}
	return false
}

// plainParamTable marks every byte but '"', ',' and ';'; it is never
// modified.
var plainParamTable = func() (t [256]uint8) {
	for c := range t {
		if c != '"' && c != ',' && c != ';' {
			t[c] = 1
		}
	}
	return t
}()

// tagAt returns the value of the parameter starting at p[i] (after its ';')
// when it is named tag, else nil. The value runs to the next ';', comma or
// white space; a quoted one keeps its quotes, as Param returns it.
func tagAt(p []byte, i int) []byte {
	i = skipWS(p, i)
	if i+3 > len(p) || p[i]|0x20 != 't' || p[i+1]|0x20 != 'a' || p[i+2]|0x20 != 'g' {
		return nil
	}
	i += 3
	if i < len(p) && p[i] != '=' && p[i] != ';' && !isWS(p[i]) {
		return nil // a longer name ("tagx")
	}
	i = skipWS(p, i)
	if i == len(p) || p[i] != '=' {
		return p[i:i] // no value
	}
	i = skipWS(p, i+1)
	if i < len(p) && p[i] == '"' {
		if j := scanQuoted(p, i); j > 0 {
			return p[i:j]
		}
		return p[i:]
	}
	return p[i:scanRun(p, i, &tagValueTable)]
}

// tagValueTable marks the bytes that continue an unquoted tag value: all but
// ';', ',' and white space; it is never modified.
var tagValueTable = func() (t [256]uint8) {
	for c := range t {
		if c != ';' && c != ',' && !isWS(byte(c)) {
			t[c] = 1
		}
	}
	return t
}()

// Param looks up name in a parameter list such as ";transport=udp;lr"
// (the leading ';' is optional) and returns its value and whether it is
// present. Names compare case-insensitively. A parameter without a value
// returns an empty, non-nil slice; a quoted value is returned with its
// quotes.
func Param(params []byte, name string) (value []byte, present bool) {
	i := 0
	for i < len(params) {
		i = skipWS(params, i)
		if i < len(params) && params[i] == ';' {
			i = skipWS(params, i+1)
		}
		ns := i
		for i < len(params) && params[i] != '=' && params[i] != ';' && !isWS(params[i]) {
			i++
		}
		n := params[ns:i]
		i = skipWS(params, i)
		var val []byte
		if i < len(params) && params[i] == '=' {
			i = skipWS(params, i+1)
			vs := i
			if i < len(params) && params[i] == '"' {
				if j := scanQuoted(params, i); j > 0 {
					i = j
				} else {
					i = len(params)
				}
			} else {
				for i < len(params) && params[i] != ';' && !isWS(params[i]) {
					i++
				}
			}
			val = params[vs:i]
		} else {
			val = params[i:i]
		}
		if len(n) > 0 && equalFold(n, name) {
			return val, true
		}
		if len(n) == 0 && (i >= len(params) || params[i] != ';') {
			if i < len(params) {
				i++ // skip a stray character so the loop always advances
			}
		}
	}
	return nil, false
}

// URI is a parsed URI. For sip and sips URIs (RFC 3261 19.1) every part is
// split out; any other scheme (tel, urn, ...) is passed through as Opaque.
type URI struct {
	Scheme   []byte
	User     []byte // still escaped; see Unescape
	Password []byte
	Host     []byte // an IPv6 reference comes without brackets, with IPv6 set
	IPv6     bool
	Port     int    // 0 when absent
	Params   []byte // ";transport=udp;lr" or nil
	Headers  []byte // the part after '?', without it, or nil
	Opaque   []byte // for schemes other than sip and sips: everything after "scheme:"
}

// IsSIP reports whether the URI's scheme is sip or sips.
func (u *URI) IsSIP() bool {
	s := u.Scheme
	switch len(s) {
	case 3:
		return s[0]|0x20 == 's' && s[1]|0x20 == 'i' && s[2]|0x20 == 'p'
	case 4:
		return load32(s)|fold32 == load32s("sips")
	}
	return false
}

// Param returns the value of the URI parameter name and whether it is
// present ("lr" is present with an empty value).
func (u *URI) Param(name string) ([]byte, bool) { return Param(u.Params, name) }

// ParseURI parses b into u. Besides the structure it checks what a proxy
// must not pass on: white space or control characters inside the URI, and
// for sip and sips URIs an IPv6 reference that is not an IPv6 address or an
// IPv6 address without its brackets.
func ParseURI(b []byte, u *URI) error {
	*u = URI{}
	b = trimWS(b)
	if hasSpaceOrCtl(b) {
		return ErrURIWhiteSpace
	}
	colon := bytes.IndexByte(b, ':')
	if colon <= 0 {
		return ErrBadURI
	}
	u.Scheme = b[:colon]
	for i, c := range u.Scheme {
		alpha := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !alpha && (i == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return ErrBadURI
		}
	}
	rest := b[colon+1:]
	if !u.IsSIP() {
		if len(rest) == 0 {
			return ErrBadURI
		}
		u.Opaque = rest
		return nil
	}
	// userinfo@: the user part may hold ';' and '?' but never an unescaped '@'.
	if at := bytes.IndexByte(rest, '@'); at >= 0 {
		ui := rest[:at]
		if pc := bytes.IndexByte(ui, ':'); pc >= 0 {
			u.User, u.Password = ui[:pc], ui[pc+1:]
		} else {
			u.User = ui
		}
		if len(u.User) == 0 || (bytes.IndexByte(ui, '%') >= 0 && !validEscapes(ui)) {
			return ErrBadURI
		}
		rest = rest[at+1:]
	}
	host, ipv6, i, err := scanHost(rest, 0)
	if err != nil {
		if err != ErrBadIPv6 && len(rest) > 0 && rest[0] != '[' && unbracketedIPv6(rest) {
			err = ErrIPv6NoBrackets
		}
		return uriError(err)
	}
	u.Host, u.IPv6 = host, ipv6
	if i < len(rest) && rest[i] == ':' {
		j := i + 1
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		port, ok := parseUint(rest[i+1:j], 65535)
		if !ok || (j < len(rest) && rest[j] == ':') {
			if !ipv6 && unbracketedIPv6(rest) {
				return ErrIPv6NoBrackets
			}
			return ErrBadPort
		}
		u.Port = int(port)
		i = j
	}
	if i < len(rest) && rest[i] == ';' {
		j := i
		for j < len(rest) && rest[j] != '?' {
			j++
		}
		u.Params = rest[i:j]
		i = j
	}
	if i < len(rest) && rest[i] == '?' {
		u.Headers = rest[i+1:]
		i = len(rest)
	}
	if i != len(rest) {
		return ErrBadURI
	}
	return nil
}

// uriError keeps the faults ParseURI names and turns the rest into
// ErrBadURI.
func uriError(err error) error {
	if err == ErrBadIPv6 || err == ErrIPv6NoBrackets {
		return err
	}
	return ErrBadURI
}

// unbracketedIPv6 reports whether the hostport at the start of b (up to the
// first ';' or '?') holds two colons or more: an IPv6 address written
// without the brackets RFC 3261 25.1 requires ("sip:2001:db8::10").
func unbracketedIPv6(b []byte) bool {
	colons := 0
	for _, c := range b {
		if c == ';' || c == '?' {
			break
		}
		if c == ':' {
			colons++
		}
	}
	return colons >= 2
}

// validEscapes reports whether every '%' in b starts a %XX escape.
func validEscapes(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] == '%' {
			if i+2 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

// Unescape appends src to dst with every %XX escape decoded and returns the
// extended slice; it allocates only if dst lacks capacity.
func Unescape(dst, src []byte) ([]byte, error) {
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c == '%' {
			if i+2 >= len(src) || !isHex(src[i+1]) || !isHex(src[i+2]) {
				return dst, ErrBadEscape
			}
			c = unhex(src[i+1])<<4 | unhex(src[i+2])
			i += 2
		}
		dst = append(dst, c)
	}
	return dst, nil
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// ToTag returns the tag parameter of the To header, or nil. It skips the
// display name and URI without parsing them; use To for a validated
// NameAddr.
func (m *Message) ToTag() []byte {
	b := m.firstValue(KindTo)
	i := 0
	if len(b) > 0 && b[0] == '"' {
		if i = scanQuoted(b, 0); i < 0 {
			return nil
		}
	}
	// The '<' of a name-addr or the ';' before an addr-spec's parameters:
	// display names are short, so a plain loop beats bytes.IndexByte.
	for i < len(b) && b[i] != '<' && b[i] != ';' {
		i++
	}
	if i == len(b) {
		return nil
	}
	if b[i] == '<' {
		gt := bytes.IndexByte(b[i:], '>')
		if gt < 0 {
			return nil
		}
		i += gt + 1
	}
	if i+5 < len(b) && b[i] == ';' && load32(b[i+1:])|foldTag == tagEq && b[i+5] != '"' && !isWS(b[i+5]) {
		// ";tag=" right after the URI, as user agents write it.
		e := i + 5
		for e < len(b) && b[e] != ';' && !isWS(b[e]) {
			e++
		}
		return b[i+5 : e]
	}
	tag, _ := Param(b[i:], "tag")
	return tag
}

// "tag=" as a little-endian word and the mask that folds its letters.
const (
	tagEq   = 't' | 'a'<<8 | 'g'<<16 | '='<<24
	foldTag = 0x00202020
)
