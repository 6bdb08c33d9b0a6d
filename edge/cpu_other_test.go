//go:build !linux

package edge

import (
	"testing"
	"time"
)

// ThreadCPU falls back to the wall time where the thread's CPU time is not
// at hand.
func ThreadCPU(*testing.B) int64 { return time.Now().UnixNano() }
