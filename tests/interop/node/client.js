'use strict';
// One helloworld.Greeter/SayHello call with @grpc/grpc-js, over TLS (mTLS when --cert/--key).
//
//   node client.js --proto protos/helloworld.proto --target localhost:PORT --ca ca.crt \
//       [--cert chain.pem --key key.pem] [--name world] [--timeout 5]
//
// Prints one JSON line and exits 0 on a reply, 1 on a gRPC error (2: usage):
//   {"ok": true, "reply": "Hello world", "identity_seen_by_server": "...", "server_certificate": {...}}
//   {"ok": false, "code": 14, "code_name": "UNAVAILABLE", "details": "..."}

const {
  args, require_, greeterService, read, finish, describeCertificate, grpc, PEER_IDENTITY_HEADER, IDENTITY_REQUEST_HEADER,
} = require('./common');

const opts = args({
  proto: { type: 'string' },
  target: { type: 'string' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  name: { type: 'string', default: 'world' },
  timeout: { type: 'string', default: '5' },
});
require_(opts, 'proto', 'target', 'ca');
if ((opts.cert === undefined) !== (opts.key === undefined)) {
  process.stderr.write('usage error: --cert and --key go together\n');
  process.exit(2);
}

const Greeter = greeterService(opts.proto);
// createSsl(rootCerts, privateKey, certChain): without key and chain, no client certificate is sent.
const credentials = opts.cert === undefined
  ? grpc.credentials.createSsl(read(opts.ca))
  : grpc.credentials.createSsl(read(opts.ca), read(opts.key), read(opts.cert));
const client = new Greeter(opts.target, credentials);
const deadline = new Date(Date.now() + Number(opts.timeout) * 1000);

let identitySeen = null;
const metadata = new grpc.Metadata();
metadata.set(IDENTITY_REQUEST_HEADER, '1');
const call = client.SayHello({ name: opts.name }, metadata, { deadline }, (err, reply) => {
  let serverCertificate = null;
  try {
    const auth = call.getAuthContext();
    serverCertificate = describeCertificate(auth && auth.sslPeerCertificate);
  } catch (_) {
    // no auth context on a call that never connected
  }
  client.close();
  if (err) {
    finish({
      ok: false,
      code: err.code,
      code_name: grpc.status[err.code] || String(err.code),
      details: err.details,
      message: err.message,
    }, 1);
    return;
  }
  succeeded = { ok: true, reply: reply.message, server_certificate: serverCertificate };
  finishWhenDone();
});
// grpcpki serve sends the identity in the trailers (the 'status' event, which grpc-js emits after
// the callback); other servers in the initial metadata. Finish once both are in.
let succeeded = null;
let statusSeen = false;
function finishWhenDone() {
  if (succeeded !== null && statusSeen) {
    finish({ ...succeeded, identity_seen_by_server: identitySeen }, 0);
  }
}
function readIdentity(metadata) {
  const values = metadata ? metadata.get(PEER_IDENTITY_HEADER) : [];
  if (values.length > 0 && identitySeen === null) {
    identitySeen = decodeURIComponent(String(values[0]));
  }
}
call.on('metadata', readIdentity);
call.on('status', (status) => {
  readIdentity(status.metadata);
  statusSeen = true;
  finishWhenDone();
});
