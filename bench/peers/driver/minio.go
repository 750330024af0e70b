package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

const minioBucket = "peers"

// minioServer drives MinIO through minio-go over plain HTTP: a single-stream
// PUT (multipart off) with UNSIGNED-PAYLOAD (no SHA-256 of the body on
// either side, as over TLS), and plain GETs (Core.GetObject: one request,
// no HEAD first).
type minioServer struct {
	processID int
	core      minio.Core
	big       blob
	smallSize int
	buf       []byte
}

func newMinioServer(endpoint, user, password string, pid int) (*minioServer, error) {
	c, err := minio.New(endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(user, password, ""),
		Secure:    false,
		Transport: httpTransport(),
		// MinIO's default region: no bucket-location look-up before the first call.
		Region: "us-east-1",
	})
	if err != nil {
		return nil, err
	}
	return &minioServer{processID: pid, core: minio.Core{Client: c}, buf: make([]byte, bigBuffer)}, nil
}

func (m *minioServer) name() string { return "minio" }
func (m *minioServer) pid() int     { return m.processID }
func (m *minioServer) close()       {}

func (m *minioServer) put(ctx context.Context, key string, data []byte) error {
	info, err := m.core.Client.PutObject(ctx, minioBucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{
		ContentType:          "application/octet-stream",
		DisableMultipart:     true,
		DisableContentSha256: true,
	})
	if err != nil {
		return err
	}
	if info.Size != int64(len(data)) {
		return fmt.Errorf("MinIO kept %d bytes, sent %d", info.Size, len(data))
	}
	return nil
}

func (m *minioServer) setup(ctx context.Context, big blob, small []blob) error {
	if err := m.core.Client.MakeBucket(ctx, minioBucket, minio.MakeBucketOptions{}); err != nil {
		if resp := minio.ToErrorResponse(err); resp.Code != "BucketAlreadyOwnedByYou" {
			return fmt.Errorf("creating bucket %s: %w", minioBucket, err)
		}
	}
	m.big = big
	if len(big.data) > 0 {
		if err := m.put(ctx, "big", big.data); err != nil {
			return fmt.Errorf("storing the big object: %w", err)
		}
	}
	for i, b := range small {
		m.smallSize = len(b.data)
		if err := m.put(ctx, fmt.Sprintf("r/%d", i), b.data); err != nil {
			return fmt.Errorf("storing small object %d: %w", i, err)
		}
	}
	return nil
}

func (m *minioServer) download(ctx context.Context) (int64, error) {
	body, _, _, err := m.core.GetObject(ctx, minioBucket, "big", minio.GetObjectOptions{})
	if err != nil {
		return 0, err
	}
	defer body.Close()
	return copyChecked(body, m.big, m.buf)
}

func (m *minioServer) upload(ctx context.Context, b blob, round int) (func() error, error) {
	key := fmt.Sprintf("up/%d", round)
	if err := m.put(ctx, key, b.data); err != nil {
		return nil, err
	}
	return func() error {
		return m.core.Client.RemoveObject(context.Background(), minioBucket, key, minio.RemoveObjectOptions{})
	}, nil
}

func (m *minioServer) read(ctx context.Context, i int) error {
	body, _, _, err := m.core.GetObject(ctx, minioBucket, fmt.Sprintf("r/%d", i), minio.GetObjectOptions{})
	if err != nil {
		return err
	}
	defer body.Close()
	buf := make([]byte, m.smallSize)
	return readSmall(body, m.smallSize, buf)
}

func (m *minioServer) write(ctx context.Context, b blob, n int64) error {
	return m.put(ctx, fmt.Sprintf("w/%d", n), b.data)
}

// minioEndpoint strips a scheme, which minio.New does not take.
func minioEndpoint(addr string) string {
	return strings.TrimPrefix(addr, "http://")
}
