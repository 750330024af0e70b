package filestorage

import filestoragev1 "github.com/filestorage/filestorage/clients/go/gen/filestorage/v1"

// Kind says how an object's bytes decode: BYTES, TEXT (UTF-8) or JSON.
type Kind = filestoragev1.DataKind

// The kinds an object can have. KindUnspecified reads as bytes.
const (
	KindUnspecified = filestoragev1.DataKind_DATA_KIND_UNSPECIFIED
	KindBytes       = filestoragev1.DataKind_DATA_KIND_BYTES
	KindText        = filestoragev1.DataKind_DATA_KIND_TEXT
	KindJSON        = filestoragev1.DataKind_DATA_KIND_JSON
)

// Backend names the tier holding an object's authoritative copy.
type Backend = filestoragev1.Backend

// The tiers.
const (
	BackendUnspecified = filestoragev1.Backend_BACKEND_UNSPECIFIED
	BackendGCS         = filestoragev1.Backend_BACKEND_GCS
	BackendLocal       = filestoragev1.Backend_BACKEND_LOCAL
)

// Stats is the daemon's GetStats answer: its tiers, cache and counters.
type Stats = filestoragev1.GetStatsResponse
