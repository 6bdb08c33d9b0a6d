package capture

import (
	"bytes"

	"github.com/viaduct-sip/viaduct/parser"
)

// msgInfo is what the tap reads of a message without parsing it: the
// values of its Call-ID, From and To headers, and its method (a
// response's is its CSeq method).
type msgInfo struct {
	callID, from, to []byte
	method           parser.Method
	response         bool
}

// scanMessage fills info from the raw message b: the request method of
// its start line, then the header lines up to the blank line, naming
// them by headerKind (long and compact forms, any case). A header
// repeated keeps its first value; folded lines are not joined. With full
// false it stops at the Call-ID (all the collector needs without a
// methods filter): the From and To values, and a response's CSeq method,
// are then only read if they come before it.
func scanMessage(b []byte, info *msgInfo, full bool) {
	*info = msgInfo{}
	line, rest := nextLine(b)
	if bytes.HasPrefix(line, []byte("SIP/2.0 ")) {
		info.response = true
	} else if sp := bytes.IndexByte(line, ' '); sp > 0 {
		info.method = parser.MethodOf(line[:sp])
	}
	for len(rest) > 0 {
		line, rest = nextLine(rest)
		if len(line) == 0 {
			return
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		kind := headerKind(trimWS(line[:colon]))
		if kind == parser.KindOther {
			continue
		}
		value := trimWS(line[colon+1:])
		switch kind {
		case parser.KindCallID:
			setOnce(&info.callID, value)
			if !full {
				return
			}
		case parser.KindFrom:
			setOnce(&info.from, value)
		case parser.KindTo:
			setOnce(&info.to, value)
		case parser.KindCSeq:
			if info.response && info.method == parser.MethodOther {
				info.method = cseqMethod(value)
			}
		}
	}
}

// headerKind returns the kind of the header names scanMessage reads,
// long or compact, in any case (Call-ID, i, CSeq, From, f, To, t), and
// parser.KindOther for every other name: a test of the length and the
// first letter settles most names.
func headerKind(name []byte) parser.HeaderKind {
	if len(name) == 0 {
		return parser.KindOther
	}
	switch c := name[0] | 0x20; {
	case len(name) == 1:
		switch c {
		case 'i':
			return parser.KindCallID
		case 'f':
			return parser.KindFrom
		case 't':
			return parser.KindTo
		}
	case len(name) == 7 && c == 'c' && parser.EqualFold(name, "call-id"):
		return parser.KindCallID
	case len(name) == 4 && c == 'c' && parser.EqualFold(name, "cseq"):
		return parser.KindCSeq
	case len(name) == 4 && c == 'f' && parser.EqualFold(name, "from"):
		return parser.KindFrom
	case len(name) == 2 && c == 't' && parser.EqualFold(name, "to"):
		return parser.KindTo
	}
	return parser.KindOther
}

// trimWS trims spaces and tabs at both ends of b.
func trimWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// setOnce stores v in *dst unless a value is already there.
func setOnce(dst *[]byte, v []byte) {
	if *dst == nil {
		*dst = v
	}
}

// nextLine splits b at its first line end (CRLF or a bare LF).
func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// cseqMethod returns the method of a CSeq value ("1 INVITE").
func cseqMethod(v []byte) parser.Method {
	sp := bytes.IndexByte(v, ' ')
	if sp < 0 {
		return parser.MethodOther
	}
	return parser.MethodOf(trimWS(v[sp+1:]))
}

// uriUser returns the user part of the URI in a From or To value
// ("Alice <sip:alice@example.com>;tag=1" gives "alice"), nil when it has
// none. sip:, sips: and tel: URIs are read.
func uriUser(v []byte) []byte {
	for _, scheme := range [...]string{"sip:", "sips:", "tel:"} {
		i := indexFold(v, scheme)
		if i < 0 {
			continue
		}
		u := v[i+len(scheme):]
		end := bytes.IndexAny(u, "@;>? \t,")
		if end < 0 {
			end = len(u)
		}
		if scheme != "tel:" && (end == len(u) || u[end] != '@') {
			return nil // a URI without a user part
		}
		return u[:end]
	}
	return nil
}

// indexFold is bytes.Index for an ASCII lower-case s, case-insensitively.
func indexFold(b []byte, s string) int {
	for i := 0; i+len(s) <= len(b); i++ {
		if parser.EqualFold(b[i:i+len(s)], s) {
			return i
		}
	}
	return -1
}
