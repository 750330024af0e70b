package main

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// monotonicMicros is CLOCK_MONOTONIC in microseconds: the clock V8 stamps
// its CPU profile samples with, so a profile can be cut to a window.
func monotonicMicros() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}

// cpuTime is the CPU time (user + system, all threads) process pid has used
// so far, from /proc/<pid>/stat, whose utime and stime count clock ticks of
// 1/clkTck s.
func cpuTime(pid int, clkTck int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the CPU time of process %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces; the fields after it do not.
	s := string(raw)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name in %q", pid, s)
	}
	fields := strings.Fields(s[end+1:])
	// fields[0] is field 3 (state): utime is field 14, stime field 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the command name, want at least 13", pid, len(fields))
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q are not numbers", pid, fields[11], fields[12])
	}
	return time.Duration(utime+stime) * time.Second / time.Duration(clkTck), nil
}

// selfCPU is this driver's own CPU time (user + system), microsecond resolution.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var hwm = regexp.MustCompile(`VmHWM:\s+(\d+) kB`)

// peakRSS is process pid's peak resident memory (VmHWM) in bytes.
func peakRSS(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the peak RSS of process %d: %w", pid, err)
	}
	m := hwm.FindSubmatch(raw)
	if m == nil {
		return 0, fmt.Errorf("/proc/%d/status has no VmHWM", pid)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb * 1024, nil
}
