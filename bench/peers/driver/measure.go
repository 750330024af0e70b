package main

import (
	"context"
	"fmt"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// transferSample is one timed transfer of a big object.
type transferSample struct {
	MiBPerSec float64 `json:"mibPerSec"`
	Seconds   float64 `json:"seconds"`
	// CPU the server process spent during the transfer, per GiB moved.
	ServerCPUSecPerGiB float64 `json:"serverCpuSecPerGiB"`
	// CPU this driver spent, per GiB: the client's side of the same transfer.
	ClientCPUSecPerGiB float64 `json:"clientCpuSecPerGiB"`
}

// timeTransfer runs f, which moves size bytes to or from s, and measures it.
func timeTransfer(s server, clkTck int, size int64, f func() error) (transferSample, error) {
	cpu0, err := cpuTime(s.pid(), clkTck)
	if err != nil {
		return transferSample{}, err
	}
	self0 := selfCPU()
	start := time.Now()
	if err := f(); err != nil {
		return transferSample{}, err
	}
	elapsed := time.Since(start)
	self := selfCPU() - self0
	cpu1, err := cpuTime(s.pid(), clkTck)
	if err != nil {
		return transferSample{}, err
	}
	gib := float64(size) / (1 << 30)
	return transferSample{
		MiBPerSec:          float64(size) / (1 << 20) / elapsed.Seconds(),
		Seconds:            elapsed.Seconds(),
		ServerCPUSecPerGiB: (cpu1 - cpu0).Seconds() / gib,
		ClientCPUSecPerGiB: self.Seconds() / gib,
	}, nil
}

// loopSample is one closed-loop run: inFlight callers, each starting its next
// call when the last one returns, for a fixed time.
type loopSample struct {
	OpsPerSec float64 `json:"opsPerSec"`
	Ops       int64   `json:"ops"`
	// Server and driver CPU per call, microseconds.
	ServerCPUMicrosPerOp float64 `json:"serverCpuMicrosPerOp"`
	ClientCPUMicrosPerOp float64 `json:"clientCpuMicrosPerOp"`
	latencies            []time.Duration
}

// closedLoop calls op with inFlight callers for d; n counts calls across the
// whole run (op uses it for unique names). The first error stops the loop.
func closedLoop(ctx context.Context, s server, clkTck, inFlight int, d time.Duration, n *atomic.Int64, op func(ctx context.Context, n int64) error) (loopSample, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cpu0, err := cpuTime(s.pid(), clkTck)
	if err != nil {
		return loopSample{}, err
	}
	self0 := selfCPU()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		all      []time.Duration
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < inFlight; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				callCtx, done := context.WithTimeout(ctx, 30*time.Second)
				t0 := time.Now()
				err := op(callCtx, n.Add(1))
				took := time.Since(t0)
				done()
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					return
				}
				lat = append(lat, took)
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return loopSample{}, firstErr
	}
	self := selfCPU() - self0
	cpu1, err := cpuTime(s.pid(), clkTck)
	if err != nil {
		return loopSample{}, err
	}
	ops := int64(len(all))
	if ops == 0 {
		return loopSample{}, fmt.Errorf("no call finished in %v", d)
	}
	return loopSample{
		OpsPerSec:            float64(ops) / elapsed.Seconds(),
		Ops:                  ops,
		ServerCPUMicrosPerOp: float64((cpu1 - cpu0).Microseconds()) / float64(ops),
		ClientCPUMicrosPerOp: float64(self.Microseconds()) / float64(ops),
		latencies:            all,
	}, nil
}

// percentileMs is the p-th percentile (0..100, nearest rank) of d in milliseconds.
func percentileMs(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return math.NaN()
	}
	sorted := append([]time.Duration(nil), d...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	rank = min(len(sorted)-1, max(0, rank))
	return float64(sorted[rank]) / float64(time.Millisecond)
}
