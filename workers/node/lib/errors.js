'use strict';
/**
 * Errors as the contract carries them.
 *
 * A failed unary call ends with a gRPC status code and four trailing metadata
 * keys: sway-error-reason (the ErrorReason enum name), sway-error-type (a
 * qualified exception class name), sway-error-attrs (a JSON object) and
 * sway-error-hint. The host raises the named class when it is a Python
 * builtin or one of dlm-sway's errors, so this worker names the class an
 * in-process sway backend would raise (ValueError for a bad argument,
 * ProbeError for an empty completion...); any other name falls back to a
 * host class chosen by the reason. Inside a ScoreBatch the same fields
 * travel in the item's Error message instead.
 */

const grpc = require('@grpc/grpc-js');

/** ErrorReason name -> [gRPC status code, default exception type]. */
const REASONS = {
  ERROR_REASON_BAD_ARGUMENT: [grpc.status.INVALID_ARGUMENT, 'builtins.ValueError'],
  ERROR_REASON_BAD_SPEC: [grpc.status.INVALID_ARGUMENT, 'dlm_sway.core.errors.SpecValidationError'],
  ERROR_REASON_BACKEND_NOT_AVAILABLE: [grpc.status.FAILED_PRECONDITION, 'builtins.ImportError'],
  ERROR_REASON_NOT_LOADED: [grpc.status.FAILED_PRECONDITION, 'builtins.RuntimeError'],
  ERROR_REASON_UNSUPPORTED: [grpc.status.UNIMPLEMENTED, 'builtins.NotImplementedError'],
  ERROR_REASON_OUT_OF_MEMORY: [grpc.status.RESOURCE_EXHAUSTED, 'builtins.MemoryError'],
  ERROR_REASON_INTERNAL: [grpc.status.INTERNAL, 'builtins.RuntimeError'],
};

class ContractError extends Error {
  /**
   * @param {keyof REASONS} reason
   * @param {string} message
   * @param {{type?: string, attrs?: object, hint?: string}} [extra]
   */
  constructor(reason, message, extra = {}) {
    super(message);
    this.reason = reason;
    this.type = extra.type ?? REASONS[reason][1];
    this.attrs = extra.attrs ?? {};
    this.hint = extra.hint ?? '';
  }
}

const badArgument = (message) => new ContractError('ERROR_REASON_BAD_ARGUMENT', message);
const badSpec = (message) => new ContractError('ERROR_REASON_BAD_SPEC', message);
const notLoaded = (message) => new ContractError('ERROR_REASON_NOT_LOADED', message);
const unsupported = (message) => new ContractError('ERROR_REASON_UNSUPPORTED', message);

/** sway's ProbeError(probe, message), e.g. for a completion of zero tokens. */
function probeError(probe, message) {
  return new ContractError('ERROR_REASON_BAD_ARGUMENT', `probe '${probe}': ${message}`, {
    type: 'dlm_sway.core.errors.ProbeError',
    attrs: { probe },
  });
}

/**
 * Python's repr() of a string, so messages quote inputs exactly as sway's do
 * (single quotes unless the text holds one and no double quote).
 */
function pyRepr(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  const escapes = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };
  let body = '';
  for (const ch of text) {
    const code = ch.codePointAt(0);
    if (escapes[ch] !== undefined) body += escapes[ch];
    else if (ch === quote) body += `\\${ch}`;
    else if (code < 0x20 || code === 0x7f) body += `\\x${code.toString(16).padStart(2, '0')}`;
    else body += ch;
  }
  return `${quote}${body}${quote}`;
}

/** Any thrown value as a ContractError; unexpected ones are INTERNAL. */
function asContractError(error) {
  if (error instanceof ContractError) return error;
  const name = error instanceof Error ? error.name : typeof error;
  const message = error instanceof Error ? error.message : String(error);
  return new ContractError('ERROR_REASON_INTERNAL', `${name}: ${message}`, {
    type: `node.${name}`,
  });
}

/** Metadata values must be printable ASCII. */
function ascii(text) {
  return text.replace(/[^\x20-\x7e]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The status object a unary handler's callback takes to fail the call. */
function toStatus(error) {
  const err = asContractError(error);
  const metadata = new grpc.Metadata();
  metadata.set('sway-error-reason', err.reason);
  metadata.set('sway-error-type', err.type);
  metadata.set('sway-error-attrs', ascii(JSON.stringify(err.attrs)));
  metadata.set('sway-error-hint', ascii(err.hint));
  return { code: REASONS[err.reason][0], details: err.message, metadata };
}

/** The Error message of a failed ScoreBatch item. */
function toProtoError(error) {
  const err = asContractError(error);
  return {
    reason: err.reason,
    message: err.message,
    exception_type: err.type,
    attrs_json: JSON.stringify(err.attrs),
    hint: err.hint,
  };
}

module.exports = {
  ContractError,
  badArgument,
  badSpec,
  notLoaded,
  unsupported,
  probeError,
  pyRepr,
  asContractError,
  toStatus,
  toProtoError,
};
