package balancer

import "fmt"

// The config spellings of the enum types, indexed by value.
var (
	healthNames     = []string{Up: "up", Down: "down"}
	adminStateNames = []string{Enabled: "enabled", Draining: "draining", Disabled: "disabled"}
	allDownNames    = []string{AllDownForward: "forward", AllDownReject: "reject"}
	modeNames       = []string{ModeHash: "hash", ModeRoundRobin: "round-robin"}
	keyKindNames    = [numKeyKinds]string{KeyCallID: "call-id", KeyToAOR: "to-aor", KeyFromURI: "from-uri",
		KeyRequestUser: "ruri-user", KeyHeader: "header", KeyRequestAOR: "ruri-aor"}
)

// enumName returns the name of v in names, or typ(v) for a value that has
// none (an invalid one).
func enumName[T ~uint8](names []string, v T, typ string) string {
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", typ, uint8(v))
}

// enumValue returns the value named s in names.
func enumValue[T ~uint8](names []string, s string) (T, bool) {
	for i, n := range names {
		if n == s {
			return T(i), true
		}
	}
	return 0, false
}
