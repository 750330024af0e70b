package filestorage

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
)

// DialOption configures a Client; Dial reports the first invalid one.
type DialOption func(*dialConfig)

type dialConfig struct {
	tls           *tls.Config
	token         string
	deadline      time.Duration
	retries       int
	maxUnaryBytes int
	grpcOptions   []grpc.DialOption
	err           error
}

const (
	defaultDeadline      = 30 * time.Second
	defaultRetries       = 3
	defaultMaxUnaryBytes = 4 << 20
	// gRPC's retry policy allows at most 5 attempts.
	maxRetries = 4
)

func defaultDialConfig() dialConfig {
	return dialConfig{deadline: defaultDeadline, retries: defaultRetries, maxUnaryBytes: defaultMaxUnaryBytes}
}

func (c *dialConfig) fail(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("filestorage: "+format, args...)
	}
}

// WithTLS connects over TLS with cfg (nil: the system's roots, no client
// certificate). Without a TLS option the connection is plaintext.
func WithTLS(cfg *tls.Config) DialOption {
	return func(c *dialConfig) {
		if cfg == nil {
			cfg = &tls.Config{}
		}
		c.tls = cfg.Clone()
	}
}

// WithTLSFiles connects over TLS trusting the PEM CA certificates in caFile
// (empty: the system's roots) and, for mutual TLS, presenting the PEM
// certificate and key in certFile and keyFile (both or neither).
func WithTLSFiles(caFile, certFile, keyFile string) DialOption {
	return func(c *dialConfig) {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				c.fail("WithTLSFiles: reading the CA file: %v", err)
				return
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				c.fail("WithTLSFiles: the CA file %s holds no PEM certificate", caFile)
				return
			}
		}
		if (certFile == "") != (keyFile == "") {
			c.fail("WithTLSFiles: give both a certificate file and a key file for mutual TLS, or neither")
			return
		}
		if certFile != "" {
			pair, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				c.fail("WithTLSFiles: loading the client certificate: %v", err)
				return
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		c.tls = cfg
	}
}

// WithToken sends "authorization: Bearer <token>" on every call. Over a
// plaintext connection the token is readable on the wire: use it there only
// on loopback.
func WithToken(token string) DialOption {
	return func(c *dialConfig) {
		if token == "" || strings.ContainsAny(token, " \t\r\n") {
			c.fail("WithToken: a token is one or more characters without spaces or line breaks")
			return
		}
		c.token = token
	}
}

// WithDeadline bounds each unary call whose context has no deadline of its
// own (default 30 s, retries included). Streams (Upload, Download) get none:
// bound them with their context.
func WithDeadline(d time.Duration) DialOption {
	return func(c *dialConfig) {
		if d <= 0 {
			c.fail("WithDeadline: the deadline must be positive, got %v", d)
			return
		}
		c.deadline = d
	}
}

// WithRetries sets how often a call that cannot change anything (Retrieve,
// RetrieveStream before its first message, Stat, Exists, ListKeys,
// GetStats) is tried again on UNAVAILABLE, with exponential backoff and
// jitter: 0 to 4, default 3.
func WithRetries(n int) DialOption {
	return func(c *dialConfig) {
		if n < 0 || n > maxRetries {
			c.fail("WithRetries: retries must be 0..%d, got %d", maxRetries, n)
			return
		}
		c.retries = n
	}
}

// WithMaxUnaryBytes sets the largest value Store sends in one message; larger
// ones go through the upload stream. Match the daemon's MAX_UNARY_BYTES
// (default 4 MiB, the default here too).
func WithMaxUnaryBytes(n int) DialOption {
	return func(c *dialConfig) {
		if n < 1 {
			c.fail("WithMaxUnaryBytes: the limit must be at least 1 byte, got %d", n)
			return
		}
		c.maxUnaryBytes = n
	}
}

// WithGRPCOptions adds options to the underlying grpc.NewClient call, after
// the client's own (so they win where they overlap).
func WithGRPCOptions(opts ...grpc.DialOption) DialOption {
	return func(c *dialConfig) { c.grpcOptions = append(c.grpcOptions, opts...) }
}
