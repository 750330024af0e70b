package filestorage_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	filestorage "github.com/filestorage/filestorage/clients/go"
	"google.golang.org/grpc/codes"
)

// A throwaway PKI: a CA, a server certificate for 127.0.0.1 and localhost,
// client certificates by common name. Files under dir, PEM.
type pki struct {
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	p.caKey = newKey(t)
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "go-test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	if p.caCert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	p.caFile = p.writePEM(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func (p *pki) writePEM(t *testing.T, name, blockType string, der []byte) string {
	file := filepath.Join(p.dir, name)
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// issue returns the certificate and key files of a leaf certificate for cn.
func (p *pki) issue(t *testing.T, name, cn string, server bool) (certFile, keyFile string) {
	t.Helper()
	key := newKey(t)
	template := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		template.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		template.DNSNames = []string{"localhost"}
		template.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, template, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.writePEM(t, name+".pem", "CERTIFICATE", der), p.writePEM(t, name+".key", "PRIVATE KEY", keyDER)
}

const goToken = "go-client-token-6d1f"

// TestTLSAndAuthentication runs one daemon with mutual TLS and a tokens
// file: a certificate entry for "cert/" keys and a token entry for "tok/".
func TestTLSAndAuthentication(t *testing.T) {
	p := newPKI(t)
	serverCert, serverKey := p.issue(t, "server", "localhost", true)
	clientCert, clientKey := p.issue(t, "client", "go-client", false)
	strangerCert, strangerKey := newPKI(t).issue(t, "stranger", "go-client", false)
	digest := sha256.Sum256([]byte(goToken))
	tokens, err := json.Marshal([]map[string]any{
		{"name": "go-cert", "client_cn": "go-client", "prefixes": []string{"cert/"}, "rights": []string{"read", "write", "list"}},
		{"name": "go-token", "sha256": hex.EncodeToString(digest[:]), "prefixes": []string{"tok/"}, "rights": []string{"read", "write", "delete", "list", "admin"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tokensFile := filepath.Join(p.dir, "tokens.json")
	if err := os.WriteFile(tokensFile, tokens, 0o600); err != nil {
		t.Fatal(err)
	}
	d := startTestDaemon(t, map[string]string{
		"TLS_CERT_FILE":      serverCert,
		"TLS_KEY_FILE":       serverKey,
		"TLS_CLIENT_CA_FILE": p.caFile,
		"AUTH_TOKENS_FILE":   tokensFile,
	})
	ctx := testContext(t)
	quick := []filestorage.DialOption{filestorage.WithRetries(0), filestorage.WithDeadline(10 * time.Second)}
	withCert := with(quick, filestorage.WithTLSFiles(p.caFile, clientCert, clientKey))

	t.Run("a client certificate's entry grants its prefix", func(t *testing.T) {
		c := dialAt(t, d.address, withCert...)
		must(c.Store(ctx, "cert/a", "over mTLS"))(t)
		if obj := must(c.Retrieve(ctx, "cert/a"))(t); obj.Text() != "over mTLS" {
			t.Errorf("retrieved %q", obj.Text())
		}
		_, err := c.Store(ctx, "tok/a", "x")
		wantCode(t, "a store outside the certificate's prefixes", err, codes.PermissionDenied)
	})

	t.Run("a bearer token, when sent, decides", func(t *testing.T) {
		c := dialAt(t, d.address, with(withCert, filestorage.WithToken(goToken))...)
		must(c.Store(ctx, "tok/a", []byte{1, 2, 3}))(t)
		if deleted := must(c.Delete(ctx, "tok/a"))(t); !deleted {
			t.Error("the token's delete right deleted nothing")
		}
		if st := must(c.GetStats(ctx))(t); !st.GetInitialized() {
			t.Error("GetStats with the admin token: not initialized")
		}
		_, err := dialAt(t, d.address, with(withCert, filestorage.WithToken("wrong-token"))...).Stat(ctx, "tok/a")
		wantCode(t, "an unknown token", err, codes.Unauthenticated)
	})

	t.Run("without a client certificate the daemon refuses the connection", func(t *testing.T) {
		_, err := dialAt(t, d.address, with(quick, filestorage.WithTLSFiles(p.caFile, "", ""), filestorage.WithToken(goToken))...).Exists(ctx, "tok/a")
		wantCode(t, "TLS without a client certificate", err, codes.Unavailable)
	})

	t.Run("a certificate from another CA is refused", func(t *testing.T) {
		_, err := dialAt(t, d.address, with(quick, filestorage.WithTLSFiles(p.caFile, strangerCert, strangerKey))...).Exists(ctx, "cert/a")
		wantCode(t, "a client certificate of another CA", err, codes.Unavailable)
	})

	t.Run("the client verifies the daemon's certificate", func(t *testing.T) {
		// The system's roots do not hold the test CA.
		_, err := dialAt(t, d.address, with(quick, filestorage.WithTLS(nil))...).Exists(ctx, "cert/a")
		wantCode(t, "a daemon certificate from an unknown CA", err, codes.Unavailable)
	})

	t.Run("plaintext to a TLS daemon fails", func(t *testing.T) {
		_, err := dialAt(t, d.address, quick...).Exists(ctx, "cert/a")
		wantCode(t, "plaintext to TLS", err, codes.Unavailable)
	})
}

// with is base and more in a new slice, so option lists never share storage.
func with(base []filestorage.DialOption, more ...filestorage.DialOption) []filestorage.DialOption {
	return slices.Concat(base, more)
}

// TestTokenOverPlaintextLoopback: on loopback the daemon may require tokens
// without TLS, and the client then sends its token in the clear.
func TestTokenOverPlaintextLoopback(t *testing.T) {
	digest := sha256.Sum256([]byte(goToken))
	tokens, err := json.Marshal([]map[string]any{
		{"name": "go-token", "sha256": hex.EncodeToString(digest[:]), "prefixes": []string{"tok/"}, "rights": []string{"read", "write"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tokensFile := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(tokensFile, tokens, 0o600); err != nil {
		t.Fatal(err)
	}
	d := startTestDaemon(t, map[string]string{"AUTH_TOKENS_FILE": tokensFile})
	ctx := testContext(t)
	c := dialAt(t, d.address, filestorage.WithToken(goToken), filestorage.WithRetries(0))
	must(c.Store(ctx, "tok/plain", "x"))(t)
	if obj := must(c.Retrieve(ctx, "tok/plain"))(t); obj.Text() != "x" {
		t.Errorf("retrieved %q", obj.Text())
	}
	_, err = c.Delete(ctx, "tok/plain")
	wantCode(t, "a delete without the delete right", err, codes.PermissionDenied)
	_, err = dialAt(t, d.address, filestorage.WithRetries(0)).Exists(ctx, "tok/plain")
	wantCode(t, "a call without a token", err, codes.Unauthenticated)
}
