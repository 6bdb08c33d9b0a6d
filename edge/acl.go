package edge

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/gaissmai/bart"
)

// The flags of a source in the access table.
const (
	flagAllow uint8 = 1 << iota
	flagDeny
	flagBlock
	flagTrusted
	flagUpstream
	flagReply503
)

// accessTable maps a source address to its flags: one longest-prefix
// lookup, without allocation. Each prefix's value carries the flags of
// every shorter prefix that covers it, so that the most specific match
// answers for all lists at once.
type accessTable struct {
	t        bart.Table[uint8]
	hasAllow bool
}

// lookup returns the flags of addr (0 when no list names it).
func (a *accessTable) lookup(addr netip.Addr) uint8 {
	f, _ := a.t.Lookup(addr)
	return f
}

// accessLists are the prefixes of each list, before they are merged.
type accessLists struct {
	allow, deny, block, trusted, upstream, reply []netip.Prefix
}

// build merges the lists into a table.
func (l *accessLists) build() *accessTable {
	a := &accessTable{hasAllow: len(l.allow) > 0}
	for _, list := range []struct {
		ps   []netip.Prefix
		flag uint8
	}{{l.allow, flagAllow}, {l.deny, flagDeny}, {l.block, flagBlock}, {l.trusted, flagTrusted}, {l.upstream, flagUpstream}, {l.reply, flagReply503}} {
		for _, p := range list.ps {
			a.t.Modify(p, func(old uint8, _ bool) (uint8, bool) { return old | list.flag, false })
		}
	}
	// Inherit the flags of the covering prefixes. Supernets yields p
	// itself too.
	inherited := map[netip.Prefix]uint8{}
	for p := range a.t.All() {
		var f uint8
		for _, v := range a.t.Supernets(p) {
			f |= v
		}
		inherited[p] = f
	}
	for p, f := range inherited {
		a.t.Insert(p, f)
	}
	return a
}

// ReadBlocklist reads a blocklist file: one CIDR or address a line, blank
// lines and anything after '#' or ';' ignored (VoIPBL's and APIBAN's plain
// exports); or, when the file starts with '{', APIBAN's JSON answers as
// its API returns them ({"ipaddress": [...], "ID": ...}, one a page, one
// after the other). Errors name the line, or the answer and the entry.
func ReadBlocklist(path string) ([]netip.Prefix, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("blocklist: %w", err)
	}
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		return readAPIBAN(path, t)
	}
	var out []netip.Prefix
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		p, err := ParsePrefix(line)
		if err != nil {
			return nil, fmt.Errorf("blocklist %s line %d: %w", path, n, err)
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("blocklist %s: %w", path, err)
	}
	return out, nil
}

// readAPIBAN reads APIBAN's JSON answers (b, from path): one or more
// objects one after the other (its API gives 250 addresses a page), each
// with its "ipaddress" list.
func readAPIBAN(path string, b []byte) ([]netip.Prefix, error) {
	var out []netip.Prefix
	dec := json.NewDecoder(bytes.NewReader(b))
	for page := 1; dec.More(); page++ {
		var list struct {
			IPAddress []string `json:"ipaddress"`
		}
		if err := dec.Decode(&list); err != nil {
			return nil, fmt.Errorf("blocklist %s: APIBAN JSON, answer %d: %w", path, page, err)
		}
		if list.IPAddress == nil {
			return nil, fmt.Errorf("blocklist %s: APIBAN JSON, answer %d: no \"ipaddress\" list", path, page)
		}
		for i, a := range list.IPAddress {
			p, err := ParsePrefix(strings.TrimSpace(a))
			if err != nil {
				return nil, fmt.Errorf("blocklist %s: APIBAN JSON, answer %d, ipaddress[%d]: %w", path, page, i, err)
			}
			out = append(out, p)
		}
	}
	return out, nil
}
