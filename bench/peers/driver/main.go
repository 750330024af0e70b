// Command peers-driver is the neutral client of bench/peers: one Go program
// that drives the FileStorage daemon (through clients/go), MinIO (minio-go)
// and bazel-remote (its HTTP CAS API) with the same workload, interleaving
// the servers in every round, and prints what it measured as one JSON
// document on stdout (progress goes to stderr). The servers are started by
// bench/peers.bench.ts, which passes their addresses and process ids so the
// driver can read their CPU time and peak memory from /proc.
//
// Workloads (-only picks some): download (the big object, whole), upload (a
// big object of fresh content every time: bazel-remote would otherwise skip
// a blob it has), read (small objects, hot: all read once in a warm-up),
// write (small objects under new names, durable as each server makes them).
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

type config struct {
	Rounds       int      `json:"rounds"`
	BigBytes     int64    `json:"bigBytes"`
	ReadBytes    int      `json:"readBytes"`
	ReadObjects  int      `json:"readObjects"`
	WriteBytes   int      `json:"writeBytes"`
	LoopSeconds  float64  `json:"loopSeconds"`
	InFlight     []int    `json:"inFlight"`
	Workloads    []string `json:"workloads"`
	ClockTicks   int      `json:"clockTicks"`
	ServerOrders []string `json:"serverOrders"`
}

type transferReport struct {
	Warmup transferSample   `json:"warmup"`
	Rounds []transferSample `json:"rounds"`
}

type loopReport struct {
	InFlight int `json:"inFlight"`
	// Warm-up rate (not in the rounds).
	WarmupOpsPerSec float64      `json:"warmupOpsPerSec"`
	Rounds          []loopSample `json:"rounds"`
	// Over every call of every round.
	P50Ms     float64 `json:"p50Ms"`
	P99Ms     float64 `json:"p99Ms"`
	latencies []time.Duration
}

type serverReport struct {
	Name         string          `json:"name"`
	PID          int             `json:"pid"`
	PeakRSSBytes int64           `json:"peakRssBytes"`
	Download     *transferReport `json:"download,omitempty"`
	Upload       *transferReport `json:"upload,omitempty"`
	Read         []*loopReport   `json:"read,omitempty"`
	Write        []*loopReport   `json:"write,omitempty"`
}

type report struct {
	Config  config          `json:"config"`
	Servers []*serverReport `json:"servers"`
	// CLOCK_MONOTONIC microseconds (the clock of V8's CPU profiles) when the
	// measured rounds began and ended: setup and warm-up are before it.
	MeasuredFromMicros int64 `json:"measuredFromMicros"`
	MeasuredToMicros   int64 `json:"measuredToMicros"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "peers-driver: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	daemonAddr := flag.String("daemon", "", "the daemon's host:port (empty: not driven)")
	daemonPID := flag.Int("daemon-pid", 0, "the daemon's process id")
	minioAddr := flag.String("minio", "", "MinIO's host:port (empty: not driven)")
	minioPID := flag.Int("minio-pid", 0, "MinIO's process id")
	minioUser := flag.String("minio-user", "minioadmin", "MinIO's access key")
	minioPassword := flag.String("minio-password", "minioadmin", "MinIO's secret key")
	bazelAddr := flag.String("bazel", "", "bazel-remote's HTTP host:port (empty: not driven)")
	bazelPID := flag.Int("bazel-pid", 0, "bazel-remote's process id")
	rounds := flag.Int("rounds", 16, "interleaved rounds")
	bigMiB := flag.Int("big-mib", 1024, "size of the big object, MiB")
	readBytes := flag.Int("read-bytes", 16<<10, "size of each object read")
	readObjects := flag.Int("read-objects", 256, "how many objects the reads cycle through")
	writeBytes := flag.Int("write-bytes", 4<<10, "size of each object written")
	seconds := flag.Float64("seconds", 2, "seconds of each closed-loop run")
	inFlight := flag.String("in-flight", "1,16", "calls in flight of the reads and writes, comma-separated")
	only := flag.String("only", "download,upload,read,write", "workloads to run, comma-separated")
	clkTck := flag.Int("clk-tck", 100, "clock ticks per second of /proc/<pid>/stat (getconf CLK_TCK)")
	flag.Parse()

	cfg := config{
		Rounds: *rounds, BigBytes: int64(*bigMiB) << 20, ReadBytes: *readBytes, ReadObjects: *readObjects,
		WriteBytes: *writeBytes, LoopSeconds: *seconds, ClockTicks: *clkTck, Workloads: strings.Split(*only, ","),
	}
	for _, part := range strings.Split(*inFlight, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n <= 0 {
			return fmt.Errorf("-in-flight: %q is not a positive integer", part)
		}
		cfg.InFlight = append(cfg.InFlight, n)
	}
	wants := map[string]bool{}
	for _, w := range cfg.Workloads {
		switch w {
		case "download", "upload", "read", "write":
			wants[w] = true
		default:
			return fmt.Errorf("-only: unknown workload %q (download, upload, read, write)", w)
		}
	}

	var servers []server
	if *daemonAddr != "" {
		d, err := newDaemonServer(*daemonAddr, *daemonPID)
		if err != nil {
			return err
		}
		servers = append(servers, d)
	}
	if *minioAddr != "" {
		m, err := newMinioServer(minioEndpoint(*minioAddr), *minioUser, *minioPassword, *minioPID)
		if err != nil {
			return err
		}
		servers = append(servers, m)
	}
	if *bazelAddr != "" {
		servers = append(servers, newBazelServer(*bazelAddr, *bazelPID))
	}
	if len(servers) == 0 {
		return fmt.Errorf("no server to drive: give -daemon, -minio and/or -bazel")
	}
	for _, s := range servers {
		if _, err := cpuTime(s.pid(), cfg.ClockTicks); err != nil {
			return fmt.Errorf("%s: %w (give its -…-pid)", s.name(), err)
		}
	}
	defer func() {
		for _, s := range servers {
			s.close()
		}
	}()

	ctx := context.Background()
	rng := rand.NewChaCha8([32]byte{'p', 'e', 'e', 'r', 's'})
	progress("making %d MiB of random bytes and %d small objects", *bigMiB, cfg.ReadObjects)
	bigData := make([]byte, cfg.BigBytes)
	_, _ = rng.Read(bigData)
	big := newBlob(bigData)
	small := make([]blob, cfg.ReadObjects)
	for i := range small {
		data := make([]byte, cfg.ReadBytes)
		_, _ = rng.Read(data)
		small[i] = newBlob(data)
	}
	writeBase := make([]byte, cfg.WriteBytes)
	_, _ = rng.Read(writeBase)

	reports := make([]*serverReport, len(servers))
	for i, s := range servers {
		reports[i] = &serverReport{Name: s.name(), PID: s.pid()}
		if wants["download"] {
			reports[i].Download = &transferReport{}
		}
		if wants["upload"] {
			reports[i].Upload = &transferReport{}
		}
		for _, n := range cfg.InFlight {
			if wants["read"] {
				reports[i].Read = append(reports[i].Read, &loopReport{InFlight: n})
			}
			if wants["write"] {
				reports[i].Write = append(reports[i].Write, &loopReport{InFlight: n})
			}
		}
		// Only what the chosen workloads read, so a profile of one workload holds little else.
		storeBig, storeSmall := blob{}, []blob(nil)
		if wants["download"] {
			storeBig = big
		}
		if wants["read"] {
			storeSmall = small
		}
		progress("%s: storing the big object (%v) and the small ones (%d)", s.name(), wants["download"], len(storeSmall))
		setupCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		err := s.setup(setupCtx, storeBig, storeSmall)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: setup: %w", s.name(), err)
		}
	}

	// Fresh content for every upload: the first 16 bytes name the round and the server.
	upData := make([]byte, cfg.BigBytes)
	copy(upData, bigData)
	uploadBlob := func(round, server int) blob {
		binary.LittleEndian.PutUint64(upData[0:], uint64(round))
		binary.LittleEndian.PutUint64(upData[8:], uint64(server)|0xfeed<<16)
		return newBlob(upData)
	}
	var writeSeq atomic.Int64
	writeBlob := func(n int64) blob {
		data := make([]byte, len(writeBase))
		copy(data, writeBase)
		binary.LittleEndian.PutUint64(data, uint64(n))
		return newBlob(data)
	}
	var readSeq atomic.Int64
	loopSeconds := time.Duration(cfg.LoopSeconds * float64(time.Second))

	// round 0 is the warm-up; rounds 1..n are measured. Each workload visits
	// every server in an order that rotates with the round.
	var measuredFrom int64
	for round := 0; round <= cfg.Rounds; round++ {
		if round == 1 {
			measuredFrom = monotonicMicros()
		}
		order := make([]int, len(servers))
		names := make([]string, len(servers))
		for i := range order {
			order[i] = (i + round) % len(servers)
			names[i] = servers[order[i]].name()
		}
		cfg.ServerOrders = append(cfg.ServerOrders, strings.Join(names, ","))
		label := fmt.Sprintf("round %d/%d", round, cfg.Rounds)
		if round == 0 {
			label = "warm-up"
		}
		if wants["download"] {
			for _, i := range order {
				s := servers[i]
				sample, err := timeTransfer(s, cfg.ClockTicks, cfg.BigBytes, func() error {
					c, cancel := context.WithTimeout(ctx, 10*time.Minute)
					defer cancel()
					_, err := s.download(c)
					return err
				})
				if err != nil {
					return fmt.Errorf("%s: %s: download: %w", label, s.name(), err)
				}
				addTransfer(reports[i].Download, round, sample)
				progress("%s download %-12s %7.1f MiB/s  server CPU %.2f s/GiB", label, s.name(), sample.MiBPerSec, sample.ServerCPUSecPerGiB)
			}
		}
		if wants["upload"] {
			for _, i := range order {
				s := servers[i]
				b := uploadBlob(round, i)
				var remove func() error
				sample, err := timeTransfer(s, cfg.ClockTicks, cfg.BigBytes, func() error {
					c, cancel := context.WithTimeout(ctx, 10*time.Minute)
					defer cancel()
					var err error
					remove, err = s.upload(c, b, round)
					return err
				})
				if err != nil {
					return fmt.Errorf("%s: %s: upload: %w", label, s.name(), err)
				}
				if err := remove(); err != nil {
					return fmt.Errorf("%s: %s: removing the upload: %w", label, s.name(), err)
				}
				addTransfer(reports[i].Upload, round, sample)
				progress("%s upload   %-12s %7.1f MiB/s  server CPU %.2f s/GiB", label, s.name(), sample.MiBPerSec, sample.ServerCPUSecPerGiB)
			}
		}
		for k, n := range cfg.InFlight {
			if wants["read"] {
				for _, i := range order {
					s := servers[i]
					d := loopSeconds
					if round == 0 {
						// Every object read once at least before anything is measured.
						d = max(loopSeconds/2, time.Second)
					}
					sample, err := closedLoop(ctx, s, cfg.ClockTicks, n, d, &readSeq, func(c context.Context, seq int64) error {
						return s.read(c, int(seq%int64(cfg.ReadObjects)))
					})
					if err != nil {
						return fmt.Errorf("%s: %s: read x%d: %w", label, s.name(), n, err)
					}
					addLoop(reports[i].Read[k], round, sample)
					progress("%s read %dB x%-3d %-12s %8.0f ops/s  server CPU %.0f us/op", label, cfg.ReadBytes, n, s.name(), sample.OpsPerSec, sample.ServerCPUMicrosPerOp)
				}
			}
			if wants["write"] {
				for _, i := range order {
					s := servers[i]
					d := loopSeconds
					if round == 0 {
						d = max(loopSeconds/4, 500*time.Millisecond)
					}
					sample, err := closedLoop(ctx, s, cfg.ClockTicks, n, d, &writeSeq, func(c context.Context, seq int64) error {
						return s.write(c, writeBlob(seq), seq)
					})
					if err != nil {
						return fmt.Errorf("%s: %s: write x%d: %w", label, s.name(), n, err)
					}
					addLoop(reports[i].Write[k], round, sample)
					progress("%s write %dB x%-3d %-12s %7.0f ops/s  server CPU %.0f us/op", label, cfg.WriteBytes, n, s.name(), sample.OpsPerSec, sample.ServerCPUMicrosPerOp)
				}
			}
		}
	}

	measuredTo := monotonicMicros()
	for i, s := range servers {
		peak, err := peakRSS(s.pid())
		if err != nil {
			return err
		}
		reports[i].PeakRSSBytes = peak
		for _, l := range append(append([]*loopReport(nil), reports[i].Read...), reports[i].Write...) {
			l.P50Ms, l.P99Ms = percentileMs(l.latencies, 50), percentileMs(l.latencies, 99)
		}
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", " ")
	return out.Encode(report{Config: cfg, Servers: reports, MeasuredFromMicros: measuredFrom, MeasuredToMicros: measuredTo})
}

func addTransfer(r *transferReport, round int, s transferSample) {
	if round == 0 {
		r.Warmup = s
		return
	}
	r.Rounds = append(r.Rounds, s)
}

func addLoop(r *loopReport, round int, s loopSample) {
	if round == 0 {
		r.WarmupOpsPerSec = s.OpsPerSec
		return
	}
	r.Rounds = append(r.Rounds, s)
	r.latencies = append(r.latencies, s.latencies...)
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}
