package threadguard

import (
	"syscall"
	"time"
)

// threadCPUTime returns the CPU time the calling OS thread has used so far
// (user and system), and true; the goroutine must be locked to its thread.
func threadCPUTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
