// The Go side of tests/interop/test_go_crypto_tls.py: a helloworld.Greeter client and server on
// the standard library alone (crypto/tls, crypto/x509, net/http's HTTP/2). No requirements: the
// test builds it offline (GOPROXY=off, GOTOOLCHAIN=local).
module grpcpki.test/gointerop

go 1.22
