package filestorage

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrNotFound matches (errors.Is) the error of Retrieve, Stat and Download
// for a key that holds no object, and of QueryUpload for an unknown upload
// id. That error keeps its gRPC status too: status.Code(err) == codes.NotFound.
var ErrNotFound = errors.New("filestorage: no object under that key")

// notFound wraps a NOT_FOUND status error so that it also matches ErrNotFound.
type notFound struct{ err error }

func (e *notFound) Error() string        { return e.err.Error() }
func (e *notFound) Unwrap() error        { return e.err }
func (e *notFound) Is(target error) bool { return target == ErrNotFound }

// rpcError is the one place an error from the daemon is shaped for callers:
// the status error itself, matching ErrNotFound when its code is NOT_FOUND.
func rpcError(err error) error {
	if err == nil {
		return nil
	}
	if status.Code(err) == codes.NotFound {
		return &notFound{err: err}
	}
	return err
}

// clientError is a failure the client finds itself, with the status code a
// daemon would have used for it.
func clientError(code codes.Code, format string, args ...any) error {
	return status.Errorf(code, "filestorage: "+format, args...)
}
