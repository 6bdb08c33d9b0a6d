package stream

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The connections' reads, writes and shutdowns never block, so they are
// issued as raw system calls: the runtime is not told of a call that
// cannot block, which spares a wake-up of its monitor thread (sysmon) per
// call after every idle spell, and the hand-off of the P it would then
// make for a call that takes a few tens of microseconds on a loaded core.

// readNB is read(2) on the non-blocking socket fd.
func readNB(fd int, p []byte) (int, error) { return rawIO(unix.SYS_READ, fd, p) }

// writeNB is write(2) on the non-blocking socket fd.
func writeNB(fd int, p []byte) (int, error) { return rawIO(unix.SYS_WRITE, fd, p) }

// shutdownNB is shutdown(2) of the socket fd, which never blocks.
func shutdownNB(fd, how int) error {
	if _, _, e := unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), uintptr(how), 0); e != 0 {
		return errnoErr(e)
	}
	return nil
}

// rawIO is the raw read(2) or write(2) (trap) of p on fd.
func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, errnoErr(e)
	}
	return int(n), nil
}

// errnoErr returns e as an error without allocating for the common ones.
func errnoErr(e syscall.Errno) error {
	switch e {
	case unix.EAGAIN:
		return unix.EAGAIN
	case unix.EINTR:
		return unix.EINTR
	}
	return e
}
