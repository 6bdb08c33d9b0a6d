//go:build !unix

package load

import "time"

// processCPU returns 0: the system has no getrusage(2).
func processCPU() time.Duration { return 0 }
