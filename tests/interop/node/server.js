'use strict';
// helloworld.Greeter served by @grpc/grpc-js over mTLS: client certificate required and verified.
//
//   node server.js --proto protos/helloworld.proto --cert chain.pem --key key.pem --ca ca.crt \
//       [--listen 127.0.0.1:0]
//
// stdout, one JSON object per line:
//   {"port": N, "address": "127.0.0.1:N", "pid": P}        once listening
//   {"event": "call", "name": "...", "identity": "...", "peer_certificate": {...}, "peer": "..."}
//                                                            for each SayHello
// Like `grpcpki serve`, it answers "Hello NAME" and sends the identity it read from the
// client certificate in the grpcpki-peer-identity header, so `grpcpki greet` can report it.
// SIGTERM / SIGINT: graceful shutdown, exit 0. Start-up failure: {"error": "..."}, exit 1.

const { args, require_, greeterService, read, finish, describeCertificate, grpc, PEER_IDENTITY_HEADER } = require('./common');

const opts = args({
  proto: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  ca: { type: 'string' },
  listen: { type: 'string', default: '127.0.0.1:0' },
});
require_(opts, 'proto', 'cert', 'key', 'ca');

// The name grpcpki's Greeter would show: URI (SPIFFE ID), then DNS, then CN, then IP.
function identityOf(described) {
  if (!described) {
    return 'anonymous (no client certificate)';
  }
  for (const prefix of ['URI:', 'DNS:']) {
    const san = described.sans.find((s) => s.startsWith(prefix));
    if (san) return san.slice(prefix.length);
  }
  if (described.subject_cn) return `CN=${described.subject_cn}`;
  const ip = described.sans.find((s) => s.startsWith('IP Address:'));
  return ip ? ip.slice('IP Address:'.length) : 'anonymous (no client certificate)';
}

// Metadata values must be printable ASCII; percent-encode the rest (and '%'), as grpcpki does.
function asciiHeader(value) {
  return Array.from(Buffer.from(value, 'utf8'))
    .map((b) => (b >= 0x20 && b < 0x7f && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`))
    .join('');
}

function sayHello(call, callback) {
  const auth = call.getAuthContext();
  const described = describeCertificate(auth && auth.sslPeerCertificate);
  const identity = identityOf(described);
  const metadata = new grpc.Metadata();
  metadata.set(PEER_IDENTITY_HEADER, asciiHeader(identity));
  call.sendMetadata(metadata);
  process.stdout.write(JSON.stringify({
    event: 'call', name: call.request.name, identity, peer_certificate: described, peer: call.getPeer(),
  }) + '\n');
  callback(null, { message: `Hello ${call.request.name}` });
}

const Greeter = greeterService(opts.proto);
const server = new grpc.Server();
server.addService(Greeter.service, { SayHello: sayHello });
// createSsl(rootCerts, keyCertPairs, checkClientCertificate): true = require and verify one.
const credentials = grpc.ServerCredentials.createSsl(
  read(opts.ca), [{ cert_chain: read(opts.cert), private_key: read(opts.key) }], true,
);

server.bindAsync(opts.listen, credentials, (err, port) => {
  if (err) {
    finish({ error: err.message }, 1);
    return;
  }
  process.stdout.write(JSON.stringify({ port, address: `${opts.listen.replace(/:\d+$/, '')}:${port}`, pid: process.pid }) + '\n');
});

function stop() {
  // Give in-flight calls a moment, then go regardless.
  setTimeout(() => process.exit(0), 2000).unref();
  server.tryShutdown(() => process.exit(0));
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
