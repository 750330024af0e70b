package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
)

// bazelServer drives bazel-remote through its HTTP CAS API, as Bazel's
// remote cache client does: PUT and GET /cas/<sha256 of the content>. The
// server checks the SHA-256 of each PUT body. It has no delete: uploads stay
// until its LRU evicts them (its --max_size bounds the disk).
type bazelServer struct {
	processID int
	base      string
	client    *http.Client
	big       blob
	small     []blob
	buf       []byte
}

func newBazelServer(addr string, pid int) *bazelServer {
	return &bazelServer{processID: pid, base: "http://" + addr, client: &http.Client{Transport: httpTransport()}, buf: make([]byte, bigBuffer)}
}

func (b *bazelServer) name() string { return "bazel-remote" }
func (b *bazelServer) pid() int     { return b.processID }
func (b *bazelServer) close()       { b.client.CloseIdleConnections() }

func (b *bazelServer) put(ctx context.Context, x blob) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, b.base+"/cas/"+x.sha256, bytes.NewReader(x.data))
	if err != nil {
		return err
	}
	req.ContentLength = int64(len(x.data))
	res, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("PUT /cas/%s: %s", x.sha256, res.Status)
	}
	return nil
}

func (b *bazelServer) get(ctx context.Context, x blob) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.base+"/cas/"+x.sha256, nil)
	if err != nil {
		return nil, err
	}
	res, err := b.client.Do(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		return nil, fmt.Errorf("GET /cas/%s: %s", x.sha256, res.Status)
	}
	return res, nil
}

func (b *bazelServer) setup(ctx context.Context, big blob, small []blob) error {
	b.big, b.small = big, small
	if len(big.data) > 0 {
		if err := b.put(ctx, big); err != nil {
			return fmt.Errorf("storing the big object: %w", err)
		}
	}
	for i, x := range small {
		if err := b.put(ctx, x); err != nil {
			return fmt.Errorf("storing small object %d: %w", i, err)
		}
	}
	return nil
}

func (b *bazelServer) download(ctx context.Context) (int64, error) {
	res, err := b.get(ctx, b.big)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	return copyChecked(res.Body, b.big, b.buf)
}

func (b *bazelServer) upload(ctx context.Context, x blob, _ int) (func() error, error) {
	if err := b.put(ctx, x); err != nil {
		return nil, err
	}
	return func() error { return nil }, nil
}

func (b *bazelServer) read(ctx context.Context, i int) error {
	x := b.small[i]
	res, err := b.get(ctx, x)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	buf := make([]byte, len(x.data))
	return readSmall(res.Body, len(x.data), buf)
}

func (b *bazelServer) write(ctx context.Context, x blob, _ int64) error {
	return b.put(ctx, x)
}
