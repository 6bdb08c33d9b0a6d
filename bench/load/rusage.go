package load

import (
	"runtime"
	"time"
)

// ProcessCPU returns the CPU time (user plus system) used by this process
// so far, from getrusage(2); 0 on systems without it.
func ProcessCPU() time.Duration { return processCPU() }

func gomaxprocs() int { return runtime.GOMAXPROCS(0) }
