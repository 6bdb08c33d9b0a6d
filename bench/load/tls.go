package load

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// SelfSignedCertificate makes an ECDSA P-256 certificate for hosts (IP
// addresses and DNS names), valid for a day, held in memory only: for a
// UAS started without a certificate, and for tests.
func SelfSignedCertificate(hosts ...string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "viaduct-load"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// ServerTLSConfig returns the UAS's TLS configuration (TLS 1.2 and up):
// the certificate and key in the PEM files certFile and keyFile, or, when
// both are empty, a self-signed certificate for hosts plus localhost and
// the loopback addresses.
func ServerTLSConfig(certFile, keyFile string, hosts ...string) (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	switch {
	case certFile == "" && keyFile == "":
		cert, err = SelfSignedCertificate(append(hosts, "localhost", "127.0.0.1", "::1")...)
	case certFile == "" || keyFile == "":
		return nil, errors.New("tls: give both a certificate and its key, or neither (self-signed)")
	default:
		cert, err = tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			err = fmt.Errorf("tls: loading %s and %s: %w", certFile, keyFile, err)
		}
	}
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// ClientTLSConfig returns the UAC's TLS configuration (TLS 1.2 and up):
// the server's certificate is checked against the CA certificates in the
// PEM file caFile (the system's when empty) for serverName (the target's
// address when empty), or not at all with insecure, for benchmarks.
func ClientTLSConfig(caFile string, insecure bool, serverName string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName, InsecureSkipVerify: insecure}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: no PEM certificate in %s", caFile)
		}
	}
	return c, nil
}

// clientTLS returns cfg for a connection to target: ServerName defaults
// to the target's address, which the certificate must then name.
func clientTLS(cfg *tls.Config, target string) *tls.Config {
	if cfg.ServerName != "" {
		return cfg
	}
	c := cfg.Clone()
	c.ServerName = target
	return c
}
