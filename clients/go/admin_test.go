package filestorage_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	filestorage "github.com/filestorage/filestorage/clients/go"
	filestoragev1 "github.com/filestorage/filestorage/clients/go/gen/filestorage/v1"
	"google.golang.org/grpc/codes"
)

func TestUsageCountsTheObjectsUnderAPrefix(t *testing.T) {
	c, ctx, p := dial(t), testContext(t), prefix(t)
	if u := must(c.Usage(ctx, p))(t); u.ObjectCount != 0 || u.TotalBytes != 0 || u.StoredBytes != 0 {
		t.Fatalf("usage of an empty prefix: %+v", u)
	}
	var want int64
	for i, v := range []string{"a", strings.Repeat("b", 1000), "zwölf"} {
		want += must(c.Store(ctx, fmt.Sprintf("%s%d", p, i), v))(t).Size
	}
	must(c.Store(ctx, strings.TrimSuffix(p, "/")+"-beside/x", "not under the prefix"))(t)
	u := must(c.Usage(ctx, p))(t)
	if u.ObjectCount != 3 || u.TotalBytes != want || u.StoredBytes <= 0 {
		t.Fatalf("usage: %+v, want 3 objects of %d bytes", u, want)
	}
	must(c.Delete(ctx, p+"0"))(t)
	if u := must(c.Usage(ctx, p))(t); u.ObjectCount != 2 || u.TotalBytes != want-1 {
		t.Fatalf("usage after a delete: %+v", u)
	}
}

func TestQueryUploadOfAnUnknownIDIsNotFound(t *testing.T) {
	c, ctx := dial(t), testContext(t)
	st, err := c.QueryUpload(ctx, fmt.Sprintf("never-begun-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if st != nil || !errors.Is(err, filestorage.ErrNotFound) {
		t.Fatalf("QueryUpload of an unknown id: %+v, %v; want nil and ErrNotFound", st, err)
	}
	wantCode(t, "QueryUpload of an unknown id", err, codes.NotFound)
	_, err = c.QueryUpload(ctx, "not/an id")
	wantCode(t, "QueryUpload of a bad id", err, codes.InvalidArgument)
}

func TestQueryUploadReportsAFinishedResumableUpload(t *testing.T) {
	c, ctx, p := dial(t), testContext(t), prefix(t)
	id := fmt.Sprintf("go-%d-%d", os.Getpid(), time.Now().UnixNano())
	data := []byte(strings.Repeat("resumable ", 500))
	stream := must(c.Stub().StoreStream(ctx))(t)
	size, sum := int64(len(data)), filestorage.CRC32C(data)
	for _, req := range []*filestoragev1.StoreStreamRequest{
		{Payload: &filestoragev1.StoreStreamRequest_Header{Header: &filestoragev1.StoreStreamHeader{Key: p + "r", Kind: filestorage.KindBytes, UploadId: id}}},
		{Payload: &filestoragev1.StoreStreamRequest_Chunk{Chunk: data}},
		{Payload: &filestoragev1.StoreStreamRequest_Trailer{Trailer: &filestoragev1.StoreStreamTrailer{Crc32C: &sum, Size: &size}}},
	} {
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	must(stream.CloseAndRecv())(t)
	st := must(c.QueryUpload(ctx, id))(t)
	if !st.Complete || st.CommittedSize != size || st.Object == nil || st.Object.Key != p+"r" || st.Object.Size != size {
		t.Fatalf("status of a finished upload: %+v", st)
	}
}

func TestFlushWithoutGCSIsFailedPrecondition(t *testing.T) {
	c, ctx := dial(t), testContext(t)
	_, err := c.Flush(ctx, 5*time.Second)
	wantCode(t, "Flush on a daemon without GCS", err, codes.FailedPrecondition)
	_, err = c.Flush(ctx, -time.Second)
	wantCode(t, "Flush with a negative timeout", err, codes.InvalidArgument)
}

func TestVerifyOfACleanPrefixFindsNothing(t *testing.T) {
	c, ctx, p := dial(t), testContext(t), prefix(t)
	for i := range 4 {
		must(c.Store(ctx, fmt.Sprintf("%s%d", p, i), strings.Repeat(fmt.Sprint(i), 300)))(t)
	}
	summary, findings, err := c.Verify(ctx, filestorage.VerifyOptions{Prefix: p})
	if err != nil {
		t.Fatal(err)
	}
	if len(findings) != 0 || summary.Corrupt != 0 || summary.Orphans != 0 || summary.CheckedCopies < 4 || summary.CheckedBytes <= 0 {
		t.Fatalf("verify of a clean prefix: %+v, findings %+v", summary, findings)
	}
}
