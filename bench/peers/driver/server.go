package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"time"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// blob is one object of the workload with the digests a client may need:
// bazel-remote names a blob by its SHA-256, the others check CRC32C.
type blob struct {
	data   []byte
	sha256 string
	crc32c uint32
}

func newBlob(data []byte) blob {
	sum := sha256.Sum256(data)
	return blob{data: data, sha256: hex.EncodeToString(sum[:]), crc32c: crc32.Checksum(data, castagnoli)}
}

// server is one storage server as the workload drives it. Every method is
// one request as a user of that server would make it, checked: a wrong size
// or checksum is an error, never a fast result.
type server interface {
	name() string
	pid() int
	// setup stores the big object (for downloads; none when its data is
	// empty) and the small ones (for reads).
	setup(ctx context.Context, big blob, small []blob) error
	// download reads the whole big object, checks its size and CRC32C, and
	// returns how many bytes arrived.
	download(ctx context.Context) (int64, error)
	// upload stores b under a name of its own; remove (not timed) deletes it
	// again where the server can.
	upload(ctx context.Context, b blob, round int) (remove func() error, err error)
	// read reads small object i (of those setup stored) and checks its size.
	read(ctx context.Context, i int) error
	// write stores b, a small object, under a new name (n is unique).
	write(ctx context.Context, b blob, n int64) error
	close()
}

// httpTransport is what both HTTP peers are driven with: keep-alive
// connections enough for every call in flight, no transparent gzip.
func httpTransport() *http.Transport {
	return &http.Transport{
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// bigBuffer is the copy buffer of every HTTP download, so that each peer's
// body is read in the same size of pieces.
const bigBuffer = 1 << 20

// copyChecked reads body to the end into a CRC32C and checks size and sum.
func copyChecked(body io.Reader, want blob, buf []byte) (int64, error) {
	h := crc32.New(castagnoli)
	n, err := io.CopyBuffer(h, body, buf)
	if err != nil {
		return n, err
	}
	if n != int64(len(want.data)) {
		return n, fmt.Errorf("received %d bytes, want %d", n, len(want.data))
	}
	if h.Sum32() != want.crc32c {
		return n, fmt.Errorf("CRC32C %08x of the bytes received, want %08x", h.Sum32(), want.crc32c)
	}
	return n, nil
}

// readSmall reads body, which must hold exactly size bytes, into buf.
func readSmall(body io.Reader, size int, buf []byte) error {
	n, err := io.ReadFull(body, buf[:size])
	if err != nil {
		return fmt.Errorf("read %d of %d bytes: %w", n, size, err)
	}
	if extra, _ := body.Read(buf[:1]); extra != 0 {
		return fmt.Errorf("more than the %d bytes expected", size)
	}
	return nil
}
