#!/usr/bin/env node
'use strict';
/**
 * A sway plugin worker in Node.js: a character n-gram language model whose
 * "adapter" is a second count table (see lib/ngram.js).
 *
 * The lifecycle is the contract's, in this order: refuse to run without the
 * host's magic cookie; bind a Unix socket in a private 0700 folder (the
 * socket itself 0600); serve swayplugin.v1.DifferentialBackend and
 * grpc.health.v1; print the one handshake line on stdout; then serve until
 * Shutdown, SIGTERM/SIGINT, or the host going away (stdin EOF, or being
 * re-parented), and remove the socket folder on the way out.
 *
 *   swayhost conformance -- node workers/node/worker.js
 *   swayhost.spawn(ModelSpec(..., worker=WorkerOptions(command=("node", ".../worker.js"))))
 */

const fs = require('fs');
const os = require('os');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { Backend, MAX_MESSAGE_BYTES } = require('./lib/service');
const { Health } = require('./lib/health');

// Must equal MAGIC_COOKIE_VALUE in workers/swayworker/protocol.py.
const MAGIC_COOKIE_KEY = 'SWAY_PLUGIN_MAGIC_COOKIE';
const MAGIC_COOKIE_VALUE = '5f0b2a1e9c7d4e38a6b1f4c2d8e07a93';
const HOST_PID_ENV = 'SWAY_PLUGIN_HOST_PID';
const CORE_PROTOCOL_VERSION = 1;
const PROTOCOL_VERSION = 1;
const CONTRACT = path.join(__dirname, '..', '..', 'proto', 'swayplugin', 'v1', 'backend.proto');
const HEALTH = path.join(__dirname, 'health.proto');
const PARENT_POLL_MS = 500;

const NOT_A_PROGRAM =
  'This is a sway plugin worker. It is started by the sway-plugin-host (swayhost), ' +
  `not run by hand: the host sets ${MAGIC_COOKIE_KEY} and talks to it over gRPC. ` +
  'To try a worker, use `swayhost conformance -- node worker.js` or ' +
  '`swayhost.spawn(...)` from Python.\n';

/** Log lines start with the level, which the host maps onto its logging. */
function log(level, message) {
  process.stderr.write(`${level} node-ngram: ${message}\n`);
}

function loadService(file, name) {
  const definition = protoLoader.loadSync(file, {
    keepCase: true, // field names exactly as in the .proto (snake_case)
    longs: String, // int64 seeds stay exact
    enums: String,
    defaults: true,
    oneofs: true, // request.op / view.kind name the member that is set
  });
  return name.split('.').reduce((node, part) => node[part], grpc.loadPackageDefinition(definition));
}

function main() {
  if (process.env[MAGIC_COOKIE_KEY] !== MAGIC_COOKIE_VALUE) {
    process.stderr.write(NOT_A_PROGRAM);
    process.exit(1);
  }
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'swayworker-')); // mode 0700
  const socket = path.join(folder, 'worker.sock');
  // However the process ends, the socket folder goes with it.
  process.on('exit', () => fs.rmSync(folder, { recursive: true, force: true }));
  // A dead host closes our stdout/stderr pipes: a failed log write must not crash the exit.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});
  const server = new grpc.Server({
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  });
  const health = new Health();
  let stopping = false;
  const stop = (reason) => {
    if (stopping) return;
    stopping = true;
    log('INFO', `stopping: ${reason}`);
    health.stopServing();
    // In-flight calls get a second to finish; then connections are cut regardless.
    setTimeout(() => {
      server.forceShutdown();
      process.exit(0);
    }, 1000).unref();
    server.tryShutdown(() => process.exit(0));
  };
  const backend = new Backend({ onShutdown: stop, log });
  const contract = loadService(CONTRACT, 'swayplugin.v1.DifferentialBackend');
  server.addService(contract.service, backend.handlers());
  server.addService(loadService(HEALTH, 'grpc.health.v1.Health').service, health.handlers());

  server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (error) => {
    if (error) {
      log('ERROR', `cannot listen on ${socket}: ${error.message}`);
      process.exit(1);
    }
    fs.chmodSync(socket, 0o600);
    process.stdout.write(`${CORE_PROTOCOL_VERSION}|${PROTOCOL_VERSION}|unix|${socket}|grpc\n`);
  });

  for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => stop(`signal ${signal}`));
  watchHost(stop);
}

/** Stop when the host goes away: its end of our stdin closes, or we get re-parented. */
function watchHost(stop) {
  process.stdin.on('end', () => stop('stdin closed (host went away)'));
  process.stdin.on('error', () => stop('stdin failed (host went away)'));
  process.stdin.resume();
  const hostPid = Number(process.env[HOST_PID_ENV]);
  if (Number.isInteger(hostPid) && hostPid > 0) {
    const check = () => {
      if (hostGone(hostPid)) stop('re-parented (host exited)');
    };
    check();
    setInterval(check, PARENT_POLL_MS).unref();
  }
}

/**
 * Whether the host is gone. process.ppid is fixed at start-up, so read the
 * live parent from /proc where there is one; elsewhere, ask whether the
 * host's pid still exists.
 */
function hostGone(hostPid) {
  try {
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    // "pid (command) state ppid ...": the command may contain spaces and parentheses.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== hostPid;
  } catch {
    try {
      process.kill(hostPid, 0);
      return false;
    } catch (error) {
      return error.code === 'ESRCH';
    }
  }
}

main();
