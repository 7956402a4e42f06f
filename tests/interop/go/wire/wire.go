// Package wire is the little of gRPC and protobuf that one unary helloworld.Greeter/SayHello
// call needs on top of net/http's HTTP/2, written by hand because grpc-go and protobuf-go are
// not available offline:
//
//   - a gRPC message on the wire (the "Length-Prefixed-Message" of PROTOCOL-HTTP2.md): one
//     compressed-flag byte (0), a 4-byte big-endian length, then the protobuf bytes;
//   - HelloRequest{string name = 1} and HelloReply{string message = 1}: both are field 1,
//     wire type 2 (tag byte 0x0a), a varint length, then UTF-8 bytes.
//
// Everything below the gRPC framing (TLS, certificate verification, ALPN h2, HTTP/2 headers,
// data and trailers) is Go's own crypto/tls, crypto/x509 and net/http.
package wire

import (
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Method is the HTTP/2 :path of the call.
const Method = "/helloworld.Greeter/SayHello"

// PeerIdentityHeader carries the identity the server read from the client certificate, as
// grpcpki serve sends it (grpcpki/greeter/identity.py, PEER_IDENTITY_HEADER).
const PeerIdentityHeader = "grpcpki-peer-identity"

// IdentityRequestHeader asks grpcpki serve for PeerIdentityHeader; without it serve sends none
// (grpcpki/greeter/identity.py, IDENTITY_REQUEST_HEADER).
const IdentityRequestHeader = "grpcpki-want-peer-identity"

// maxMessage bounds what ReadFrame accepts; a Greeter message is a few bytes.
const maxMessage = 1 << 20

// Frame wraps a protobuf message in the 5-byte gRPC message prefix (not compressed).
func Frame(message []byte) []byte {
	out := make([]byte, 5, 5+len(message))
	binary.BigEndian.PutUint32(out[1:], uint32(len(message)))
	return append(out, message...)
}

// ReadFrame reads one length-prefixed message. io.EOF means no message at all.
func ReadFrame(r io.Reader) ([]byte, error) {
	var prefix [5]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("truncated gRPC message prefix: %w", err)
		}
		return nil, err
	}
	if prefix[0] != 0 {
		return nil, fmt.Errorf("compressed gRPC message (flag %d): not supported here", prefix[0])
	}
	size := binary.BigEndian.Uint32(prefix[1:])
	if size > maxMessage {
		return nil, fmt.Errorf("gRPC message of %d bytes is too large", size)
	}
	message := make([]byte, size)
	if _, err := io.ReadFull(r, message); err != nil {
		return nil, fmt.Errorf("truncated gRPC message (%d bytes announced): %w", size, err)
	}
	return message, nil
}

// EncodeString is a protobuf message whose only field is `string field = 1` (proto3 omits an
// empty string).
func EncodeString(value string) []byte {
	if value == "" {
		return nil
	}
	out := []byte{0x0a}
	out = binary.AppendUvarint(out, uint64(len(value)))
	return append(out, value...)
}

// DecodeString returns field 1 (a string) of a protobuf message, skipping any other field.
func DecodeString(message []byte) (string, error) {
	value := ""
	for len(message) > 0 {
		key, n := binary.Uvarint(message)
		if n <= 0 {
			return "", errors.New("protobuf: bad field key")
		}
		message = message[n:]
		field, wireType := key>>3, key&7
		switch wireType {
		case 0: // varint
			_, n = binary.Uvarint(message)
			if n <= 0 {
				return "", errors.New("protobuf: bad varint")
			}
			message = message[n:]
		case 1: // 64-bit
			if len(message) < 8 {
				return "", errors.New("protobuf: truncated fixed64")
			}
			message = message[8:]
		case 2: // length-delimited
			size, n := binary.Uvarint(message)
			if n <= 0 || size > uint64(len(message)-n) {
				return "", errors.New("protobuf: bad length")
			}
			if field == 1 {
				value = string(message[n : n+int(size)])
			}
			message = message[n+int(size):]
		case 5: // 32-bit
			if len(message) < 4 {
				return "", errors.New("protobuf: truncated fixed32")
			}
			message = message[4:]
		default:
			return "", fmt.Errorf("protobuf: unsupported wire type %d", wireType)
		}
	}
	return value, nil
}

// Certificate describes a certificate the way the Node scripts do (tests compare the two).
type Certificate struct {
	SubjectCN string   `json:"subject_cn"`
	IssuerCN  string   `json:"issuer_cn"`
	SANs      []string `json:"sans"`
	Serial    string   `json:"serial"`
}

// Describe lists a certificate's names as "URI:...", "DNS:...", "IP:...".
func Describe(cert *x509.Certificate) *Certificate {
	if cert == nil {
		return nil
	}
	sans := []string{}
	for _, u := range cert.URIs {
		sans = append(sans, "URI:"+u.String())
	}
	for _, d := range cert.DNSNames {
		sans = append(sans, "DNS:"+d)
	}
	for _, ip := range cert.IPAddresses {
		sans = append(sans, "IP:"+ip.String())
	}
	return &Certificate{
		SubjectCN: cert.Subject.CommonName,
		IssuerCN:  cert.Issuer.CommonName,
		SANs:      sans,
		Serial:    fmt.Sprintf("%x", cert.SerialNumber),
	}
}

// Identity is the one name grpcpki's Greeter shows for a client certificate
// (grpcpki.greeter.identity.PeerIdentity.display): the first URI SAN (the SPIFFE ID), else the
// first DNS SAN, else CN=..., else the first IP SAN.
func Identity(cert *x509.Certificate) string {
	switch {
	case cert == nil:
		return "anonymous (no client certificate)"
	case len(cert.URIs) > 0:
		return cert.URIs[0].String()
	case len(cert.DNSNames) > 0:
		return cert.DNSNames[0]
	case cert.Subject.CommonName != "":
		return "CN=" + cert.Subject.CommonName
	case len(cert.IPAddresses) > 0:
		return cert.IPAddresses[0].String()
	}
	return "anonymous (no client certificate)"
}

// PercentEncode makes a header value printable ASCII the way grpcpki serve does
// (urllib.parse.quote with every printable character but '%' safe); PercentDecode undoes it.
func PercentEncode(value string) string {
	var b strings.Builder
	for i := 0; i < len(value); i++ {
		c := value[i]
		if c >= 0x20 && c < 0x7f && c != '%' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// PercentDecode reverses PercentEncode (and grpc-message's percent-encoding); bad escapes stay.
func PercentDecode(value string) string {
	var b strings.Builder
	for i := 0; i < len(value); i++ {
		if value[i] == '%' && i+2 < len(value) {
			if c, err := strconv.ParseUint(value[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(c))
				i += 2
				continue
			}
		}
		b.WriteByte(value[i])
	}
	return b.String()
}
