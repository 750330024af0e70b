package filestorage_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	filestorage "github.com/filestorage/filestorage/clients/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// dial connects to the shared test daemon; the client closes with the test.
func dial(t *testing.T, opts ...filestorage.DialOption) *filestorage.Client {
	t.Helper()
	return dialAt(t, testAddress, opts...)
}

func dialAt(t *testing.T, addr string, opts ...filestorage.DialOption) *filestorage.Client {
	t.Helper()
	c, err := filestorage.Dial(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// prefix is a key prefix of this test alone on the shared daemon.
func prefix(t *testing.T) string {
	return fmt.Sprintf("go-test/%d/%s/", os.Getpid(), t.Name())
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// must(call())(t) is call's value, failing t on its error.
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("%s: got %v (code %s), want %s", what, err, got, want)
	}
}

func TestStoreInfersTheKindAndRetrieveReturnsIt(t *testing.T) {
	c, ctx, p := dial(t), testContext(t), prefix(t)
	cases := []struct {
		key   string
		store func() (*filestorage.Info, error)
		kind  filestorage.Kind
		data  []byte
	}{
		{"string", func() (*filestorage.Info, error) { return c.Store(ctx, p+"string", "zwölf") }, filestorage.KindText, []byte("zwölf")},
		{"bytes", func() (*filestorage.Info, error) { return c.Store(ctx, p+"bytes", []byte{0, 1, 0xFF}) }, filestorage.KindBytes, []byte{0, 1, 0xFF}},
		{"raw-json", func() (*filestorage.Info, error) { return c.Store(ctx, p+"raw-json", json.RawMessage(`[1,2]`)) }, filestorage.KindJSON, []byte(`[1,2]`)},
		{"json", func() (*filestorage.Info, error) { return c.StoreJSON(ctx, p+"json", map[string]int{"a": 1}) }, filestorage.KindJSON, []byte(`{"a":1}`)},
		{"text-bytes", func() (*filestorage.Info, error) {
			return c.Store(ctx, p+"text-bytes", []byte("as text"), filestorage.WithKind(filestorage.KindText))
		}, filestorage.KindText, []byte("as text")},
	}
	for _, tc := range cases {
		info := must(tc.store())(t)
		if info.Kind != tc.kind || info.Size != int64(len(tc.data)) || info.CRC32C != filestorage.CRC32C(tc.data) || info.Generation <= 0 {
			t.Errorf("%s: stored %s size %d crc %08x gen %d", tc.key, info.Kind, info.Size, info.CRC32C, info.Generation)
		}
		obj := must(c.Retrieve(ctx, p+tc.key))(t)
		if obj.Kind() != tc.kind || !bytes.Equal(obj.Bytes(), tc.data) || obj.Info.Key != p+tc.key {
			t.Errorf("%s: retrieved %s %q under %q, want %s %q", tc.key, obj.Kind(), obj.Data, obj.Info.Key, tc.kind, tc.data)
		}
	}
	var v map[string]int
	if err := must(c.Retrieve(ctx, p+"json"))(t).JSON(&v); err != nil || v["a"] != 1 {
		t.Errorf("JSON() = %v, %v", v, err)
	}
}

func TestStoreRefusesOtherTypesAndBadMetadataBeforeSending(t *testing.T) {
	c, ctx, p := dial(t), testContext(t), prefix(t)
	_, err := c.Store(ctx, p+"map", map[string]any{"a": 1})
	wantCode(t, "Store of a map", err, codes.InvalidArgument)
	if !strings.Contains(err.Error(), "StoreJSON") {
		t.Errorf("the message should point to StoreJSON: %v", err)
	}
	_, err = c.Store(ctx, p+"meta", "x", filestorage.WithMetadata(map[string]any{"f": func() {}}))
	wantCode(t, "Store with a func in the metadata", err, codes.InvalidArgument)
	_, err = c.StoreJSON(ctx, p+"chan", make(chan int))
	wantCode(t, "StoreJSON of a channel", err, codes.InvalidArgument)
	if ok := must(c.Exists(ctx, p+"map"))(t); ok {
		t.Error("a refused Store left an object")
	}
}

func TestMetadataContentTypeAndExpiryRoundTrip(t *testing.T) {
	c, ctx, p := dial(t), testContext(t), prefix(t)
	expires := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	must(c.Store(ctx, p+"k", "v",
		filestorage.WithMetadata(map[string]any{"tags": []any{"x", "y"}, "epoch": 3, "deep": map[string]any{"ok": true, "none": nil}}),
		filestorage.WithContentType("text/markdown"),
		filestorage.WithExpiresAt(expires)))(t)
	info := must(c.Stat(ctx, p+"k"))(t)
	want := map[string]any{"tags": []any{"x", "y"}, "epoch": float64(3), "deep": map[string]any{"ok": true, "none": nil}}
	if !reflect.DeepEqual(info.Metadata, want) || info.ContentType != "text/markdown" {
		t.Errorf("stat gave metadata %#v content type %q", info.Metadata, info.ContentType)
	}
	if !info.ExpiresAt.Equal(expires) || info.CreatedAt.IsZero() || info.Backend != filestorage.BackendLocal {
		t.Errorf("stat gave expires %v (want %v), created %v, backend %s", info.ExpiresAt, expires, info.CreatedAt, info.Backend)
	}
}

func TestMissingKeysMatchErrNotFoundAndKeepTheirStatus(t *testing.T) {
	c, ctx, p := dial(t), testContext(t), prefix(t)
	_, retrieveErr := c.Retrieve(ctx, p+"none")
	_, statErr := c.Stat(ctx, p+"none")
	_, downloadErr := c.Download(ctx, p+"none", io.Discard, 0, 0)
	for what, err := range map[string]error{"Retrieve": retrieveErr, "Stat": statErr, "Download": downloadErr} {
		if !errors.Is(err, filestorage.ErrNotFound) {
			t.Errorf("%s of a missing key: %v does not match ErrNotFound", what, err)
		}
		wantCode(t, what, err, codes.NotFound)
	}
	if deleted := must(c.Delete(ctx, p+"none"))(t); deleted {
		t.Error("Delete of a missing key said it deleted one")
	}
	_, err := c.Store(ctx, "/leading-slash", "x")
	wantCode(t, "a key with a leading slash", err, codes.InvalidArgument)
	if errors.Is(err, filestorage.ErrNotFound) {
		t.Error("an INVALID_ARGUMENT error matched ErrNotFound")
	}
}

func TestPreconditionsOnStoreDeleteAndDownload(t *testing.T) {
	c, ctx, p := dial(t), testContext(t), prefix(t)
	first := must(c.Store(ctx, p+"k", "one", filestorage.IfGenerationMatch(0)))(t)
	_, err := c.Store(ctx, p+"k", "two", filestorage.IfGenerationMatch(0))
	wantCode(t, "a create-only Store of an existing key", err, codes.FailedPrecondition)
	_, err = c.Download(ctx, p+"k", io.Discard, 0, 0, filestorage.IfGenerationMatch(first.Generation+1))
	wantCode(t, "a Download of another generation", err, codes.FailedPrecondition)
	_, err = c.Delete(ctx, p+"k", filestorage.IfGenerationMatch(first.Generation+1))
	wantCode(t, "a Delete of another generation", err, codes.FailedPrecondition)
	if deleted := must(c.Delete(ctx, p+"k", filestorage.IfGenerationMatch(first.Generation)))(t); !deleted {
		t.Error("a Delete with the current generation deleted nothing")
	}
}

func TestUploadAndDownloadStreamWithChecks(t *testing.T) {
	c, ctx, p := dial(t), testContext(t), prefix(t)
	data := make([]byte, 5<<20+3)
	for i := range data {
		data[i] = byte(i * 7 % 253)
	}
	info := must(c.Upload(ctx, p+"big", bytes.NewReader(data),
		filestorage.WithSize(int64(len(data))), filestorage.WithKind(filestorage.KindBytes),
		filestorage.WithMetadata(map[string]any{"model": "m1"}), filestorage.WithContentType("application/octet-stream")))(t)
	if info.Size != int64(len(data)) || info.CRC32C != filestorage.CRC32C(data) || info.Metadata["model"] != "m1" {
		t.Fatalf("upload stored size %d crc %08x metadata %v", info.Size, info.CRC32C, info.Metadata)
	}
	var whole bytes.Buffer
	got := must(c.Download(ctx, p+"big", &whole, 0, 0))(t)
	if !bytes.Equal(whole.Bytes(), data) || got.Generation != info.Generation {
		t.Fatalf("whole download: %d bytes, equal %v", whole.Len(), bytes.Equal(whole.Bytes(), data))
	}
	var tail bytes.Buffer
	must(c.Download(ctx, p+"big", &tail, int64(len(data))-10, 0))(t)
	if !bytes.Equal(tail.Bytes(), data[len(data)-10:]) {
		t.Errorf("the last 10 bytes came back as % x", tail.Bytes())
	}
	var empty bytes.Buffer
	must(c.Download(ctx, p+"big", &empty, int64(len(data)), 0))(t)
	if empty.Len() != 0 {
		t.Errorf("a download at the very end gave %d bytes", empty.Len())
	}
	// Over the unary limit, Retrieve goes through the stream.
	obj := must(c.Retrieve(ctx, p+"big"))(t)
	if !bytes.Equal(obj.Data, data) {
		t.Error("Retrieve of a 5 MiB object returned other bytes")
	}
}

func TestUploadOfAFailingReaderStoresNothing(t *testing.T) {
	c, ctx, p := dial(t), testContext(t), prefix(t)
	boom := errors.New("disk on fire")
	r := io.MultiReader(bytes.NewReader(make([]byte, 3<<20)), failingReader{boom})
	_, err := c.Upload(ctx, p+"half", r)
	if !errors.Is(err, boom) {
		t.Fatalf("Upload returned %v, want the reader's error", err)
	}
	// The daemon sees the cancellation after the client returns.
	deadline := time.Now().Add(5 * time.Second)
	for must(c.Exists(ctx, p+"half"))(t) {
		if time.Now().After(deadline) {
			t.Fatal("half an upload was stored")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

func TestDownloadIntoAFailingWriterReturnsItsError(t *testing.T) {
	c, ctx, p := dial(t), testContext(t), prefix(t)
	must(c.Upload(ctx, p+"k", bytes.NewReader(make([]byte, 2<<20))))(t)
	boom := errors.New("no space")
	_, err := c.Download(ctx, p+"k", failingWriter{boom}, 0, 0)
	if !errors.Is(err, boom) {
		t.Fatalf("Download returned %v, want the writer's error", err)
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

func TestUnaryLimitRoutesThroughTheStreams(t *testing.T) {
	d := startTestDaemon(t, map[string]string{"MAX_UNARY_BYTES": "1KiB"})
	ctx, p := testContext(t), prefix(t)
	value := strings.Repeat("ü", 3000) // 6000 bytes of TEXT

	tooBig := dialAt(t, d.address)
	_, err := tooBig.Store(ctx, p+"text", value)
	if status.Code(err) == codes.OK {
		t.Fatal("the daemon took a unary Store over its 1 KiB limit: this test proves nothing")
	}

	c := dialAt(t, d.address, filestorage.WithMaxUnaryBytes(1024))
	info := must(c.Store(ctx, p+"text", value, filestorage.WithMetadata(map[string]any{"n": 1})))(t)
	if info.Kind != filestorage.KindText || info.Size != 6000 || info.Metadata["n"] != float64(1) {
		t.Fatalf("stored through the stream as %s size %d metadata %v", info.Kind, info.Size, info.Metadata)
	}
	obj := must(c.Retrieve(ctx, p+"text"))(t)
	if obj.Kind() != filestorage.KindText || obj.Text() != value {
		t.Errorf("retrieved %s of %d bytes", obj.Kind(), len(obj.Data))
	}
}

func TestKeysIteratesEveryPageInByteOrder(t *testing.T) {
	c, ctx, p := dial(t), testContext(t), prefix(t)
	var want []string
	for i := range 23 {
		key := fmt.Sprintf("%sk%02d", p, i)
		want = append(want, key)
		must(c.Store(ctx, key, []byte{byte(i)}))(t)
	}
	must(c.Store(ctx, p+"dir/a", "a"))(t)
	all := []string{}
	for key, err := range c.Keys(ctx, p+"k") {
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, key)
	}
	if !slices.Equal(all, want) {
		t.Fatalf("Keys gave %q", all)
	}
	pages := 0
	for page, err := range c.Pages(ctx, filestorage.ListOptions{Prefix: p, Limit: 5, Delimiter: "/", IncludeInfo: true}) {
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(page.Objects) != len(page.Keys) || (len(page.Objects) > 0 && page.Objects[0].Key != page.Keys[0]) {
			t.Errorf("page %d: %d keys but %d infos", pages, len(page.Keys), len(page.Objects))
		}
		if slices.Contains(page.Prefixes, p+"dir/") && slices.Contains(page.Keys, p+"dir/a") {
			t.Error("the delimiter did not roll dir/ up")
		}
	}
	if pages != 5 {
		t.Errorf("23 keys and 1 prefix in pages of 5 took %d pages, want 5", pages)
	}
	// Breaking out of the loop stops the iteration.
	n := 0
	for range c.Keys(ctx, p+"k") {
		n++
		if n == 3 {
			break
		}
	}
	if count := must(c.DeleteMany(ctx, p))(t); count != 24 {
		t.Errorf("DeleteMany by prefix deleted %d, want 24", count)
	}
	for _, err := range c.Keys(ctx, "../bad") {
		wantCode(t, "Keys of a bad prefix", err, codes.InvalidArgument)
	}
}

func TestDeleteManyByKeys(t *testing.T) {
	c, ctx, p := dial(t), testContext(t), prefix(t)
	must(c.Store(ctx, p+"a", "a"))(t)
	must(c.Store(ctx, p+"b", "b"))(t)
	if n := must(c.DeleteMany(ctx, "", p+"a", p+"b", p+"never"))(t); n != 2 {
		t.Errorf("DeleteMany of 2 keys and a missing one deleted %d", n)
	}
}

func TestGetStatsCountsTheCalls(t *testing.T) {
	c, ctx := dial(t), testContext(t)
	before := must(c.GetStats(ctx))(t)
	must(c.Exists(ctx, prefix(t)+"x"))(t)
	after := must(c.GetStats(ctx))(t)
	if !after.GetInitialized() || after.GetTotalOperations() <= before.GetTotalOperations() || after.GetVersion() == "" {
		t.Errorf("stats: initialized %v, operations %d then %d, version %q",
			after.GetInitialized(), before.GetTotalOperations(), after.GetTotalOperations(), after.GetVersion())
	}
}

func TestDefaultDeadlineBoundsUnaryCalls(t *testing.T) {
	c := dial(t, filestorage.WithDeadline(time.Nanosecond), filestorage.WithRetries(0))
	_, err := c.Exists(context.Background(), prefix(t)+"x")
	wantCode(t, "a call with a 1 ns default deadline", err, codes.DeadlineExceeded)
	// A context's own deadline wins over the default.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Exists(ctx, prefix(t)+"x"); err != nil {
		t.Errorf("a call with its own deadline failed: %v", err)
	}
}

func TestUnavailableArrivesPromptlyAfterTheRetries(t *testing.T) {
	// Nothing listens here: UNAVAILABLE, after the retries, promptly.
	c := dial(t, filestorage.WithRetries(2), filestorage.WithDeadline(20*time.Second))
	c2 := dialAt(t, "127.0.0.1:1", filestorage.WithRetries(2), filestorage.WithDeadline(20*time.Second))
	start := time.Now()
	_, err := c2.Stat(context.Background(), "k")
	wantCode(t, "Stat of a port where nothing listens", err, codes.Unavailable)
	if time.Since(start) > 15*time.Second {
		t.Errorf("UNAVAILABLE took %v", time.Since(start))
	}
	must(c.Exists(context.Background(), "k"))(t)
}

func TestDialRefusesBadOptions(t *testing.T) {
	for what, opt := range map[string]filestorage.DialOption{
		"a token with a space":    filestorage.WithToken("a b"),
		"an empty token":          filestorage.WithToken(""),
		"a zero deadline":         filestorage.WithDeadline(0),
		"5 retries":               filestorage.WithRetries(5),
		"a zero unary limit":      filestorage.WithMaxUnaryBytes(0),
		"a missing CA file":       filestorage.WithTLSFiles("/nonexistent/ca.pem", "", ""),
		"a certificate alone":     filestorage.WithTLSFiles("", "cert.pem", ""),
		"a CA file without a PEM": filestorage.WithTLSFiles("client_test.go", "", ""),
	} {
		if _, err := filestorage.Dial("127.0.0.1:1", opt); err == nil {
			t.Errorf("Dial took %s", what)
		}
	}
	if _, err := filestorage.Dial(""); err == nil {
		t.Error("Dial took an empty address")
	}
}
