package filestorage

import (
	"time"

	filestoragev1 "github.com/filestorage/filestorage/clients/go/gen/filestorage/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Option adjusts one call. Each method names the options it honours and
// ignores the others.
type Option func(*callOptions)

type callOptions struct {
	kind        Kind
	kindSet     bool
	contentType string
	metadata    map[string]any
	ifGen       *int64
	expiresAt   time.Time
	size        *int64
	chunkSize   int
}

const defaultChunkSize = 1 << 20

func applyOptions(opts []Option) callOptions {
	o := callOptions{chunkSize: defaultChunkSize}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithKind stores the data as kind instead of the kind the method infers
// (Store, StoreJSON, Upload). The daemon checks it: TEXT must be UTF-8, JSON
// must parse.
func WithKind(kind Kind) Option {
	return func(o *callOptions) { o.kind, o.kindSet = kind, true }
}

// WithContentType records a MIME type with the object (Store, StoreJSON, Upload).
func WithContentType(contentType string) Option {
	return func(o *callOptions) { o.contentType = contentType }
}

// WithMetadata records JSON-like metadata with the object (Store, StoreJSON,
// Upload): values may be strings, numbers, bools, nil, []any and
// map[string]any, as structpb.NewStruct takes them.
func WithMetadata(metadata map[string]any) Option {
	return func(o *callOptions) { o.metadata = metadata }
}

// IfGenerationMatch makes the call conditional on the key's current
// generation (Store, StoreJSON, Upload, Delete, Download); 0 means "only if
// the key holds no object" for writes. A mismatch is FAILED_PRECONDITION.
func IfGenerationMatch(generation int64) Option {
	return func(o *callOptions) { o.ifGen = &generation }
}

// WithExpiresAt makes the object expire at t (Store, StoreJSON, Upload).
func WithExpiresAt(t time.Time) Option {
	return func(o *callOptions) { o.expiresAt = t }
}

// WithSize declares the total size of an Upload in its header, so the daemon
// can refuse an object over its limits before any byte is sent.
func WithSize(size int64) Option {
	return func(o *callOptions) { o.size = &size }
}

// WithChunkSize sets the bytes per message of an Upload (default 1 MiB; the
// daemon receives at most 4 MiB per message).
func WithChunkSize(n int) Option {
	return func(o *callOptions) {
		if n > 0 {
			o.chunkSize = n
		}
	}
}

func (o *callOptions) kindOr(inferred Kind) Kind {
	if o.kindSet {
		return o.kind
	}
	return inferred
}

func (o *callOptions) metadataStruct() (*structpb.Struct, error) {
	if o.metadata == nil {
		return nil, nil
	}
	s, err := structpb.NewStruct(o.metadata)
	if err != nil {
		return nil, clientError(codes.InvalidArgument, "metadata must hold JSON values: %v", err)
	}
	return s, nil
}

func (o *callOptions) expiresAtProto() *timestamppb.Timestamp {
	if o.expiresAt.IsZero() {
		return nil
	}
	return timestamppb.New(o.expiresAt)
}

// storeHeader is the StoreStream header these options describe.
func (o *callOptions) storeHeader(key string, kind Kind) (*filestoragev1.StoreStreamHeader, error) {
	metadata, err := o.metadataStruct()
	if err != nil {
		return nil, err
	}
	return &filestoragev1.StoreStreamHeader{
		Key:               key,
		Kind:              o.kindOr(kind),
		ContentType:       o.contentType,
		Metadata:          metadata,
		Size:              o.size,
		IfGenerationMatch: o.ifGen,
		ExpiresAt:         o.expiresAtProto(),
	}, nil
}
