package filestorage

import (
	"encoding/json"
	"fmt"
	"time"

	filestoragev1 "github.com/filestorage/filestorage/clients/go/gen/filestorage/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Info describes a stored object (the daemon's ObjectInfo in Go types).
type Info struct {
	Key  string
	Kind Kind
	// Size is the original size in bytes; StoredSize the size at rest, after
	// compression and encryption.
	Size        int64
	StoredSize  int64
	ContentType string
	// Metadata as stored: JSON values (string, float64, bool, nil,
	// []any, map[string]any). Nil when the object has none.
	Metadata map[string]any
	// Generation rises on every write of the key; IfGenerationMatch takes it.
	Generation int64
	// CRC32C (Castagnoli) of the original bytes.
	CRC32C     uint32
	Compressed bool
	Encrypted  bool
	// Backend holds the authoritative copy; PendingReplication is true while
	// it lives only on the local fallback tier.
	Backend            Backend
	PendingReplication bool
	// Zero when the daemon sent none (ExpiresAt: the object never expires).
	CreatedAt time.Time
	UpdatedAt time.Time
	ExpiresAt time.Time
	// Proto is the message as received, for fields newer than this client.
	Proto *filestoragev1.ObjectInfo
}

func infoFrom(p *filestoragev1.ObjectInfo) *Info {
	if p == nil {
		return nil
	}
	info := &Info{
		Key:                p.GetKey(),
		Kind:               p.GetKind(),
		Size:               p.GetSize(),
		StoredSize:         p.GetStoredSize(),
		ContentType:        p.GetContentType(),
		Generation:         p.GetGeneration(),
		CRC32C:             p.GetCrc32C(),
		Compressed:         p.GetCompressed(),
		Encrypted:          p.GetEncrypted(),
		Backend:            p.GetBackend(),
		PendingReplication: p.GetPendingReplication(),
		CreatedAt:          timeOf(p.GetCreatedAt()),
		UpdatedAt:          timeOf(p.GetUpdatedAt()),
		ExpiresAt:          timeOf(p.GetExpiresAt()),
		Proto:              p,
	}
	if p.GetMetadata() != nil {
		info.Metadata = p.GetMetadata().AsMap()
	}
	return info
}

func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

// requireInfo turns a response without its ObjectInfo, which the contract
// rules out, into an error instead of a nil Info.
func requireInfo(p *filestoragev1.ObjectInfo) (*Info, error) {
	if p == nil {
		return nil, clientError(codes.Internal, "the daemon answered without an ObjectInfo")
	}
	return infoFrom(p), nil
}

// Object is a whole stored value: its Info and its bytes, decoded by kind
// with Text, Bytes or JSON.
type Object struct {
	Info *Info
	Data []byte
}

// Kind is the kind the object was stored with (BYTES for an unspecified one).
func (o *Object) Kind() Kind {
	if o.Info.Kind == KindUnspecified {
		return KindBytes
	}
	return o.Info.Kind
}

// Text returns the data as a string, whatever the kind (TEXT and JSON data
// are valid UTF-8; check Kind to tell a stored string from a JSON document).
func (o *Object) Text() string { return string(o.Data) }

// Bytes returns the data; never nil, so an empty object reads as []byte{}.
func (o *Object) Bytes() []byte {
	if o.Data == nil {
		return []byte{}
	}
	return o.Data
}

// JSON decodes a JSON object's data into v with encoding/json, returning
// its error when v does not fit. An object of another kind is an
// INVALID_ARGUMENT error: a string that looks like JSON stays a string.
func (o *Object) JSON(v any) error {
	if o.Kind() != KindJSON {
		return clientError(codes.InvalidArgument, "%q holds %s, not JSON", o.Info.Key, o.Kind())
	}
	if err := json.Unmarshal(o.Data, v); err != nil {
		return fmt.Errorf("filestorage: decoding the JSON of %q: %w", o.Info.Key, err)
	}
	return nil
}
