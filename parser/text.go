package parser

// Helpers over raw SIP text for a caller that edits what Parse indexed, such
// as a rewriting proxy: the same scanners the parser uses, exported so that
// SIP text is read in one place.

// EqualFold reports whether b equals s, ASCII case-insensitively.
func EqualFold(b []byte, s string) bool { return equalFold(b, s) }

// IsWS reports whether c is white space inside a header value (SP, HTAB, CR,
// LF: CR and LF can only be part of a folded line there).
func IsWS(c byte) bool { return isWS(c) }

// SkipWS returns the first position at or after i that is not white space.
func SkipWS(b []byte, i int) int { return skipWS(b, i) }

// Lower returns c in lower case if it is an ASCII letter.
func Lower(c byte) byte { return lower(c) }

// KindOf classifies a header name, case-insensitively, compact forms
// included.
func KindOf(name []byte) HeaderKind { return kindOf(name) }

// ParamSpan looks for the parameter name (case-insensitive) in a raw
// ";a=b;c" list p (as Via.Params or URI params). It returns, relative to p,
// the end of the name, and the value's start and end (both equal to nameEnd
// when the parameter has no value).
func ParamSpan(p []byte, name string) (nameEnd, vs, ve int, ok bool) {
	i := 0
	for i < len(p) {
		i = skipWS(p, i)
		if i >= len(p) || p[i] != ';' {
			return 0, 0, 0, false
		}
		i = skipWS(p, i+1)
		ns := i
		for i < len(p) && p[i] != '=' && p[i] != ';' && p[i] != ',' && !isWS(p[i]) && p[i] != '(' {
			i++
		}
		ne := i
		vs, ve := ne, ne
		j := skipWS(p, i)
		if j < len(p) && p[j] == '=' {
			j = skipWS(p, j+1)
			vs = j
			if j < len(p) && p[j] == '"' {
				j++
				for j < len(p) && p[j] != '"' {
					if p[j] == '\\' {
						j++
					}
					j++
				}
				if j < len(p) {
					j++
				}
			} else {
				for j < len(p) && p[j] != ';' && p[j] != ',' && !isWS(p[j]) && p[j] != '(' {
					j++
				}
			}
			if j > len(p) {
				j = len(p)
			}
			ve = j
			i = j
		}
		if equalFold(p[ns:ne], name) {
			return ne, vs, ve, true
		}
		if i < len(p) && (p[i] == ',' || p[i] == '(') {
			return 0, 0, 0, false
		}
	}
	return 0, 0, 0, false
}

// NextListValue returns the next comma-separated value of a header value b
// starting at i: its bounds (white space trimmed) and where the one after it
// starts (len(b) when none). Commas inside quotes and angle brackets do not
// split. ok is false when no value is left.
func NextListValue(b []byte, i int) (start, end, next int, ok bool) {
	i = skipWS(b, i)
	for i < len(b) && b[i] == ',' { // empty values
		i = skipWS(b, i+1)
	}
	if i >= len(b) {
		return 0, 0, len(b), false
	}
	start = i
	inQ, inA := false, false
	for i < len(b) {
		c := b[i]
		switch {
		case inQ:
			if c == '\\' {
				i++
			} else if c == '"' {
				inQ = false
			}
		case c == '"':
			inQ = true
		case c == '<':
			inA = true
		case c == '>':
			inA = false
		case c == ',' && !inA:
			end = i
			for end > start && isWS(b[end-1]) {
				end--
			}
			return start, end, skipWS(b, i+1), true
		}
		i++
	}
	if i > len(b) {
		i = len(b)
	}
	end = i
	for end > start && isWS(b[end-1]) {
		end--
	}
	return start, end, len(b), true
}
