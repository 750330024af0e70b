// Package filestorage is a thin Go client of the FileStorage daemon
// (filestorage.v1.FileStorageService): values stored by kind (TEXT, BYTES,
// JSON) and read back as exactly that kind, streaming uploads and downloads
// over io.Reader and io.Writer at constant memory, and an iterator over every
// key under a prefix.
//
//	c, err := filestorage.Dial("127.0.0.1:50051", filestorage.WithToken(token))
//	if err != nil { ... }
//	defer c.Close()
//	info, err := c.Store(ctx, "notes/1", "héllo", filestorage.WithMetadata(map[string]any{"tags": []any{"a"}}))
//	obj, err := c.Retrieve(ctx, "notes/1") // errors.Is(err, filestorage.ErrNotFound) for a missing key
//	text := obj.Text()
//
// Every error a call returns carries a gRPC status: status.Code(err) is the
// daemon's code (INVALID_ARGUMENT, FAILED_PRECONDITION, ...), or the code the
// client chose for a failure it found itself (DATA_LOSS for a download whose
// bytes do not match their CRC32C). The generated stubs are in the gen
// package below this one, for calls this client does not wrap.
package filestorage
