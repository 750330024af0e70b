package main

import (
	"bytes"
	"context"
	"fmt"
	"io"

	filestorage "github.com/filestorage/filestorage/clients/go"
)

// daemonServer drives the FileStorage daemon through the Go client of this
// checkout (clients/go): unary Store and Retrieve for small objects, the
// streams (Upload, Download: 1 MiB chunks, CRC32C checked end to end) for
// the big one. One client, one HTTP/2 connection, as a Go service has it.
type daemonServer struct {
	processID int
	client    *filestorage.Client
	bigSize   int64
	smallSize int
}

func newDaemonServer(addr string, pid int) (*daemonServer, error) {
	c, err := filestorage.Dial(addr)
	if err != nil {
		return nil, err
	}
	return &daemonServer{processID: pid, client: c}, nil
}

func (d *daemonServer) name() string { return "daemon" }
func (d *daemonServer) pid() int     { return d.processID }
func (d *daemonServer) close()       { _ = d.client.Close() }

func (d *daemonServer) setup(ctx context.Context, big blob, small []blob) error {
	d.bigSize = int64(len(big.data))
	if d.bigSize > 0 {
		if _, err := d.client.Upload(ctx, "peers/big", bytes.NewReader(big.data), filestorage.WithSize(d.bigSize)); err != nil {
			return fmt.Errorf("storing the big object: %w", err)
		}
	}
	for i, b := range small {
		d.smallSize = len(b.data)
		if _, err := d.client.Store(ctx, fmt.Sprintf("peers/r/%d", i), b.data); err != nil {
			return fmt.Errorf("storing small object %d: %w", i, err)
		}
	}
	return nil
}

func (d *daemonServer) download(ctx context.Context) (int64, error) {
	counter := &countingWriter{}
	// Download checks the size and the CRC32C of the whole object itself.
	if _, err := d.client.Download(ctx, "peers/big", counter, 0, 0); err != nil {
		return counter.n, err
	}
	if counter.n != d.bigSize {
		return counter.n, fmt.Errorf("received %d bytes, want %d", counter.n, d.bigSize)
	}
	return counter.n, nil
}

func (d *daemonServer) upload(ctx context.Context, b blob, round int) (func() error, error) {
	key := fmt.Sprintf("peers/up/%d", round)
	info, err := d.client.Upload(ctx, key, bytes.NewReader(b.data), filestorage.WithSize(int64(len(b.data))))
	if err != nil {
		return nil, err
	}
	if info.Size != int64(len(b.data)) || info.CRC32C != b.crc32c {
		return nil, fmt.Errorf("the daemon kept %d bytes with CRC32C %08x, sent %d with %08x", info.Size, info.CRC32C, len(b.data), b.crc32c)
	}
	return func() error {
		_, err := d.client.Delete(context.Background(), key)
		return err
	}, nil
}

func (d *daemonServer) read(ctx context.Context, i int) error {
	obj, err := d.client.Retrieve(ctx, fmt.Sprintf("peers/r/%d", i))
	if err != nil {
		return err
	}
	if len(obj.Data) != d.smallSize {
		return fmt.Errorf("received %d bytes, want %d", len(obj.Data), d.smallSize)
	}
	return nil
}

func (d *daemonServer) write(ctx context.Context, b blob, n int64) error {
	info, err := d.client.Store(ctx, fmt.Sprintf("peers/w/%d", n), b.data)
	if err != nil {
		return err
	}
	if info.Size != int64(len(b.data)) {
		return fmt.Errorf("the daemon kept %d bytes, sent %d", info.Size, len(b.data))
	}
	return nil
}

// countingWriter discards what it is given and counts it.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

var _ io.Writer = (*countingWriter)(nil)
