package filestorage

import "context"

// bearerToken sends "authorization: Bearer <token>" with every call. With
// TLS configured it requires transport security, so gRPC never sends it in
// the clear; without TLS (loopback) it is sent as is.
type bearerToken struct {
	token  string
	secure bool
}

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearerToken) RequireTransportSecurity() bool { return b.secure }
