package load

import (
	"fmt"
	"strconv"
	"strings"
)

// Template is a user-name pattern in which "{n}" stands for the call's user
// number, e.g. "1{n}" or "user{n}". A template without "{n}" is constant.
// Append expands it without allocating.
type Template struct {
	src   string
	parts []string // literal parts; a number goes between consecutive parts
}

// ParseTemplate parses a user template. The only placeholder is "{n}"; any
// other brace is an error, so typos are caught at start.
func ParseTemplate(s string) (Template, error) {
	t := Template{src: s}
	rest := s
	for {
		i := strings.Index(rest, "{n}")
		if i < 0 {
			break
		}
		t.parts = append(t.parts, rest[:i])
		rest = rest[i+3:]
	}
	t.parts = append(t.parts, rest)
	for _, p := range t.parts {
		if strings.ContainsAny(p, "{}") {
			return Template{}, fmt.Errorf("template %q: only {n} may appear in braces", s)
		}
		for i := 0; i < len(p); i++ {
			if c := p[i]; c <= ' ' || c == '@' || c == '<' || c == '>' || c == ':' || c == ';' || c == '"' || c >= 0x7f {
				return Template{}, fmt.Errorf("template %q: character %q is not allowed in a SIP user", s, c)
			}
		}
	}
	return t, nil
}

// MustTemplate is like ParseTemplate but panics on error; for constants.
func MustTemplate(s string) Template {
	t, err := ParseTemplate(s)
	if err != nil {
		panic(err)
	}
	return t
}

// String returns the template as written.
func (t Template) String() string { return t.src }

// HasNumber reports whether the template contains "{n}".
func (t Template) HasNumber() bool { return len(t.parts) > 1 }

// Append appends the template expanded with number n to dst.
func (t Template) Append(dst []byte, n uint64) []byte {
	for i, p := range t.parts {
		if i > 0 {
			dst = strconv.AppendUint(dst, n, 10)
		}
		dst = append(dst, p...)
	}
	return dst
}
