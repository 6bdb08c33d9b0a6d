// Package enum spells the values of small integer enum types (a pool's
// mode, a load scenario) from a table of their names indexed by value, so
// that a type's String method and its parser share one list.
//
//	var modeNames = []string{ModeHash: "hash", ModeRoundRobin: "round-robin"}
//
//	func (m Mode) String() string { return enum.Name(modeNames, m, "Mode") }
package enum

import "fmt"

// Value is the underlying type an enum type may have.
type Value interface{ ~uint8 | ~int }

// Name returns the name of v in names, or typ(v) for a value that has none
// (an invalid one).
func Name[T Value](names []string, v T, typ string) string {
	if v >= 0 && int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", typ, int(v))
}

// Parse returns the value named s in names (compared exactly: a caller
// that accepts other spellings normalises s first), and whether there is
// one.
func Parse[T Value](names []string, s string) (T, bool) {
	for i, n := range names {
		if n == s {
			return T(i), true
		}
	}
	return 0, false
}
