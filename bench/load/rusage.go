package load

import (
	"runtime"
	"syscall"
	"time"
)

// processCPU returns the user plus system CPU time the process has used
// (getrusage RUSAGE_SELF), or 0 if it cannot be read.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ProcessCPU returns the CPU time (user plus system) used by this process
// so far, from getrusage(2).
func ProcessCPU() time.Duration { return processCPU() }

func gomaxprocs() int { return runtime.GOMAXPROCS(0) }
