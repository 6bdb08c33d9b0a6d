package testenv

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ThreadCPU returns the CPU time (user and system) of the calling thread,
// for benchmarks that report it beside the wall time (on a shared machine
// the wall time counts the other processes too); lock the goroutine to its
// thread first.
func ThreadCPU(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
