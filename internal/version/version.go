// Package version tells which build of Viaduct is running: the module
// version and VCS revision the Go toolchain records in the binary, or the
// version a release build sets at link time.
//
//	go build -ldflags "-X github.com/viaduct-sip/viaduct/internal/version.version=v1.4.0" ./cmd/...
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is the release version set with -ldflags -X at link time; empty
// in an ordinary build. It is the only mutable state of the package and is
// written by the linker alone.
var version string

// Info describes the running binary.
type Info struct {
	// Version is the link-time version, else the main module's version as
	// the go command recorded it (a tag, or a pseudo-version such as
	// v0.0.0-20261203090000-3decd0e1a2b3+dirty for a build in a checkout),
	// else "devel".
	Version string
	// Revision is the VCS revision the binary was built from ("" when
	// unknown), Modified whether the work tree had local changes.
	Revision string
	Modified bool
	// GoVersion is the Go toolchain's version, Platform GOOS/GOARCH.
	GoVersion, Platform string
}

// Get returns the Info of the running binary.
func Get() Info {
	return fromBuildInfo(version, debug.ReadBuildInfo)
}

// fromBuildInfo builds the Info from the link-time version and the build
// information read (read's ok false: none recorded, as in some tests).
func fromBuildInfo(linked string, read func() (*debug.BuildInfo, bool)) Info {
	i := Info{Version: linked, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := read()
	if ok {
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Revision = s.Value
			case "vcs.modified":
				i.Modified = s.Value == "true"
			}
		}
	}
	if i.Version == "" {
		i.Version = "devel"
	}
	return i
}

// String returns the version line of --version:
// "v1.4.0 (revision 3decd0e1a2b3, go1.26.8 linux/amd64)".
func (i Info) String() string {
	rev := i.Revision
	if rev == "" {
		rev = "unknown"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if i.Modified {
		rev += ", modified"
	}
	return fmt.Sprintf("%s (revision %s, %s %s)", i.Version, rev, i.GoVersion, i.Platform)
}
