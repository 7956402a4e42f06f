'use strict';
// Shared by client.js and server.js: argument parsing, the Greeter service loaded from
// protos/helloworld.proto, and one-line JSON output.
//
// The packages come from NODE_PATH (the test installs them into a cache outside the checkout).

const fs = require('fs');
const { parseArgs } = require('util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// The header grpcpki's Greeter uses to tell a client who the server thinks it is
// (grpcpki/greeter/identity.py, PEER_IDENTITY_HEADER).
const PEER_IDENTITY_HEADER = 'grpcpki-peer-identity';
// Asks grpcpki serve for that header; it sends none to a client that does not (IDENTITY_REQUEST_HEADER).
const IDENTITY_REQUEST_HEADER = 'grpcpki-want-peer-identity';

function args(options) {
  try {
    return parseArgs({ options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    process.stderr.write(`usage error: ${err.message}\n`);
    process.exit(2);
  }
}

function require_(values, ...names) {
  for (const name of names) {
    if (values[name] === undefined) {
      process.stderr.write(`usage error: --${name} is required\n`);
      process.exit(2);
    }
  }
}

function greeterService(protoPath) {
  const definition = protoLoader.loadSync(protoPath, {
    keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).helloworld.Greeter;
}

function read(path) {
  return fs.readFileSync(path);
}

// Write one JSON line, then exit once it is flushed.
function finish(object, code) {
  process.stdout.write(JSON.stringify(object) + '\n', () => process.exit(code));
}

// The names a peer certificate carries, as Node's tls reports them.
function describeCertificate(cert) {
  if (!cert || Object.keys(cert).length === 0) {
    return null;
  }
  const sans = (cert.subjectaltname || '').split(', ').filter(Boolean);
  return {
    subject_cn: cert.subject ? cert.subject.CN || null : null,
    issuer_cn: cert.issuer ? cert.issuer.CN || null : null,
    sans,
    serial: cert.serialNumber || null,
  };
}

module.exports = { PEER_IDENTITY_HEADER, IDENTITY_REQUEST_HEADER, args, require_, greeterService, read, finish, describeCertificate, grpc };
