// Command scenario runs the shared client conformance scenario against the
// daemon at $FILESTORAGE_ADDRESS (plaintext) under the key prefix
// $SCENARIO_PREFIX (default "go/<pid>/"), printing one line per step. It
// exits 0 only when every step held; otherwise it prints the step that did
// not and what differed, and exits 1.
//
//	FILESTORAGE_ADDRESS=127.0.0.1:50051 go run ./cmd/scenario
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	filestorage "github.com/filestorage/filestorage/clients/go"
	"github.com/filestorage/filestorage/clients/go/internal/scenario"
)

func main() {
	addr := os.Getenv("FILESTORAGE_ADDRESS")
	if addr == "" {
		fmt.Fprintln(os.Stderr, "scenario: set FILESTORAGE_ADDRESS to the daemon's host:port")
		os.Exit(2)
	}
	prefix := os.Getenv("SCENARIO_PREFIX")
	if prefix == "" {
		prefix = fmt.Sprintf("go/%d/", os.Getpid())
	}
	c, err := filestorage.Dial(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scenario:", err)
		os.Exit(2)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := scenario.Run(ctx, c, prefix, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "scenario: FAILED at", err)
		cancel()
		c.Close()
		os.Exit(1)
	}
	fmt.Println("scenario: every step held")
}
