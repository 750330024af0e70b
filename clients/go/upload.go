package filestorage

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	filestoragev1 "github.com/filestorage/filestorage/clients/go/gen/filestorage/v1"
)

// Upload streams everything r yields under key, in chunks of 1 MiB
// (WithChunkSize), with a trailer carrying the CRC32C and size of the whole,
// which the daemon checks before it keeps the object (a mismatch is
// DATA_LOSS and nothing is stored). Memory stays at a few chunks whatever
// the size. The kind is BYTES unless WithKind says otherwise; also honours
// WithContentType, WithMetadata, WithSize, IfGenerationMatch and
// WithExpiresAt. When r fails, the stream is cancelled, nothing is stored
// and the error wraps r's.
func (c *Client) Upload(ctx context.Context, key string, r io.Reader, opts ...Option) (*Info, error) {
	o := applyOptions(opts)
	header, err := o.storeHeader(key, KindBytes)
	if err != nil {
		return nil, err
	}
	// Cancelling the stream is how a failed reader tells the daemon to drop
	// what it received.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.StoreStream(ctx)
	if err != nil {
		return nil, rpcError(err)
	}
	send := func(m *filestoragev1.StoreStreamRequest) error {
		if err := stream.Send(m); err != nil {
			if errors.Is(err, io.EOF) {
				// The daemon ended the stream; its status says why.
				_, err = stream.CloseAndRecv()
			}
			return rpcError(err)
		}
		return nil
	}
	if err := send(&filestoragev1.StoreStreamRequest{Payload: &filestoragev1.StoreStreamRequest_Header{Header: header}}); err != nil {
		return nil, err
	}
	crc := crc32.New(castagnoli)
	var size int64
	for {
		// A fresh buffer per chunk: gRPC may still hold a sent message.
		chunk := make([]byte, o.chunkSize)
		n, readErr := io.ReadFull(r, chunk)
		if n > 0 {
			crc.Write(chunk[:n])
			size += int64(n)
			if err := send(&filestoragev1.StoreStreamRequest{Payload: &filestoragev1.StoreStreamRequest_Chunk{Chunk: chunk[:n]}}); err != nil {
				return nil, err
			}
		}
		if readErr == io.EOF || errors.Is(readErr, io.ErrUnexpectedEOF) {
			break
		}
		if readErr != nil {
			cancel()
			return nil, fmt.Errorf("filestorage: upload of %q: reading the data: %w", key, readErr)
		}
	}
	sum := crc.Sum32()
	trailer := &filestoragev1.StoreStreamTrailer{Crc32C: &sum, Size: &size}
	if err := send(&filestoragev1.StoreStreamRequest{Payload: &filestoragev1.StoreStreamRequest_Trailer{Trailer: trailer}}); err != nil {
		return nil, err
	}
	res, err := stream.CloseAndRecv()
	if err != nil {
		return nil, rpcError(err)
	}
	return requireInfo(res.GetObject())
}
