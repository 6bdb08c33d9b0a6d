package version

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{
		Main:     debug.Module{Path: "github.com/viaduct-sip/viaduct", Version: "v0.0.0-20261203090000-3decd0e1a2b3+dirty"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "3decd0e1a2b3c4d5e6f7"}, {Key: "vcs.modified", Value: "true"}},
	}
	found := func() (*debug.BuildInfo, bool) { return bi, true }
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	plat := " " + runtime.GOOS + "/" + runtime.GOARCH + ")"
	for _, c := range []struct {
		name, linked string
		read         func() (*debug.BuildInfo, bool)
		want         string
	}{
		{"link-time version wins", "v1.4.0", found, "v1.4.0 (revision 3decd0e1a2b3, modified, " + runtime.Version() + plat},
		{"module version", "", found, "v0.0.0-20261203090000-3decd0e1a2b3+dirty (revision 3decd0e1a2b3, modified, " + runtime.Version() + plat},
		{"no build info", "", none, "devel (revision unknown, " + runtime.Version() + plat},
		{"link-time, no build info", "v2.0.0", none, "v2.0.0 (revision unknown, " + runtime.Version() + plat},
	} {
		if got := fromBuildInfo(c.linked, c.read).String(); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	bi.Main.Version = "(devel)"
	if got := fromBuildInfo("", found).Version; got != "devel" {
		t.Errorf("(devel) module: version %q", got)
	}
}
