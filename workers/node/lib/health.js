'use strict';
/**
 * grpc.health.v1.Health: the host checks service "plugin" (as go-plugin
 * does) before it calls anything else; "" is the whole server. Unknown names
 * are NOT_FOUND on Check and SERVICE_UNKNOWN on Watch, as the standard says.
 */

const grpc = require('@grpc/grpc-js');

const SERVICES = ['plugin', ''];

class Health {
  constructor() {
    this.status = 'SERVING';
    /** @type {Set<import('@grpc/grpc-js').ServerWritableStream<any, any>>} */
    this.watchers = new Set();
  }

  /** Report NOT_SERVING from now on (on the way out). */
  stopServing() {
    this.status = 'NOT_SERVING';
    for (const call of this.watchers) call.write({ status: this.status });
  }

  handlers() {
    return {
      Check: (call, callback) => {
        if (!SERVICES.includes(call.request.service)) {
          callback({ code: grpc.status.NOT_FOUND, details: 'unknown service' });
          return;
        }
        callback(null, { status: this.status });
      },
      Watch: (call) => {
        const known = SERVICES.includes(call.request.service);
        call.write({ status: known ? this.status : 'SERVICE_UNKNOWN' });
        if (!known) return;
        this.watchers.add(call);
        call.on('cancelled', () => this.watchers.delete(call));
      },
    };
  }
}

module.exports = { Health };
