// Package scenario is the conformance scenario every FileStorage client runs
// (notes: client-scenario.md, issue 11), written against the Go client: ten
// steps over every RPC, all three kinds, metadata, a streamed upload with a
// ranged download, and one error per status a client can provoke.
package scenario

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"

	filestorage "github.com/filestorage/filestorage/clients/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Run runs the steps in order under key prefix, writing one line per step
// that held to progress, and stops at the first that did not: its error
// names the step and what differed. Keys under prefix should not exist
// before; the scenario deletes what it stored.
func Run(ctx context.Context, c *filestorage.Client, prefix string, progress io.Writer) error {
	s := &state{c: c, p: prefix}
	for i, step := range steps {
		if err := step.run(ctx, s); err != nil {
			return fmt.Errorf("step %d (%s): %w", i+1, step.name, err)
		}
		fmt.Fprintf(progress, "scenario: step %d (%s) held\n", i+1, step.name)
	}
	return nil
}

type state struct {
	c *filestorage.Client
	p string
}

type step struct {
	name string
	run  func(context.Context, *state) error
}

var steps = []step{
	{"text with metadata", textWithMetadata},
	{"bytes and empty bytes", bytesAndEmpty},
	{"json and a json-looking string", jsonAndJSONLooking},
	{"exists and a missing key", existsAndMissing},
	{"list keys and pages", listKeysAndPages},
	{"streamed upload and ranged download", streamedUploadAndRange},
	{"generation precondition", generationPrecondition},
	{"one error per status", oneErrorPerStatus},
	{"delete and delete many", deleteAndDeleteMany},
	{"stats", stats},
}

const text = "héllo wörld"

var textMetadata = map[string]any{"tags": []any{"a", "b"}, "n": 3, "nested": map[string]any{"x": true}}

const textContentType = "text/plain; charset=utf-8"

func textWithMetadata(ctx context.Context, s *state) error {
	if _, err := s.c.Store(ctx, s.p+"text", text, filestorage.WithMetadata(textMetadata), filestorage.WithContentType(textContentType)); err != nil {
		return err
	}
	obj, err := s.c.Retrieve(ctx, s.p+"text")
	if err != nil {
		return err
	}
	if obj.Kind() != filestorage.KindText || obj.Text() != text {
		return fmt.Errorf("retrieve returned %s %q, want TEXT %q", obj.Kind(), obj.Data, text)
	}
	info, err := s.c.Stat(ctx, s.p+"text")
	if err != nil {
		return err
	}
	// Struct numbers come back as float64; a list stays a list.
	wantMetadata := map[string]any{"tags": []any{"a", "b"}, "n": float64(3), "nested": map[string]any{"x": true}}
	got := []any{info.Kind, info.Size, info.Metadata, info.ContentType, info.Generation > 0, info.CRC32C}
	want := []any{filestorage.KindText, int64(13), wantMetadata, textContentType, true, filestorage.CRC32C([]byte(text))}
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("stat gave [kind size metadata content_type generation>0 crc32c] = %v, want %v", got, want)
	}
	return nil
}

var pngSignature = []byte{0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A}

func bytesAndEmpty(ctx context.Context, s *state) error {
	if _, err := s.c.Store(ctx, s.p+"bytes", pngSignature); err != nil {
		return err
	}
	obj, err := s.c.Retrieve(ctx, s.p+"bytes")
	if err != nil {
		return err
	}
	if obj.Kind() != filestorage.KindBytes || !bytes.Equal(obj.Bytes(), pngSignature) {
		return fmt.Errorf("retrieve returned %s % x, want BYTES % x", obj.Kind(), obj.Data, pngSignature)
	}
	if _, err := s.c.Store(ctx, s.p+"empty", []byte{}); err != nil {
		return err
	}
	empty, err := s.c.Retrieve(ctx, s.p+"empty")
	if err != nil {
		return fmt.Errorf("retrieve of the empty object: %w", err)
	}
	if empty.Kind() != filestorage.KindBytes || empty.Bytes() == nil || len(empty.Bytes()) != 0 || empty.Info.Size != 0 {
		return fmt.Errorf("the empty object came back as %s %v (size %d), want BYTES []byte{}", empty.Kind(), empty.Bytes(), empty.Info.Size)
	}
	return nil
}

const jsonLooking = `{"not": "json"}`

func jsonAndJSONLooking(ctx context.Context, s *state) error {
	doc := map[string]any{"score": 0.93, "items": []any{1, "two", nil}, "ok": false}
	if _, err := s.c.StoreJSON(ctx, s.p+"json", doc); err != nil {
		return err
	}
	obj, err := s.c.Retrieve(ctx, s.p+"json")
	if err != nil {
		return err
	}
	var got any
	if err := obj.JSON(&got); err != nil {
		return err
	}
	want := map[string]any{"score": 0.93, "items": []any{float64(1), "two", nil}, "ok": false}
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("retrieve returned %#v, want %#v", got, want)
	}
	if _, err := s.c.Store(ctx, s.p+"json-looking", jsonLooking); err != nil {
		return err
	}
	looking, err := s.c.Retrieve(ctx, s.p+"json-looking")
	if err != nil {
		return err
	}
	if looking.Kind() != filestorage.KindText || looking.Text() != jsonLooking {
		return fmt.Errorf("the JSON-looking string came back as %s %q, want TEXT %q", looking.Kind(), looking.Data, jsonLooking)
	}
	if err := looking.JSON(&got); status.Code(err) != codes.InvalidArgument {
		return fmt.Errorf("decoding the JSON-looking string as JSON gave %v, want INVALID_ARGUMENT (it is TEXT)", err)
	}
	return nil
}

func existsAndMissing(ctx context.Context, s *state) error {
	for key, want := range map[string]bool{s.p + "text": true, s.p + "missing": false} {
		got, err := s.c.Exists(ctx, key)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("exists %q = %v, want %v", key, got, want)
		}
	}
	obj, err := s.c.Retrieve(ctx, s.p+"missing")
	if !errors.Is(err, filestorage.ErrNotFound) || obj != nil {
		return fmt.Errorf("retrieve of a missing key gave (%v, %v), want (nil, ErrNotFound)", obj, err)
	}
	return nil
}

func listKeysAndPages(ctx context.Context, s *state) error {
	want := []string{s.p + "bytes", s.p + "empty", s.p + "json", s.p + "json-looking", s.p + "text"}
	all, err := collectKeys(ctx, s)
	if err != nil {
		return err
	}
	if !slices.Equal(all, want) {
		return fmt.Errorf("keys under the prefix: %q, want %q", all, want)
	}
	first, err := s.c.ListKeys(ctx, filestorage.ListOptions{Prefix: s.p, Limit: 2})
	if err != nil {
		return err
	}
	if len(first.Keys) != 2 || first.NextPageToken == "" {
		return fmt.Errorf("the first page of 2 gave keys %q and next page token %q, want 2 keys and a token", first.Keys, first.NextPageToken)
	}
	var paged []string
	pages := 0
	for page, err := range s.c.Pages(ctx, filestorage.ListOptions{Prefix: s.p, Limit: 2}) {
		if err != nil {
			return err
		}
		pages++
		paged = append(paged, page.Keys...)
	}
	if !slices.Equal(paged, want) || pages != 3 {
		return fmt.Errorf("pages of 2 gave %q in %d pages, want %q in 3", paged, pages, want)
	}
	return nil
}

func collectKeys(ctx context.Context, s *state) ([]string, error) {
	keys := []string{}
	for key, err := range s.c.Keys(ctx, s.p) {
		if err != nil {
			return nil, err
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// StreamData is the streamed step's object: 3 MiB + 17 bytes, byte i being
// (i*31 + 7) mod 251.
func StreamData() []byte {
	data := make([]byte, 3<<20+17)
	for i := range data {
		data[i] = byte((i*31 + 7) % 251)
	}
	return data
}

func streamedUploadAndRange(ctx context.Context, s *state) error {
	data := StreamData()
	info, err := s.c.Upload(ctx, s.p+"stream", bytes.NewReader(data), filestorage.WithChunkSize(64<<10))
	if err != nil {
		return err
	}
	if info.Size != int64(len(data)) || info.CRC32C != filestorage.CRC32C(data) || info.Kind != filestorage.KindBytes {
		return fmt.Errorf("upload stored %s size %d crc32c %08x, want BYTES size %d crc32c %08x", info.Kind, info.Size, info.CRC32C, len(data), filestorage.CRC32C(data))
	}
	var ranged bytes.Buffer
	if _, err := s.c.Download(ctx, s.p+"stream", &ranged, 1<<20, 4096); err != nil {
		return err
	}
	if !bytes.Equal(ranged.Bytes(), data[1<<20:1<<20+4096]) {
		return fmt.Errorf("the range 1048576+4096 came back as %d bytes that differ", ranged.Len())
	}
	whole := sha256.New()
	if _, err := s.c.Download(ctx, s.p+"stream", whole, 0, 0); err != nil {
		return err
	}
	if got, want := whole.Sum(nil), sha256.Sum256(data); !bytes.Equal(got, want[:]) {
		return fmt.Errorf("the whole download has sha256 %x, want %x", got, want)
	}
	return nil
}

func generationPrecondition(ctx context.Context, s *state) error {
	info, err := s.c.Stat(ctx, s.p+"text")
	if err != nil {
		return err
	}
	again := []filestorage.Option{filestorage.WithMetadata(textMetadata), filestorage.WithContentType(textContentType)}
	_, err = s.c.Store(ctx, s.p+"text", text, append(again, filestorage.IfGenerationMatch(info.Generation+12345))...)
	if status.Code(err) != codes.FailedPrecondition {
		return fmt.Errorf("a store with a wrong generation gave %v, want FAILED_PRECONDITION", err)
	}
	stored, err := s.c.Store(ctx, s.p+"text", text, append(again, filestorage.IfGenerationMatch(info.Generation))...)
	if err != nil {
		return fmt.Errorf("a store with the current generation: %w", err)
	}
	if stored.Generation <= info.Generation {
		return fmt.Errorf("the generation went from %d to %d, want it to rise", info.Generation, stored.Generation)
	}
	return nil
}

func oneErrorPerStatus(ctx context.Context, s *state) error {
	expect := func(what string, want codes.Code, err error) error {
		if status.Code(err) != want {
			return fmt.Errorf("%s gave %v, want %s", what, err, want)
		}
		return nil
	}
	_, dotDot := s.c.Store(ctx, "../x", "x")
	_, newline := s.c.Store(ctx, s.p+"bad\nkey", "x")
	_, missing := s.c.Stat(ctx, s.p+"missing")
	_, pastEnd := s.c.Download(ctx, s.p+"bytes", io.Discard, 100, 0)
	_, notUTF8 := s.c.Store(ctx, s.p+"bad-text", []byte{0xFF, 0xFE}, filestorage.WithKind(filestorage.KindText))
	// FAILED_PRECONDITION was step 7's.
	for _, err := range []error{
		expect(`a store of key "../x"`, codes.InvalidArgument, dotDot),
		expect("a store of a key with a line feed", codes.InvalidArgument, newline),
		expect("stat of a missing key", codes.NotFound, missing),
		expect("a download past the end of the 8 bytes", codes.OutOfRange, pastEnd),
		expect("a TEXT store of the bytes FF FE", codes.InvalidArgument, notUTF8),
	} {
		if err != nil {
			return err
		}
	}
	if !errors.Is(missing, filestorage.ErrNotFound) {
		return fmt.Errorf("stat of a missing key gave %v, which does not match ErrNotFound", missing)
	}
	return nil
}

func deleteAndDeleteMany(ctx context.Context, s *state) error {
	for i, want := range []bool{true, false} {
		deleted, err := s.c.Delete(ctx, s.p+"bytes")
		if err != nil {
			return err
		}
		if deleted != want {
			return fmt.Errorf("delete #%d of the bytes key = %v, want %v", i+1, deleted, want)
		}
	}
	// What is left: text, empty, json, json-looking and stream.
	const left = 5
	count, err := s.c.DeleteMany(ctx, s.p)
	if err != nil {
		return err
	}
	if count != left {
		return fmt.Errorf("delete many by prefix deleted %d, want %d", count, left)
	}
	keys, err := collectKeys(ctx, s)
	if err != nil {
		return err
	}
	if len(keys) != 0 {
		return fmt.Errorf("after delete many the prefix still lists %q", keys)
	}
	return nil
}

func stats(ctx context.Context, s *state) error {
	st, err := s.c.GetStats(ctx)
	if err != nil {
		return err
	}
	if !st.GetInitialized() || st.GetTotalOperations() <= 0 {
		return fmt.Errorf("stats say initialized %v, total operations %d; want true and > 0", st.GetInitialized(), st.GetTotalOperations())
	}
	return nil
}
