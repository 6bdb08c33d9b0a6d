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
// them by parser.KindOf (long and compact forms, any case). A header
// repeated keeps its first value; folded lines are not joined.
func scanMessage(b []byte, info *msgInfo) {
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
		value := bytes.TrimSpace(line[colon+1:])
		switch parser.KindOf(bytes.TrimRight(line[:colon], " \t")) {
		case parser.KindCallID:
			setOnce(&info.callID, value)
		case parser.KindFrom:
			setOnce(&info.from, value)
		case parser.KindTo:
			setOnce(&info.to, value)
		case parser.KindCSeq:
			if info.response {
				info.method = cseqMethod(value)
			}
		}
	}
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
	return parser.MethodOf(bytes.TrimSpace(v[sp+1:]))
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
