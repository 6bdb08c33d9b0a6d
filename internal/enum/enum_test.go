package enum

import "testing"

type color uint8

const (
	red color = iota
	green
)

var colorNames = []string{red: "red", green: "green"}

type size int

var sizeNames = []string{"small", "large"}

func TestName(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{Name(colorNames, red, "color"), "red"},
		{Name(colorNames, green, "color"), "green"},
		{Name(colorNames, color(2), "color"), "color(2)"},
		{Name(sizeNames, size(1), "size"), "large"},
		{Name(sizeNames, size(-1), "size"), "size(-1)"},
	} {
		if c.got != c.want {
			t.Errorf("Name = %q, want %q", c.got, c.want)
		}
	}
}

func TestParse(t *testing.T) {
	if v, ok := Parse[color](colorNames, "green"); !ok || v != green {
		t.Errorf("Parse(green) = %v, %v; want %v, true", v, ok, green)
	}
	if v, ok := Parse[size](sizeNames, "small"); !ok || v != 0 {
		t.Errorf("Parse(small) = %v, %v; want 0, true", v, ok)
	}
	for _, s := range []string{"Green", "", "blue"} {
		if v, ok := Parse[color](colorNames, s); ok {
			t.Errorf("Parse(%q) = %v, true; want no value", s, v)
		}
	}
}
