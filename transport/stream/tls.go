package stream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/viaduct-sip/viaduct/internal/config"
)

// tlsMaterial holds the certificate, key and CA pools of a TLS server,
// swapped whole by load so that each handshake sees one consistent set.
type tlsMaterial struct {
	cfg ServerConfig
	cur atomic.Pointer[tlsFiles]
	// serverConfig picks the current files per handshake (many SIP
	// clients send no SNI, so the choice is not by name).
	serverConfig *tls.Config
}

// tlsFiles is what load read.
type tlsFiles struct {
	cert   *tls.Certificate
	server *tls.Config // per handshake, with the client CAs
	client *tls.Config // base of the outbound configs
}

func loadTLS(c ServerConfig) (*tlsMaterial, error) {
	m := &tlsMaterial{cfg: c}
	if err := m.load(); err != nil {
		return nil, err
	}
	m.serverConfig = &tls.Config{
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return m.cur.Load().server, nil },
	}
	return m, nil
}

// load reads the files; on an error the ones in use stay.
func (m *tlsMaterial) load() error {
	c := m.cfg
	minVersion, err := c.tlsMinVersion()
	if err != nil {
		return err
	}
	f := &tlsFiles{}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return config.Errorf("cert_file", "%v", err)
		}
		f.cert = &cert
	}
	f.server = &tls.Config{MinVersion: minVersion,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if f.cert == nil {
				return nil, errors.New("no certificate configured")
			}
			return f.cert, nil
		}}
	if c.ClientCAFile != "" {
		pool, err := readPool(c.ClientCAFile)
		if err != nil {
			return config.Errorf("client_ca_file", "%v", err)
		}
		f.server.ClientCAs, f.server.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	f.client = &tls.Config{MinVersion: minVersion, InsecureSkipVerify: c.InsecureSkipVerify,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if f.cert == nil {
				return &tls.Certificate{}, nil
			}
			return f.cert, nil
		}}
	if c.CAFile != "" {
		if f.client.RootCAs, err = readPool(c.CAFile); err != nil {
			return config.Errorf("ca_file", "%v", err)
		}
	}
	m.cur.Store(f)
	return nil
}

// clientConfig returns the configuration of an outbound handshake with
// the server named name.
func (m *tlsMaterial) clientConfig(name string) *tls.Config {
	cfg := m.cur.Load().client.Clone()
	cfg.ServerName = name
	return cfg
}

func readPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	return pool, nil
}
