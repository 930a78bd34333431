// Command vcsim serves govmomi's ESX simulator model for virtsnap's tests.
//
// Debian's golang-github-vmware-govmomi-dev ships the simulator library but
// no vcsim command, so tests/esx/vcsim/build.py compiles this file against a
// patched copy of that library (see govmomi-0.24.2.patch).
//
// On success it prints exactly one machine-readable line on stdout and then
// serves until SIGTERM/SIGINT:
//
//	VCSIM_READY {"url":"https://127.0.0.1:PORT/sdk","host":"127.0.0.1","port":PORT,...}
//
// Everything else (errors) goes to stderr.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
)

// readyLine is the prefix the pytest fixture scans stdout for.
const readyLine = "VCSIM_READY"

// genCert makes a fresh self-signed ECDSA P-256 certificate for 127.0.0.1.
// The simulator's built-in certificate (simulator/internal/testcert.go) is
// RSA-1024, which OpenSSL 3 at Debian's default security level 2 refuses
// even when explicitly trusted, so clients could never verify it.
func genCert(host string) (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"virtsnap vcsim"}, CommonName: host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * 365 * time.Hour),
		// Self-signed leaf that is also its own CA, so trusting this one
		// PEM as cafile is enough for Python's ssl module.
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	if ip := net.ParseIP(host); ip == nil {
		tmpl.DNSNames = append(tmpl.DNSNames, host)
	} else if !ip.IsLoopback() {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	return cert, certPEM, err
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "vcsim: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 0, "port to listen on (0 = pick a free one)")
	username := flag.String("username", "user", "the only user name accepted by Login")
	password := flag.String("password", "pass", "the only password accepted by Login")
	certOut := flag.String("cert-out", "", "write the server certificate (PEM) to this file")
	builtinCert := flag.Bool("builtin-cert", false,
		"serve the simulator's built-in RSA-1024 test certificate instead of a fresh ECDSA one")
	modelName := flag.String("model", "esx",
		"inventory to simulate: esx (one ESX host) or vpx (a vCenter with datacenter DC0, cluster DC0_C0)")
	watchParent := flag.Bool("watch-parent", false,
		"exit when the parent process dies (so a killed test runner leaves no vcsim behind)")
	flag.Parse()

	var model *simulator.Model
	switch *modelName {
	case "esx":
		model = simulator.ESX()
	case "vpx":
		model = simulator.VPX()
	default:
		fail("unknown -model %q (expected esx or vpx)", *modelName)
	}
	if err := model.Create(); err != nil {
		fail("creating %s model: %v", *modelName, err)
	}
	// Model.Remove deletes the datastore directories Create made under $TMPDIR.
	defer model.Remove()

	model.Service.Listen = &url.URL{
		Host: net.JoinHostPort(*host, strconv.Itoa(*port)),
		// A non-default Userinfo makes validLogin check both fields; with
		// simulator.DefaultLogin any non-empty pair would be accepted.
		User: url.UserPassword(*username, *password),
	}
	model.Service.TLS = new(tls.Config)
	if !*builtinCert {
		cert, _, err := genCert(*host)
		if err != nil {
			fail("generating certificate: %v", err)
		}
		// StartTLS keeps Certificates when already set.
		model.Service.TLS.Certificates = []tls.Certificate{cert}
	}
	model.Service.RegisterEndpoints = true

	server := model.Service.NewServer()
	defer server.Close()

	certPath := ""
	if *certOut != "" {
		// Written from what the server actually serves, so it is right for
		// both -builtin-cert and the generated certificate.
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: server.Certificate().Raw})
		tmp := *certOut + ".tmp"
		if err := os.WriteFile(tmp, pemBytes, 0o644); err != nil {
			fail("writing certificate: %v", err)
		}
		// Rename so a reader never sees a half-written file.
		if err := os.Rename(tmp, *certOut); err != nil {
			fail("writing certificate: %v", err)
		}
		certPath = *certOut
	}

	addr := server.Listener.Addr().(*net.TCPAddr)
	u := *server.URL
	u.User = nil // keep credentials out of the URL; they are separate fields
	info := map[string]interface{}{
		"url":      u.String(),
		"host":     addr.IP.String(),
		"port":     addr.Port,
		"username": *username,
		"password": *password,
		"cert":     certPath,
		"pid":      os.Getpid(),
	}
	line, _ := json.Marshal(info)
	fmt.Printf("%s %s\n", readyLine, line)
	os.Stdout.Sync()

	// Block until asked to stop, then let the deferred Close/Remove run so
	// no temp directories are left behind.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	if *watchParent {
		parent := os.Getppid()
		go func() {
			// Once the parent is gone we are re-parented, so Getppid changes.
			for range time.Tick(500 * time.Millisecond) {
				if os.Getppid() != parent {
					stop <- syscall.SIGTERM
					return
				}
			}
		}()
	}
	<-stop
}
