// Command client makes one helloworld.Greeter/SayHello call over TLS (mTLS with -cert/-key)
// with Go's crypto/tls and net/http's HTTP/2 client.
//
//	client -target localhost:PORT -ca ca.crt [-cert chain.pem -key key.pem] [-server-name NAME]
//	       [-name world] [-timeout 5s]
//
// The tls.Config is the classic grpc-go Greeter client's (RootCAs from ca.crt, the client
// certificate from tls.LoadX509KeyPair), with ServerName when -server-name overrides the name
// checked (grpc-go: credentials.NewClientTLSFromCert's serverNameOverride). The gRPC framing
// (package wire) is hand-written because grpc-go itself is not available offline.
//
// Prints one JSON line and exits 0 on a reply with grpc-status 0, 1 otherwise (2: usage):
//
//	{"ok": true, "reply": "Hello world", "status": 0, "identity_seen_by_server": "...", ...}
//	{"ok": false, "status": null, "error": "<Go's err.Error(), unchanged>"}
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"time"

	"grpcpki.test/gointerop/wire"
)

func finish(object map[string]any, code int) {
	line, err := json.Marshal(object)
	if err != nil {
		panic(err)
	}
	os.Stdout.Write(append(line, '\n'))
	os.Exit(code)
}

func failed(err error, extra map[string]any) {
	result := map[string]any{"ok": false, "status": nil, "error": err.Error()}
	for k, v := range extra {
		result[k] = v
	}
	finish(result, 1)
}

func main() {
	target := flag.String("target", "", "HOST:PORT to dial; HOST is the name checked against the server certificate")
	caFile := flag.String("ca", "", "CA certificates trusted for the server certificate, PEM (ca.crt)")
	certFile := flag.String("cert", "", "client certificate chain, PEM (chain.pem); without it no client certificate is sent")
	keyFile := flag.String("key", "", "client private key, PEM")
	serverName := flag.String("server-name", "", "check the server certificate for this name (and send it as SNI)")
	name := flag.String("name", "world", "HelloRequest.name")
	timeout := flag.Duration("timeout", 5*time.Second, "deadline of the call")
	flag.Parse()
	if *target == "" || *caFile == "" || (*certFile == "") != (*keyFile == "") || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: client -target HOST:PORT -ca ca.crt [-cert chain.pem -key key.pem] [-server-name NAME] [-name world]")
		os.Exit(2)
	}

	caCert, err := os.ReadFile(*caFile)
	if err != nil {
		failed(fmt.Errorf("failed to read ca certificate: %w", err), nil)
	}
	caCertPool := x509.NewCertPool()
	if !caCertPool.AppendCertsFromPEM(caCert) {
		failed(fmt.Errorf("no certificate in %s", *caFile), nil)
	}
	tlsConfig := &tls.Config{RootCAs: caCertPool, ServerName: *serverName}
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			failed(fmt.Errorf("failed to load key pair: %w", err), nil)
		}
		tlsConfig.Certificates = []tls.Certificate{cert}
	}

	// ForceAttemptHTTP2 with a custom TLS config: the transport offers ALPN h2 (and http/1.1);
	// the call below refuses anything but HTTP/2, as a gRPC client must.
	transport := &http.Transport{TLSClientConfig: tlsConfig, ForceAttemptHTTP2: true}
	defer transport.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	body := wire.Frame(wire.EncodeString(*name))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+*target+wire.Method, bytes.NewReader(body))
	if err != nil {
		failed(err, nil)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	req.Header.Set(wire.IdentityRequestHeader, "1")
	req.Header.Set("User-Agent", "grpcpki-go-interop ("+runtime.Version()+")")
	resp, err := transport.RoundTrip(req)
	if err != nil {
		failed(err, nil)
	}
	defer resp.Body.Close()

	result := map[string]any{"http_status": resp.StatusCode, "proto": resp.Proto}
	if state := resp.TLS; state != nil {
		result["alpn"] = state.NegotiatedProtocol
		result["tls_version"] = tls.VersionName(state.Version)
		if len(state.PeerCertificates) > 0 {
			result["server_certificate"] = wire.Describe(state.PeerCertificates[0])
		}
		result["server_chain_length"] = len(state.PeerCertificates)
		if len(state.VerifiedChains) > 0 {
			result["verified_chain_length"] = len(state.VerifiedChains[0])
		}
	}
	if resp.ProtoMajor != 2 {
		failed(fmt.Errorf("the server answered over %s, not HTTP/2 (no ALPN h2)", resp.Proto), result)
	}
	if resp.StatusCode != http.StatusOK {
		failed(fmt.Errorf("HTTP status %d, not a gRPC response", resp.StatusCode), result)
	}
	if identity := resp.Header.Get(wire.PeerIdentityHeader); identity != "" {
		result["identity_seen_by_server"] = wire.PercentDecode(identity)
	}
	message, err := wire.ReadFrame(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		failed(err, result)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil { // the trailers arrive after the body
		failed(err, result)
	}
	if _, seen := result["identity_seen_by_server"]; !seen { // grpcpki serve sends it in the trailers
		if identity := resp.Trailer.Get(wire.PeerIdentityHeader); identity != "" {
			result["identity_seen_by_server"] = wire.PercentDecode(identity)
		}
	}
	statusText := resp.Trailer.Get("Grpc-Status")
	grpcMessage := resp.Trailer.Get("Grpc-Message")
	if statusText == "" { // a trailers-only response carries them in the headers
		statusText, grpcMessage = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	}
	status, err := strconv.Atoi(statusText)
	if err != nil {
		failed(fmt.Errorf("no grpc-status trailer (got %q)", statusText), result)
	}
	result["status"] = status
	if status != 0 {
		result["ok"] = false
		result["error"] = fmt.Sprintf("grpc-status %d: %s", status, wire.PercentDecode(grpcMessage))
		finish(result, 1)
	}
	if message == nil {
		failed(errors.New("grpc-status 0 without a reply message"), result)
	}
	reply, err := wire.DecodeString(message)
	if err != nil {
		failed(err, result)
	}
	result["ok"] = true
	result["reply"] = reply
	finish(result, 0)
}
