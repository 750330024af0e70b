package filestorage

import "context"

// bearerToken sends "authorization: Bearer <token>" with every call; over
// TLS gRPC refuses to send it on a connection without transport security.
type bearerToken struct {
	token  string
	secure bool
}

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearerToken) RequireTransportSecurity() bool { return b.secure }
