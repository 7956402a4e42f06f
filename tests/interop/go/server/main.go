// Command server serves helloworld.Greeter/SayHello over mTLS with Go's crypto/tls and net/http.
//
//	server -cert chain.pem -key key.pem -ca ca.crt [-listen 127.0.0.1:0]
//
// The tls.Config is the one of the classic grpc-go mTLS Greeter (tls.LoadX509KeyPair, a
// CertPool of ca.crt as ClientCAs, tls.RequireAndVerifyClientCert, TLS 1.2 minimum), plus ALPN
// h2, which grpc-go's credentials.NewTLS adds. net/http serves HTTP/2 on it; the gRPC framing
// (package wire) is hand-written because grpc-go itself is not available offline.
//
// stdout, one JSON object per line:
//
//	{"port": N, "address": "127.0.0.1:N", "pid": P, "go": "go1.x"}      once listening
//	{"event": "call", "name": "...", "identity": "...", ...}             for each SayHello
//
// stderr: Go's own log, including net/http's "http: TLS handshake error from ADDR: ..." for
// each refused handshake (crypto/tls's error text, which the tests read).
// Like `grpcpki serve`, it answers "Hello NAME" and sends the identity it read from the client
// certificate in the grpcpki-peer-identity header. SIGTERM / SIGINT: shutdown, exit 0.
// Start-up failure: {"error": "..."}, exit 1; usage: exit 2.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"grpcpki.test/gointerop/wire"
)

var stdout sync.Mutex

func emit(object map[string]any) {
	line, err := json.Marshal(object)
	if err != nil {
		panic(err)
	}
	stdout.Lock()
	defer stdout.Unlock()
	os.Stdout.Write(append(line, '\n'))
}

func fail(format string, args ...any) {
	emit(map[string]any{"error": fmt.Sprintf(format, args...)})
	os.Exit(1)
}

// gRPC status codes used here.
const (
	codeOK              = 0
	codeInvalidArgument = 3
	codeUnimplemented   = 12
)

func greet(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 {
		http.Error(w, "gRPC needs HTTP/2 (ALPN h2)", http.StatusHTTPVersionNotSupported)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "gRPC calls are POST", http.StatusMethodNotAllowed)
		return
	}
	contentType := r.Header.Get("Content-Type")
	if contentType != "application/grpc" && !strings.HasPrefix(contentType, "application/grpc+") &&
		!strings.HasPrefix(contentType, "application/grpc;") {
		http.Error(w, "content-type must be application/grpc", http.StatusUnsupportedMediaType)
		return
	}
	var peer *x509.Certificate
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		peer = r.TLS.PeerCertificates[0]
	}
	identity := wire.Identity(peer)

	header := w.Header()
	header.Set("Content-Type", "application/grpc")
	header.Set(wire.PeerIdentityHeader, wire.PercentEncode(identity)) // initial metadata, as grpcpki serve sends it
	header.Set("Trailer", "Grpc-Status, Grpc-Message")
	finish := func(code int, message string) {
		header.Set("Grpc-Status", strconv.Itoa(code)) // declared above: sent as an HTTP/2 trailer
		if message != "" {
			header.Set("Grpc-Message", wire.PercentEncode(message))
		}
	}

	if r.URL.Path != wire.Method {
		w.WriteHeader(http.StatusOK)
		finish(codeUnimplemented, "unknown method "+r.URL.Path)
		return
	}
	request, err := wire.ReadFrame(r.Body)
	var name string
	if err == nil {
		name, err = wire.DecodeString(request)
	}
	if err != nil {
		w.WriteHeader(http.StatusOK)
		finish(codeInvalidArgument, "bad HelloRequest: "+err.Error())
		return
	}
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(wire.Frame(wire.EncodeString("Hello " + name))); err != nil {
		return
	}
	finish(codeOK, "")

	chain := []*wire.Certificate{}
	for _, cert := range r.TLS.PeerCertificates {
		chain = append(chain, wire.Describe(cert))
	}
	emit(map[string]any{
		"event":            "call",
		"name":             name,
		"identity":         identity,
		"peer_certificate": wire.Describe(peer),
		"peer_chain":       chain,
		"peer":             r.RemoteAddr,
		"proto":            r.Proto,
		"alpn":             r.TLS.NegotiatedProtocol,
		"tls_version":      tls.VersionName(r.TLS.Version),
		"user_agent":       r.UserAgent(),
	})
}

func main() {
	log.SetFlags(0)
	certFile := flag.String("cert", "", "certificate chain, PEM (leaf then intermediates, like chain.pem)")
	keyFile := flag.String("key", "", "private key, PEM")
	caFile := flag.String("ca", "", "CA certificates trusted for client certificates, PEM (ca.crt)")
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	if *certFile == "" || *keyFile == "" || *caFile == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: server -cert chain.pem -key key.pem -ca ca.crt [-listen 127.0.0.1:0]")
		os.Exit(2)
	}

	// The article's server, line for line (grpc-go's credentials.NewTLS would add NextProtos h2).
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		fail("failed to load key pair: %v", err)
	}
	caCert, err := os.ReadFile(*caFile)
	if err != nil {
		fail("failed to read ca certificate: %v", err)
	}
	caCertPool := x509.NewCertPool()
	if !caCertPool.AppendCertsFromPEM(caCert) {
		fail("no certificate in %s", *caFile)
	}
	tlsConfig := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    caCertPool,
		ClientAuth:   tls.RequireAndVerifyClientCert, // Require and verify client certs
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2"},
	}

	srv := &http.Server{
		Handler:           http.HandlerFunc(greet),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(os.Stderr, "", 0),
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		fail("failed to listen: %v", err)
	}
	// Catch SIGTERM before announcing the port: a test may stop the server as soon as it has read
	// the start line, and a signal that lands before Notify kills the process with -15.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, os.Interrupt)
	addr := lis.Addr().(*net.TCPAddr)
	emit(map[string]any{"port": addr.Port, "address": addr.String(), "pid": os.Getpid(), "go": runtime.Version()})

	served := make(chan error, 1)
	go func() {
		// ServeTLS with no files uses TLSConfig.Certificates and sets up HTTP/2 (ALPN h2).
		served <- srv.ServeTLS(lis, "", "")
	}()
	select {
	case <-signals:
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		os.Exit(0)
	case err := <-served:
		fail("serve: %v", err)
	}
}
