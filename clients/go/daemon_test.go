package filestorage_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testAddress is the daemon the tests share: $FILESTORAGE_ADDRESS (the jest
// wrapper test/process/go-client.test.ts sets it), else one TestMain starts.
var testAddress string

func TestMain(m *testing.M) {
	testAddress = os.Getenv("FILESTORAGE_ADDRESS")
	stop := func() {}
	if testAddress == "" {
		d, err := startDaemon(nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, "go client tests:", err)
			os.Exit(1)
		}
		testAddress, stop = d.address, d.stop
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

// repoRoot is the FileStorage checkout this module sits in (clients/go).
var repoRoot, _ = filepath.Abs(filepath.Join("..", ".."))

type daemon struct {
	address string
	cmd     *exec.Cmd
	storage string
	// stderr collects what the daemon wrote there, for failure messages.
	stderr *lockedBuffer
	done   chan struct{}
}

// startDaemon runs `node bin/filestorage.js serve` (the built dist/) on
// 127.0.0.1:0 over a fresh storage folder, with env added to the defaults,
// and returns once its log line says where it serves.
func startDaemon(env map[string]string) (*daemon, error) {
	if _, err := os.Stat(filepath.Join(repoRoot, "dist", "server", "cli", "main.js")); err != nil {
		return nil, errors.New("dist/ is missing: run `npm run build` in the repository root (npm test does) before these tests")
	}
	storage, err := os.MkdirTemp("", "fs-go-daemon-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("node", filepath.Join(repoRoot, "bin", "filestorage.js"), "serve")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"LISTEN_ADDRESS=127.0.0.1:0",
		"METRICS_PORT=0",
		"LOG_LEVEL=info",
		// grpc-js's tryShutdown can wait out the whole grace period when a
		// client closes its connection right after a client stream
		// (grpc/grpc-node#1664): a test daemon need not wait 10 s.
		"SHUTDOWN_GRACE_SECONDS=1",
		"LOCAL_STORAGE_PATH=" + storage,
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	d := &daemon{cmd: cmd, storage: storage, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = d.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(storage)
		return nil, fmt.Errorf("starting the daemon (node on PATH?): %w", err)
	}
	serving := make(chan string, 1)
	go func() {
		// Reads every line to the end, so the daemon never blocks on a full pipe.
		lines := bufio.NewScanner(stdout)
		lines.Buffer(make([]byte, 64<<10), 1<<20)
		for lines.Scan() {
			var entry struct {
				Msg     string `json:"msg"`
				Address string `json:"address"`
			}
			if json.Unmarshal(lines.Bytes(), &entry) == nil && entry.Msg == "FileStorage is serving" && entry.Address != "" {
				select {
				case serving <- entry.Address:
				default:
				}
			}
		}
		cmd.Wait()
		close(d.done)
	}()
	select {
	case d.address = <-serving:
		return d, nil
	case <-d.done:
		os.RemoveAll(storage)
		return nil, fmt.Errorf("the daemon exited before serving: %s", d.stderr.String())
	case <-time.After(20 * time.Second):
		d.stop()
		return nil, fmt.Errorf("the daemon did not serve within 20 s: %s", d.stderr.String())
	}
}

// startTestDaemon is startDaemon for one test, stopped when it ends.
func startTestDaemon(t *testing.T, env map[string]string) *daemon {
	t.Helper()
	d, err := startDaemon(env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.stop)
	return d
}

// stop ends the daemon (SIGTERM, then SIGKILL after 5 s) and removes its storage.
func (d *daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
	os.RemoveAll(d.storage)
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
