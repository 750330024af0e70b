package filestorage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	filestoragev1 "github.com/filestorage/filestorage/clients/go/gen/filestorage/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Client calls one daemon over one gRPC connection. It is safe for
// concurrent use; Close it when done.
type Client struct {
	conn          *grpc.ClientConn
	rpc           filestoragev1.FileStorageServiceClient
	maxUnaryBytes int
}

// The HTTP/2 windows: gRPC's 64 KiB default caps a stream's throughput
// on any link with latency; 16 MiB lets 1 MiB chunks flow.
const windowBytes = 16 << 20

// Dial prepares a client of the daemon at addr ("host:port"). The connection
// is made lazily, on the first call, so a daemon that is down shows as
// UNAVAILABLE there. Plaintext unless a TLS option is given.
func Dial(addr string, opts ...DialOption) (*Client, error) {
	cfg := defaultDialConfig()
	for _, opt := range opts {
		opt(&cfg)
	}
	if cfg.err != nil {
		return nil, cfg.err
	}
	if addr == "" {
		return nil, fmt.Errorf("filestorage: Dial needs the daemon's address (host:port)")
	}
	transport := insecure.NewCredentials()
	if cfg.tls != nil {
		transport = credentials.NewTLS(cfg.tls)
	}
	// A unary Retrieve of maxUnaryBytes plus its ObjectInfo and framing must fit.
	maxMessage := max(16<<20, cfg.maxUnaryBytes+(1<<20))
	grpcOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(transport),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)),
		grpc.WithInitialWindowSize(windowBytes),
		grpc.WithInitialConnWindowSize(windowBytes),
		grpc.WithUnaryInterceptor(deadlineInterceptor(cfg.deadline)),
		grpc.WithDefaultServiceConfig(retryServiceConfig(cfg.retries)),
	}
	if cfg.token != "" {
		grpcOpts = append(grpcOpts, grpc.WithPerRPCCredentials(bearerToken{token: cfg.token, secure: cfg.tls != nil}))
	}
	conn, err := grpc.NewClient(addr, append(grpcOpts, cfg.grpcOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("filestorage: %w", err)
	}
	return &Client{conn: conn, rpc: filestoragev1.NewFileStorageServiceClient(conn), maxUnaryBytes: cfg.maxUnaryBytes}, nil
}

// Close ends the connection; calls in flight fail with CANCELED.
func (c *Client) Close() error { return c.conn.Close() }

// Stub is the generated gRPC client on the same connection, for calls this
// client does not wrap.
func (c *Client) Stub() filestoragev1.FileStorageServiceClient { return c.rpc }

// deadlineInterceptor bounds unary calls that come without a deadline.
func deadlineInterceptor(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// Store writes value under key and returns the new Info. A string is stored
// as TEXT, a []byte as BYTES, a json.RawMessage as JSON; WithKind overrides
// that. Other types are INVALID_ARGUMENT: StoreJSON encodes any value.
// Values over the unary limit (WithMaxUnaryBytes) go through the upload
// stream. Honours WithKind, WithContentType, WithMetadata,
// IfGenerationMatch (a mismatch is FAILED_PRECONDITION) and WithExpiresAt.
func (c *Client) Store(ctx context.Context, key string, value any, opts ...Option) (*Info, error) {
	switch v := value.(type) {
	case string:
		return c.storeBytes(ctx, key, []byte(v), KindText, opts)
	case []byte:
		return c.storeBytes(ctx, key, v, KindBytes, opts)
	case json.RawMessage:
		return c.storeBytes(ctx, key, v, KindJSON, opts)
	default:
		return nil, clientError(codes.InvalidArgument, "Store takes a string (TEXT) or []byte (BYTES), not %T: StoreJSON stores any value as JSON", value)
	}
}

// StoreJSON writes v, encoded by encoding/json, under key as a JSON object.
// Options as for Store.
func (c *Client) StoreJSON(ctx context.Context, key string, v any, opts ...Option) (*Info, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, clientError(codes.InvalidArgument, "StoreJSON: the value does not encode as JSON: %v", err)
	}
	return c.storeBytes(ctx, key, data, KindJSON, opts)
}

func (c *Client) storeBytes(ctx context.Context, key string, data []byte, kind Kind, opts []Option) (*Info, error) {
	if len(data) > c.maxUnaryBytes {
		return c.Upload(ctx, key, bytes.NewReader(data), append([]Option{WithKind(kind), WithSize(int64(len(data)))}, opts...)...)
	}
	o := applyOptions(opts)
	metadata, err := o.metadataStruct()
	if err != nil {
		return nil, err
	}
	res, err := c.rpc.Store(ctx, &filestoragev1.StoreRequest{
		Key:               key,
		Data:              data,
		Kind:              o.kindOr(kind),
		ContentType:       o.contentType,
		Metadata:          metadata,
		IfGenerationMatch: o.ifGen,
		ExpiresAt:         o.expiresAtProto(),
	})
	if err != nil {
		return nil, rpcError(err)
	}
	return requireInfo(res.GetObject())
}

// Retrieve returns the whole object under key, with the kind it was stored
// with. A missing key is an error matching ErrNotFound. Objects over the
// daemon's unary limit arrive through the download stream, CRC32C checked.
func (c *Client) Retrieve(ctx context.Context, key string) (*Object, error) {
	res, err := c.rpc.Retrieve(ctx, &filestoragev1.RetrieveRequest{Key: key})
	if err == nil {
		info, err := requireInfo(res.GetObject())
		if err != nil {
			return nil, err
		}
		return &Object{Info: info, Data: res.GetData()}, nil
	}
	// Retrieve has no precondition of its own: this is the unary limit.
	if status.Code(err) != codes.FailedPrecondition {
		return nil, rpcError(err)
	}
	var buf bytes.Buffer
	info, err := c.Download(ctx, key, &buf, 0, 0)
	if err != nil {
		return nil, err
	}
	return &Object{Info: info, Data: buf.Bytes()}, nil
}

// Stat returns the Info of the object under key without its data; a missing
// key is an error matching ErrNotFound.
func (c *Client) Stat(ctx context.Context, key string) (*Info, error) {
	res, err := c.rpc.Stat(ctx, &filestoragev1.StatRequest{Key: key})
	if err != nil {
		return nil, rpcError(err)
	}
	return requireInfo(res.GetObject())
}

// Exists tells whether key holds a live object.
func (c *Client) Exists(ctx context.Context, key string) (bool, error) {
	res, err := c.rpc.Exists(ctx, &filestoragev1.ExistsRequest{Key: key})
	if err != nil {
		return false, rpcError(err)
	}
	return res.GetExists(), nil
}

// Delete removes the object under key and tells whether there was one (a
// missing key is not an error). Honours IfGenerationMatch.
func (c *Client) Delete(ctx context.Context, key string, opts ...Option) (bool, error) {
	o := applyOptions(opts)
	res, err := c.rpc.Delete(ctx, &filestoragev1.DeleteRequest{Key: key, IfGenerationMatch: o.ifGen})
	if err != nil {
		return false, rpcError(err)
	}
	return res.GetDeleted(), nil
}

// DeleteMany removes every key under prefix (when not empty) and the keys
// listed, and returns how many objects it deleted.
func (c *Client) DeleteMany(ctx context.Context, prefix string, keys ...string) (int64, error) {
	res, err := c.rpc.DeleteMany(ctx, &filestoragev1.DeleteManyRequest{Prefix: prefix, Keys: keys})
	if err != nil {
		return 0, rpcError(err)
	}
	return res.GetDeletedCount(), nil
}

// GetStats returns the daemon's state and counters.
func (c *Client) GetStats(ctx context.Context) (*Stats, error) {
	res, err := c.rpc.GetStats(ctx, &filestoragev1.GetStatsRequest{})
	return res, rpcError(err)
}
