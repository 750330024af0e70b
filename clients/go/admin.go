package filestorage

import (
	"context"
	"errors"
	"io"
	"time"

	filestoragev1 "github.com/filestorage/filestorage/clients/go/gen/filestorage/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// The calls added to the contract after the first ones: QueryUpload, and the
// admin calls GetUsage, Flush and Verify (they need the admin right).

// UploadStatus is where a resumable upload stands (QueryUpload).
type UploadStatus struct {
	// CommittedSize is the bytes the daemon holds durably; a resume starts there.
	CommittedSize int64
	// Complete is true once the stream half-closed and the object was stored;
	// Object is its Info then, nil before.
	Complete bool
	Object   *Info
	// ExpiresAt is when the daemon forgets the upload unless a stream resumes
	// it first; zero when the daemon sent none.
	ExpiresAt time.Time
}

// QueryUpload reports where the resumable upload uploadID stands. An unknown
// or expired id is an error matching ErrNotFound (status NOT_FOUND), as a
// missing key is for Stat. Ids are per caller (per token). Retried on
// UNAVAILABLE.
func (c *Client) QueryUpload(ctx context.Context, uploadID string) (*UploadStatus, error) {
	res, err := c.rpc.QueryUpload(ctx, &filestoragev1.QueryUploadRequest{UploadId: uploadID})
	if err != nil {
		return nil, rpcError(err)
	}
	return &UploadStatus{
		CommittedSize: res.GetCommittedSize(),
		Complete:      res.GetComplete(),
		Object:        infoFrom(res.GetObject()),
		ExpiresAt:     timeOf(res.GetExpiresAt()),
	}, nil
}

// Usage is what GetUsage counts under a prefix.
type Usage struct {
	// ObjectCount live objects, TotalBytes their original sizes, StoredBytes
	// their sizes at rest (after compression and encryption).
	ObjectCount int64
	TotalBytes  int64
	StoredBytes int64
	// FromIndex is true when the local tier's index answered in one query
	// (the last page's answer).
	FromIndex bool
}

// usagePageObjects is how many objects one GetUsage call counts.
const usagePageObjects = 10_000

// Usage counts the live objects under prefix (every key when empty) and their
// bytes (GetUsage, admin right), following the daemon's pages and summing
// them. Each page is retried on UNAVAILABLE.
func (c *Client) Usage(ctx context.Context, prefix string) (Usage, error) {
	var total Usage
	token := ""
	for {
		res, err := c.rpc.GetUsage(ctx, &filestoragev1.GetUsageRequest{Prefix: prefix, PageToken: token, MaxObjects: usagePageObjects})
		if err != nil {
			return Usage{}, rpcError(err)
		}
		total.ObjectCount += res.GetObjectCount()
		total.TotalBytes += res.GetTotalBytes()
		total.StoredBytes += res.GetStoredBytes()
		total.FromIndex = res.GetFromIndex()
		if token = res.GetNextPageToken(); token == "" {
			return total, nil
		}
	}
}

// FlushProgress is one report of a flush.
type FlushProgress struct {
	// Pending writes wait for replication now; Replicated and Failed count
	// since the flush began (a failed attempt is retried).
	Pending    int64
	Replicated int64
	Failed     int64
	// OldestPendingAge is the age of the oldest pending write; 0 when none.
	OldestPendingAge time.Duration
	// Done is true on the last report: the backlog is empty.
	Done bool
}

// Flush drains the daemon's replication backlog into GCS now (admin right)
// and returns the last report once the backlog is empty. The daemon fails it
// UNAVAILABLE when GCS cannot be reached, DEADLINE_EXCEEDED when timeout
// (0 = no limit of its own) passes with writes still pending, and
// FAILED_PRECONDITION when it has no GCS tier. Never retried; bound it with
// ctx (no default deadline).
func (c *Client) Flush(ctx context.Context, timeout time.Duration) (FlushProgress, error) {
	if timeout < 0 {
		return FlushProgress{}, clientError(codes.InvalidArgument, "Flush timeout must be >= 0, got %v", timeout)
	}
	req := &filestoragev1.FlushRequest{}
	if timeout > 0 {
		req.TimeoutSeconds = proto.Float64(timeout.Seconds())
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Flush(ctx, req)
	if err != nil {
		return FlushProgress{}, rpcError(err)
	}
	var last *filestoragev1.FlushResponse
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return FlushProgress{}, rpcError(err)
		}
		last = msg
	}
	if !last.GetDone() {
		return FlushProgress{}, clientError(codes.Internal, "Flush ended without its final report")
	}
	return FlushProgress{
		Pending:          last.GetPending(),
		Replicated:       last.GetReplicated(),
		Failed:           last.GetFailed(),
		OldestPendingAge: time.Duration(last.GetOldestPendingAgeSeconds() * float64(time.Second)),
		Done:             true,
	}, nil
}

// VerifyTier names where a checked copy lives.
type VerifyTier = filestoragev1.VerifyTier

// The tiers Verify checks.
const (
	VerifyTierLocal     = filestoragev1.VerifyTier_VERIFY_TIER_LOCAL
	VerifyTierDiskCache = filestoragev1.VerifyTier_VERIFY_TIER_DISK_CACHE
	VerifyTierGCS       = filestoragev1.VerifyTier_VERIFY_TIER_GCS
)

// VerifyProblem is what is wrong with a copy.
type VerifyProblem = filestoragev1.VerifyProblem

// The problems Verify reports.
const (
	VerifyProblemCorrupt   = filestoragev1.VerifyProblem_VERIFY_PROBLEM_CORRUPT
	VerifyProblemOrphan    = filestoragev1.VerifyProblem_VERIFY_PROBLEM_ORPHAN
	VerifyProblemUnchecked = filestoragev1.VerifyProblem_VERIFY_PROBLEM_UNCHECKED
)

// VerifyOptions choose what Verify checks.
type VerifyOptions struct {
	// Prefix limits it to keys starting with it; orphaned bytes (which have
	// no key) are reported only for the empty prefix.
	Prefix string
	// IncludeGCS also downloads and checks every GCS object under Prefix.
	IncludeGCS bool
	// Repair fixes what a good copy elsewhere allows, and removes orphans.
	Repair bool
}

// VerifyFinding is one corrupt, orphaned or unchecked copy.
type VerifyFinding struct {
	Tier VerifyTier
	// Key is empty for orphaned bytes; Generation is the copy's on its tier
	// (0 for orphaned bytes).
	Key        string
	Generation int64
	Problem    VerifyProblem
	// Detail says what failed, e.g. "block 3 of 8 fails its CRC32C".
	Detail string
	// Repaired is true when the copy was repaired (an orphan: removed), and
	// Repair says how.
	Repaired bool
	Repair   string
}

// VerifySummary is Verify's closing count.
type VerifySummary struct {
	CheckedCopies int64
	CheckedBytes  int64
	Corrupt       int64
	Orphans       int64
	Unchecked     int64
	// Repaired counts findings repaired (corrupt copies replaced, orphans removed).
	Repaired int64
	Duration time.Duration
}

// Verify has the daemon re-read its stored copies (the local tier, the disk
// cache and, with IncludeGCS, GCS) and check their size and CRC32C (admin
// right), and returns its summary and every finding (progress reports are skipped). Never retried (it may
// repair); no default deadline: it reads every copy, so bound it with ctx.
func (c *Client) Verify(ctx context.Context, opts VerifyOptions) (VerifySummary, []VerifyFinding, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Verify(ctx, &filestoragev1.VerifyRequest{Prefix: opts.Prefix, IncludeGcs: opts.IncludeGCS, Repair: opts.Repair})
	if err != nil {
		return VerifySummary{}, nil, rpcError(err)
	}
	var findings []VerifyFinding
	var summary *filestoragev1.VerifySummary
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return VerifySummary{}, findings, rpcError(err)
		}
		switch p := msg.GetPayload().(type) {
		case *filestoragev1.VerifyResponse_Finding:
			f := p.Finding
			findings = append(findings, VerifyFinding{Tier: f.GetTier(), Key: f.GetKey(), Generation: f.GetGeneration(), Problem: f.GetProblem(),
				Detail: f.GetDetail(), Repaired: f.GetRepaired(), Repair: f.GetRepair()})
		case *filestoragev1.VerifyResponse_Summary:
			summary = p.Summary
		}
	}
	if summary == nil {
		return VerifySummary{}, findings, clientError(codes.Internal, "Verify ended without its summary")
	}
	return VerifySummary{
		CheckedCopies: summary.GetCheckedCopies(),
		CheckedBytes:  summary.GetCheckedBytes(),
		Corrupt:       summary.GetCorrupt(),
		Orphans:       summary.GetOrphans(),
		Unchecked:     summary.GetUnchecked(),
		Repaired:      summary.GetRepaired(),
		Duration:      time.Duration(summary.GetSeconds() * float64(time.Second)),
	}, findings, nil
}
