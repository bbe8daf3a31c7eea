'use strict';
/**
 * sway's four operations on one view of the n-gram model, with sway's rules:
 * logprob_of sums the completion's tokens (zero completion tokens is an
 * error), rolling_logprob has one entry per token after the first,
 * next_token_dist is a descending top-k with a three-state tail, and
 * generate is greedy at temperature 0 and seeded otherwise.
 *
 * Arrays leave as little-endian bytes (int64 ids, float32 logprobs), the
 * contract's wire form.
 */

const { seeded } = require('./random');
const { tokenize, detokenize, VOCAB_SIZE } = require('./ngram');
const { badArgument, probeError, pyRepr } = require('./errors');

const MAX_PROMPT_TOKENS = 4096;
const TAIL_FLOOR = 1e-12;

/** Reject texts longer than the advertised limit (bounded work per request). */
function tokensOf(text, what) {
  const ids = tokenize(text);
  if (ids.length > MAX_PROMPT_TOKENS) {
    throw badArgument(
      `${what} has ${ids.length} tokens; this model accepts at most ${MAX_PROMPT_TOKENS}`,
    );
  }
  return ids;
}

function int64Bytes(ids) {
  const buffer = Buffer.alloc(ids.length * 8);
  ids.forEach((id, i) => buffer.writeBigInt64LE(BigInt(id), i * 8));
  return buffer;
}

function float32Bytes(values) {
  const buffer = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => buffer.writeFloatLE(v, i * 4));
  return buffer;
}

/** Sum of log P(completion tokens | everything before them). */
function logprobOf(model, mixture, prompt, completion) {
  if (completion === '') {
    // sway's own words (its HF backend's), so callers match one message whichever worker served.
    throw probeError(
      'logprob_of',
      `completion tokenized to zero tokens (prompt=${pyRepr(prompt)}, completion='')`,
    );
  }
  const promptLength = tokensOf(prompt, 'prompt').length;
  const ids = tokensOf(prompt + completion, 'prompt + completion');
  let total = 0;
  for (let t = promptLength; t < ids.length; t += 1) {
    total += Math.log(model.distribution(mixture, ids, t)[ids[t]]);
  }
  return { logprob: total };
}

/** log P(token i | tokens < i) for every token after the first. */
function rollingLogprob(model, mixture, text) {
  const ids = tokensOf(text, 'text');
  const logprobs = [];
  let total = 0;
  for (let t = 1; t < ids.length; t += 1) {
    const lp = Math.log(model.distribution(mixture, ids, t)[ids[t]]);
    logprobs.push(lp);
    total += lp;
  }
  return {
    rolling: {
      token_ids: int64Bytes(ids),
      logprobs: float32Bytes(logprobs),
      num_tokens: ids.length,
      total_logprob: total,
    },
  };
}

/** Ids of `probs` by descending probability, ties broken by the lower id. */
function ranked(probs) {
  return Array.from(probs.keys()).sort((a, b) => probs[b] - probs[a] || a - b);
}

/** The top-k of the next-token distribution, and the mass outside it. */
function nextTokenDist(model, mixture, prompt, topK) {
  if (!Number.isInteger(topK) || topK <= 0) {
    throw badArgument(`top_k must be a positive integer, got ${topK}`);
  }
  const ids = tokensOf(prompt, 'prompt');
  const probs = model.distribution(mixture, ids, ids.length);
  const order = ranked(probs);
  const k = Math.min(topK, VOCAB_SIZE);
  const top = order.slice(0, k);
  const dist = {
    token_ids: int64Bytes(top),
    logprobs: float32Bytes(top.map((id) => Math.log(probs[id]))),
    vocab_size: VOCAB_SIZE,
  };
  if (k < VOCAB_SIZE) {
    // Summing the rest is exact where 1 - sum(top) would cancel.
    const rest = order.slice(k).reduce((sum, id) => sum + probs[id], 0);
    dist.tail_logprob = rest > TAIL_FLOOR ? Math.log(rest) : 0.0;
  }
  return { dist };
}

/** Greedy at temperature 0; otherwise nucleus sampling from a generator seeded by `seed`. */
function generate(model, mixture, op) {
  const maxNew = op.max_new_tokens;
  if (!Number.isInteger(maxNew) || maxNew < 1) {
    throw badArgument(`max_new_tokens must be >= 1, got ${maxNew}`);
  }
  if (!(Number.isFinite(op.temperature) && op.temperature >= 0)) {
    throw badArgument(`temperature must be finite and >= 0, got ${op.temperature}`);
  }
  if (!(op.top_p > 0 && op.top_p <= 1)) {
    throw badArgument(`top_p must be in (0, 1], got ${op.top_p}`);
  }
  const ids = tokensOf(op.prompt, 'prompt');
  const start = ids.length;
  const uniform = seeded(`generate|${op.seed}`);
  for (let n = 0; n < maxNew; n += 1) {
    const probs = model.distribution(mixture, ids, ids.length);
    ids.push(op.temperature === 0 ? ranked(probs)[0] : sample(probs, op, uniform));
  }
  return { text: detokenize(ids.slice(start)) };
}

function sample(probs, op, uniform) {
  const order = ranked(probs);
  const best = Math.log(probs[order[0]]); // shift so a tiny temperature cannot underflow to 0
  const tempered = order.map((id) => Math.exp((Math.log(probs[id]) - best) / op.temperature));
  const total = tempered.reduce((a, b) => a + b, 0);
  let kept = 0;
  let mass = 0;
  while (kept < order.length && mass < op.top_p * total) {
    mass += tempered[kept];
    kept += 1;
  }
  let u = uniform() * mass;
  for (let i = 0; i < kept; i += 1) {
    u -= tempered[i];
    if (u < 0) return order[i];
  }
  return order[kept - 1];
}

module.exports = {
  MAX_PROMPT_TOKENS,
  logprobOf,
  rollingLogprob,
  nextTokenDist,
  generate,
};
