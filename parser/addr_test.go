package parser

import "testing"

func TestParseNameAddr(t *testing.T) {
	cases := []struct {
		in, display, uri, params, tag string
		angle                         bool
		err                           error
	}{
		{`"Alice Smith" <sip:alice@atlanta.com>;tag=1928301774`, `"Alice Smith"`, "sip:alice@atlanta.com", ";tag=1928301774", "1928301774", true, nil},
		{`Bob <sip:bob@biloxi.com>`, "Bob", "sip:bob@biloxi.com", "", "", true, nil},
		{`<sip:bob@biloxi.com;transport=udp>;expires=60`, "", "sip:bob@biloxi.com;transport=udp", ";expires=60", "", true, nil},
		{`sip:+12125551212@server.phone2net.com;tag=887s`, "", "sip:+12125551212@server.phone2net.com", ";tag=887s", "887s", false, nil},
		{`tel:+12125551212;tag=1`, "", "tel:+12125551212", ";tag=1", "1", false, nil},
		{`"Quote \" inside" <sip:q@h>`, `"Quote \" inside"`, "sip:q@h", "", "", true, nil},
		{`*`, "", "*", "", "", false, nil},
		{`"unterminated <sip:a@b>`, "", "", "", "", false, ErrUnterminatedQuote},
		{`<sip:a@b`, "", "", "", "", false, ErrUnterminatedAngle},
		{`<>`, "", "", "", "", false, ErrBadNameAddr},
		{``, "", "", "", "", false, ErrBadNameAddr},
		{`<sip:a@b> junk`, "", "", "", "", false, ErrBadNameAddr},
		{`<sip:a@b>;x="open`, "", "", "", "", false, ErrUnterminatedQuote},
	}
	for _, c := range cases {
		var a NameAddr
		err := ParseNameAddr([]byte(c.in), &a)
		if err != c.err {
			t.Errorf("%q: err = %v, want %v", c.in, err, c.err)
			continue
		}
		if err != nil {
			continue
		}
		if string(a.Display) != c.display || string(a.URI) != c.uri || string(a.Params) != c.params || string(a.Tag) != c.tag || a.Angle != c.angle {
			t.Errorf("%q: got display %q uri %q params %q tag %q angle %v", c.in, a.Display, a.URI, a.Params, a.Tag, a.Angle)
		}
	}
}

func TestParseURI(t *testing.T) {
	cases := []struct {
		in                                  string
		scheme, user, pass, host, params, h string
		port                                int
		v6                                  bool
		opaque                              string
		err                                 error
	}{
		{in: "sip:alice@atlanta.com", scheme: "sip", user: "alice", host: "atlanta.com"},
		{in: "sip:alice:secretword@atlanta.com;transport=tcp", scheme: "sip", user: "alice", pass: "secretword", host: "atlanta.com", params: ";transport=tcp"},
		{in: "sips:alice@atlanta.com?subject=project%20x&priority=urgent", scheme: "sips", user: "alice", host: "atlanta.com", h: "subject=project%20x&priority=urgent"},
		{in: "sip:+1-212-555-1212:1234@gateway.com;user=phone", scheme: "sip", user: "+1-212-555-1212", pass: "1234", host: "gateway.com", params: ";user=phone"},
		{in: "sips:1212@gateway.com", scheme: "sips", user: "1212", host: "gateway.com"},
		{in: "sip:alice@192.0.2.4", scheme: "sip", user: "alice", host: "192.0.2.4"},
		{in: "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com", scheme: "sip", host: "atlanta.com", params: ";method=REGISTER", h: "to=alice%40atlanta.com"},
		{in: "sip:alice;day=tuesday@atlanta.com", scheme: "sip", user: "alice;day=tuesday", host: "atlanta.com"},
		{in: "sip:[2001:db8::10]:5070;lr", scheme: "sip", host: "2001:db8::10", port: 5070, v6: true, params: ";lr"},
		{in: "SIP:%61lice@h:5060", scheme: "SIP", user: "%61lice", host: "h", port: 5060},
		{in: "tel:+358-555-1234567;postd=pp22", scheme: "tel", opaque: "+358-555-1234567;postd=pp22"},
		{in: "urn:service:sos", scheme: "urn", opaque: "service:sos"},
		{in: "sip:a@h:99999", err: ErrBadPort},
		{in: "sip:a@h:x", err: ErrBadPort},
		{in: "sip:@h", err: ErrBadURI},
		{in: "sip:%zz@h", err: ErrBadURI},
		{in: "nocolon", err: ErrBadURI},
		{in: "sip:[::1", err: ErrBadURI},
		{in: "sip:", err: ErrBadURI},
		{in: "1sip:a@b", err: ErrBadURI},
	}
	for _, c := range cases {
		var u URI
		err := ParseURI([]byte(c.in), &u)
		if err != c.err {
			t.Errorf("%q: err = %v, want %v", c.in, err, c.err)
			continue
		}
		if err != nil {
			continue
		}
		if string(u.Scheme) != c.scheme || string(u.User) != c.user || string(u.Password) != c.pass ||
			string(u.Host) != c.host || string(u.Params) != c.params || string(u.Headers) != c.h ||
			u.Port != c.port || u.IPv6 != c.v6 || string(u.Opaque) != c.opaque {
			t.Errorf("%q: got %+v", c.in, u)
		}
	}
}

func TestUnescape(t *testing.T) {
	got, err := Unescape(nil, []byte("%61lice%20smith"))
	if err != nil || string(got) != "alice smith" {
		t.Errorf("Unescape = %q, %v", got, err)
	}
	if _, err := Unescape(nil, []byte("bad%4")); err != ErrBadEscape {
		t.Errorf("err = %v", err)
	}
}

func TestParam(t *testing.T) {
	p := []byte(`;transport=udp; lr ;maddr=239.255.255.1;ttl=15;x="a;b";Method=INVITE`)
	cases := []struct {
		name, val string
		ok        bool
	}{
		{"transport", "udp", true}, {"lr", "", true}, {"LR", "", true}, {"maddr", "239.255.255.1", true},
		{"ttl", "15", true}, {"x", `"a;b"`, true}, {"method", "INVITE", true}, {"b", "", false}, {"trans", "", false},
	}
	for _, c := range cases {
		v, ok := Param(p, c.name)
		if ok != c.ok || string(v) != c.val {
			t.Errorf("Param(%q) = %q, %v", c.name, v, ok)
		}
	}
	if v, ok := Param([]byte("lr"), "lr"); !ok || v == nil {
		t.Error("valueless param must be present with a non-nil value")
	}
	// Malformed lists terminate.
	for _, s := range []string{";;;", "=;=", ";=x", `;a="open`, " ; "} {
		Param([]byte(s), "a")
	}
}
