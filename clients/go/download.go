package filestorage

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	filestoragev1 "github.com/filestorage/filestorage/clients/go/gen/filestorage/v1"
	"google.golang.org/grpc/codes"
)

// Download writes the object under key to w, from byte offset on, at most
// limit bytes (0: to the end), and returns its Info. It checks that exactly
// the expected number of bytes arrived and, for a whole download (offset and
// limit 0), their CRC32C; a mismatch is DATA_LOSS, found only once all bytes
// are written, so discard what w received when Download fails. A missing key
// matches ErrNotFound; an offset past the end is OUT_OF_RANGE. Honours
// IfGenerationMatch (a changed object is FAILED_PRECONDITION), for resuming a
// download of an object that must not change. A failing w cancels the stream
// and its error is wrapped.
func (c *Client) Download(ctx context.Context, key string, w io.Writer, offset, limit int64, opts ...Option) (*Info, error) {
	o := applyOptions(opts)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.RetrieveStream(ctx, &filestoragev1.RetrieveStreamRequest{
		Key: key, Offset: offset, Limit: limit, IfGenerationMatch: o.ifGen,
	})
	if err != nil {
		return nil, rpcError(err)
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, rpcError(err)
	}
	info, err := requireInfo(first.GetObject())
	if err != nil {
		return nil, err
	}
	check := newReceiveCheck(info, offset, limit)
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, rpcError(err)
		}
		chunk, ok := msg.GetPayload().(*filestoragev1.RetrieveStreamResponse_Chunk)
		if !ok {
			return nil, clientError(codes.Internal, "download of %q: the daemon sent a second ObjectInfo", key)
		}
		if err := check.add(chunk.Chunk); err != nil {
			return nil, err
		}
		if _, err := w.Write(chunk.Chunk); err != nil {
			return nil, fmt.Errorf("filestorage: download of %q: writing the data: %w", key, err)
		}
	}
	if err := check.finish(); err != nil {
		return nil, err
	}
	return info, nil
}

// receiveCheck verifies a download: never more bytes than the range holds,
// exactly that many at the end, and for a whole object its CRC32C.
type receiveCheck struct {
	key     string
	want    int64
	got     int64
	crc     hash.Hash32
	wantCRC uint32
}

func newReceiveCheck(info *Info, offset, limit int64) *receiveCheck {
	want := max(info.Size-offset, 0)
	if limit > 0 {
		want = min(want, limit)
	}
	c := &receiveCheck{key: info.Key, want: want}
	if offset == 0 && limit == 0 {
		c.crc, c.wantCRC = crc32.New(castagnoli), info.CRC32C
	}
	return c
}

func (c *receiveCheck) add(chunk []byte) error {
	c.got += int64(len(chunk))
	if c.got > c.want {
		return clientError(codes.DataLoss, "download of %q: received more than the %d bytes expected", c.key, c.want)
	}
	if c.crc != nil {
		c.crc.Write(chunk)
	}
	return nil
}

func (c *receiveCheck) finish() error {
	if c.got != c.want {
		return clientError(codes.DataLoss, "download of %q: received %d bytes, expected %d", c.key, c.got, c.want)
	}
	if c.crc != nil && c.crc.Sum32() != c.wantCRC {
		return clientError(codes.DataLoss, "download of %q: CRC32C %08x of the bytes received differs from the object's %08x", c.key, c.crc.Sum32(), c.wantCRC)
	}
	return nil
}
