'use strict';
/**
 * The swayplugin.v1.DifferentialBackend service over the n-gram model.
 *
 * Every Score request names its view, so a request is answered from the
 * request alone (no per-connection state): that is what lets the host retry
 * a call on a restarted worker. Node runs one handler at a time and views
 * share nothing mutable, so concurrent views are safe.
 */

const fs = require('fs');
const { BASE, ADAPTER } = require('./corpus');
const { digest } = require('./random');
const { NgramModel, VOCAB_SIZE } = require('./ngram');
const scoring = require('./scoring');
const {
  badArgument,
  badSpec,
  notLoaded,
  unsupported,
  asContractError,
  toStatus,
  toProtoError,
} = require('./errors');

const PROTOCOL_VERSION = 1;
const WORKER_KIND = 'node-ngram';
const MAX_MESSAGE_BYTES = 256 * 1024 * 1024;
const MAX_BATCH = 512;
const DEFAULT_ORDER = 4;
const OPTIONS = { order: 'n-gram order, 1..8 (default 4)' };
const PROTOCOLS = [
  'DifferentialBackend',
  'NullCalibratedBackend',
  'ScalableDifferentialBackend',
  'PreflightCheckable',
];

/** Text of a spec field: the embedded corpus when empty or "builtin", else a file. */
function readText(field, value, builtin) {
  if (value === '' || value === 'builtin') return builtin;
  try {
    return fs.readFileSync(value, 'utf8');
  } catch (error) {
    throw badSpec(
      `${field} must be "builtin" or a readable UTF-8 text file to train on; ` +
        `cannot read ${JSON.stringify(value)}: ${error.message}`,
    );
  }
}

function parseOrder(options) {
  const unknown = Object.keys(options).filter((key) => !(key in OPTIONS));
  if (unknown.length) {
    throw badSpec(
      `unknown option(s) ${unknown.join(', ')}; this worker takes: ` +
        Object.entries(OPTIONS)
          .map(([k, v]) => `${k} (${v})`)
          .join(', '),
    );
  }
  const raw = options.order ?? String(DEFAULT_ORDER);
  const order = Number(raw);
  if (!Number.isInteger(order) || order < 1 || order > 8) {
    throw badSpec(`option order must be an integer in 1..8, got ${JSON.stringify(raw)}`);
  }
  return order;
}

/** The view a request names, as a mixture of the model's tables. */
function mixtureOf(view) {
  switch (view?.kind) {
    case 'base':
      return NgramModel.base();
    case 'ft':
      return NgramModel.finetuned();
    case 'scaled': {
      const lam = view.scaled.lam;
      if (!Number.isFinite(lam)) throw badArgument(`lam must be finite, got ${lam}`);
      return NgramModel.scaled(lam);
    }
    case 'null': {
      const { seed, init_scale: initScale, rank_scale: rankScale } = view.null;
      if (!(rankScale > 0 && Number.isFinite(rankScale))) {
        throw badArgument(`rank_scale must be positive and finite; got ${rankScale}`);
      }
      if (!(initScale >= 0 && Number.isFinite(initScale))) {
        throw badArgument(`init_scale must be finite and >= 0; got ${initScale}`);
      }
      return NgramModel.nullAdapter(seed, initScale, rankScale);
    }
    default:
      throw badArgument('the request names no view: set one of base, ft, scaled or null');
  }
}

class Backend {
  constructor({ onShutdown, log }) {
    this.onShutdown = onShutdown;
    this.log = log;
    /** @type {NgramModel | null} */
    this.model = null;
    this.spec = null;
    this.identity = '';
  }

  describe() {
    const loaded = this.model !== null;
    return {
      protocol_version: PROTOCOL_VERSION,
      worker_kind: WORKER_KIND,
      runtime: {
        language: 'node',
        runtime: `node ${process.version}`,
        pid: process.pid,
        executable: process.execPath,
      },
      framework_versions: {
        node: process.versions.node,
        '@grpc/grpc-js': require('@grpc/grpc-js/package.json').version,
        '@grpc/proto-loader': require('@grpc/proto-loader/package.json').version,
      },
      capabilities: {
        differential: true,
        scalable: true,
        null_calibrated: true,
        preflight: true,
        generate: true,
        batch: false,
        concurrent_views: true,
        logprob_of: true,
        rolling_logprob: true,
        next_token_dist: true,
        protocols: PROTOCOLS,
      },
      limits: {
        max_batch: MAX_BATCH,
        max_message_bytes: MAX_MESSAGE_BYTES,
        max_top_k: 0,
        max_prompt_tokens: scoring.MAX_PROMPT_TOKENS,
      },
      model: {
        loaded,
        vocab_size: loaded ? VOCAB_SIZE : 0,
        device: 'cpu',
        dtype: 'float64',
        cache_identity: this.identity,
        base: this.spec?.base ?? '',
        adapter_path: this.spec?.adapter ?? '',
      },
      safe_for_concurrent_views: true,
      // The spec of the last Load, so a host attaching to this worker learns what it serves.
      loaded_spec: this.spec ?? undefined,
    };
  }

  load(spec) {
    const order = parseOrder(spec.options ?? {});
    const base = readText('base', spec.base, BASE);
    const adapter = readText('adapter', spec.adapter, ADAPTER);
    this.model = new NgramModel({ base, adapter, order });
    this.spec = spec;
    this.identity = `${WORKER_KIND}:order=${order}:base=${digest(base)}:adapter=${digest(adapter)}`;
    this.log('INFO', `loaded a ${order}-gram model (${this.identity})`);
  }

  /** One Score request to its response message (throws a ContractError). */
  score(request) {
    refuseResident('a request naming adapter', request.adapter);
    const mixture = mixtureOf(request.view);
    if (!request.op) {
      throw badArgument(
        'the request names no operation: set one of logprob_of, rolling_logprob, ' +
          'next_token_dist or generate',
      );
    }
    const model = this.model;
    if (model === null) {
      throw notLoaded('no model is loaded: call Load with a model spec first');
    }
    const op = request[request.op];
    switch (request.op) {
      case 'logprob_of':
        return scoring.logprobOf(model, mixture, op.prompt, op.completion);
      case 'rolling_logprob':
        return scoring.rollingLogprob(model, mixture, op.text);
      case 'next_token_dist':
        return scoring.nextTokenDist(model, mixture, op.prompt, op.top_k);
      default:
        return scoring.generate(model, mixture, op);
    }
  }

  preflight() {
    if (this.model === null) throw notLoaded('no model is loaded: call Load first');
    for (const [label, mixture] of [
      ['base', NgramModel.base()],
      ['ft', NgramModel.finetuned()],
    ]) {
      const probs = this.model.distribution(mixture, [], 0);
      const bad = probs.filter((p) => !(p > 0 && Number.isFinite(p))).length;
      if (bad) return { ok: false, reason: `${label} view has ${bad} non-finite logprob(s)` };
    }
    return { ok: true, reason: '' };
  }

  /** The handlers grpc-js calls, each turning a thrown error into the contract's status. */
  handlers() {
    const unary = (fn) => (call, callback) => {
      try {
        callback(null, fn(call.request));
      } catch (error) {
        const err = asContractError(error);
        if (err.reason === 'ERROR_REASON_INTERNAL') this.log('ERROR', error.stack ?? err.message);
        callback(toStatus(err));
      }
    };
    return {
      Describe: unary(() => this.describe()),
      Load: unary((request) => {
        if (request.keep_resident) {
          refuseResident('a Load with keep_resident of adapter', request.spec?.adapter || '?');
        }
        this.load(request.spec ?? {});
        return { description: this.describe() };
      }),
      Score: unary((request) => this.score(request)),
      ScoreBatch: unary((request) => ({
        items: request.requests.map((item) => {
          try {
            return { result: this.score(item) };
          } catch (error) {
            return { error: toProtoError(error) };
          }
        }),
      })),
      Preflight: unary(() => this.preflight()),
      Shutdown: unary(() => {
        setImmediate(() => this.onShutdown('Shutdown requested by the host'));
        return {};
      }),
    };
  }
}

/**
 * This worker holds one n-gram adapter (no resident_adapters capability), so
 * a request naming an adapter, or a Load adding one beside it, is refused
 * rather than silently served with the adapter it has.
 */
function refuseResident(what, adapter) {
  if (!adapter) return;
  throw unsupported(
    `the ${WORKER_KIND} worker holds one adapter and cannot serve ${what} ` +
      `${JSON.stringify(adapter)} (it lacks the resident_adapters capability); ` +
      'run one worker per adapter instead',
  );
}

module.exports = { Backend, MAX_MESSAGE_BYTES };
