'use strict';
/**
 * A character-level n-gram language model with Witten-Bell smoothing, and an
 * "adapter" that is a second count table mixed into the first.
 *
 * Tokens are characters: newline and printable ASCII, plus <unk> (id 0) for
 * anything else, so the vocabulary has 97 entries and tokenizing
 * `prompt + completion` always extends `prompt` by the completion's
 * characters. A context shorter than the model's order is padded with a
 * begin-of-text symbol that is never predicted.
 *
 * Views (what LoRA scaling means here):
 *   base        counts = B
 *   ft          counts = B + A            (A: the adapter's count table)
 *   scaled(lam) counts = max(0, B + lam*A) per entry: 0 is base, 1 is ft,
 *               1.25 overshoots, and a negative lam subtracts the adapter
 *   null(seed, init_scale, rank_scale)
 *               counts = B + w*R, where R is a random table of the adapter's
 *               size: every context the adapter has, with the adapter's mass
 *               there, spread over the vocabulary by seeded log-normal
 *               weights; w = init_scale * sqrt(rank_scale). Like LoRA noise
 *               of std init_scale*sqrt(rank_scale), the defaults (0.02, 1)
 *               give a weak random adapter (2% of the real one's mass), the
 *               yardstick sway measures the real adapter's effect against;
 *               init_scale 1 would be a random adapter as heavy as the real.
 * Probabilities come from the mixed counts by interpolated Witten-Bell
 * smoothing down to an add-one unigram, so every view is a proper
 * distribution. Mixed counts are fractional, so a context's number of types
 * counts each entry as min(count, 1): the model then moves continuously with
 * lam and with the null weight (a tiny random table must not make every
 * character a seen type). base/ft/scaled(0)/scaled(1) are computed by one
 * code path: scaled(0) equals base and scaled(1) equals ft bit for bit.
 */

const { seeded, gaussian } = require('./random');

const ALPHABET = ['\n'];
for (let code = 32; code <= 126; code += 1) ALPHABET.push(String.fromCharCode(code));
const UNK = 0;
const VOCAB = ['\uFFFD', ...ALPHABET];
const VOCAB_SIZE = VOCAB.length;
const CHAR_ID = new Map(ALPHABET.map((ch, i) => [ch, i + 1]));
const BOS = -1;
const NULL_SPREAD = 2.0; // std of the log-weights of a random table's entries
const CACHE_LIMIT = 50000;

/** Character ids of `text` (one per code point). */
function tokenize(text) {
  return Array.from(text, (ch) => CHAR_ID.get(ch) ?? UNK);
}

/** The text of `ids` (<unk> reads as U+FFFD). */
function detokenize(ids) {
  return ids.map((id) => VOCAB[id]).join('');
}

/** The key of the last `k` tokens before position `end` (begin-of-text padded). */
function contextKey(ids, end, k) {
  const parts = [];
  for (let i = end - k; i < end; i += 1) parts.push(i < 0 ? BOS : ids[i]);
  return parts.join(',');
}

/** Counts of every context of length 0..order-1 followed by each token. */
class CountTable {
  /**
   * @param {string} text
   * @param {number} order
   */
  constructor(text, order) {
    /** @type {Map<string, Map<number, number>>[]} one map per context length */
    this.levels = Array.from({ length: order }, () => new Map());
    const ids = tokenize(text);
    for (let i = 0; i < ids.length; i += 1) {
      for (let k = 0; k < order; k += 1) {
        const key = contextKey(ids, i, k);
        let row = this.levels[k].get(key);
        if (row === undefined) {
          row = new Map();
          this.levels[k].set(key, row);
        }
        row.set(ids[i], (row.get(ids[i]) ?? 0) + 1);
      }
    }
  }

  /** Total count after the context `key` of length `k` (0 when unseen). */
  mass(k, key) {
    const row = this.levels[k].get(key);
    if (row === undefined) return 0;
    let total = 0;
    for (const count of row.values()) total += count;
    return total;
  }
}

/** How one view mixes the tables. */
class Mixture {
  /**
   * @param {number} adapterWeight  weight of the adapter's counts (0 base, 1 ft)
   * @param {{seed: string, weight: number} | null} noise  a null adapter, if any
   */
  constructor(adapterWeight, noise) {
    this.adapterWeight = adapterWeight;
    this.noise = noise;
    this.key = noise === null ? `lam=${adapterWeight}` : `null=${noise.seed}:${noise.weight}`;
  }
}

class NgramModel {
  /**
   * @param {{base: string, adapter: string, order: number}} texts
   */
  constructor({ base, adapter, order }) {
    this.order = order;
    this.base = new CountTable(base, order);
    this.adapter = new CountTable(adapter, order);
    /** @type {Map<string, Float64Array>} */
    this.cache = new Map();
  }

  static base() {
    return new Mixture(0, null);
  }

  static finetuned() {
    return new Mixture(1, null);
  }

  static scaled(lam) {
    return new Mixture(lam, null);
  }

  static nullAdapter(seed, initScale, rankScale) {
    const weight = initScale * Math.sqrt(rankScale);
    return new Mixture(0, { seed: String(seed), weight });
  }

  /**
   * P(next token | ids[0..end)) under `mixture`, as probabilities.
   * @param {Mixture} mixture
   * @param {number[]} ids
   * @param {number} end
   * @returns {Float64Array}
   */
  distribution(mixture, ids, end) {
    const cacheKey = `${mixture.key}|${contextKey(ids, end, this.order - 1)}`;
    const cached = this.cache.get(cacheKey);
    if (cached !== undefined) return cached;
    const probs = new Float64Array(VOCAB_SIZE);
    const unigram = this.mixedCounts(mixture, 0, '');
    const n = unigram.reduce((a, b) => a + b, 0);
    for (let c = 0; c < VOCAB_SIZE; c += 1) probs[c] = (unigram[c] + 1) / (n + VOCAB_SIZE);
    for (let k = 1; k < this.order; k += 1) {
      const counts = this.mixedCounts(mixture, k, contextKey(ids, end, k));
      let total = 0;
      let types = 0;
      for (let c = 0; c < VOCAB_SIZE; c += 1) {
        total += counts[c];
        types += Math.min(counts[c], 1); // a fractional count is a fraction of a type
      }
      if (total <= 0) continue; // unseen context: keep the shorter one's estimate
      for (let c = 0; c < VOCAB_SIZE; c += 1) {
        probs[c] = (counts[c] + types * probs[c]) / (total + types);
      }
    }
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(cacheKey, probs);
    return probs;
  }

  /** The view's counts after context `key` of length `k`, one entry per token. */
  mixedCounts(mixture, k, key) {
    const counts = new Float64Array(VOCAB_SIZE);
    addRow(counts, this.base.levels[k].get(key), 1);
    if (mixture.adapterWeight !== 0) {
      addRow(counts, this.adapter.levels[k].get(key), mixture.adapterWeight);
      for (let c = 0; c < VOCAB_SIZE; c += 1) counts[c] = Math.max(0, counts[c]);
    }
    if (mixture.noise !== null && mixture.noise.weight !== 0) {
      const mass = this.adapter.mass(k, key);
      if (mass > 0) {
        const weights = randomRow(mixture.noise.seed, k, key);
        const scale = mixture.noise.weight * mass;
        for (let c = 0; c < VOCAB_SIZE; c += 1) counts[c] += scale * weights[c];
      }
    }
    return counts;
  }
}

function addRow(counts, row, weight) {
  if (row === undefined) return;
  for (const [id, count] of row) counts[id] += weight * count;
}

/** Seeded log-normal weights over the vocabulary that sum to 1 (a random row). */
function randomRow(seed, k, key) {
  const normal = gaussian(seeded(`null|${seed}|${k}|${key}`));
  const weights = new Float64Array(VOCAB_SIZE);
  let total = 0;
  for (let c = 0; c < VOCAB_SIZE; c += 1) {
    weights[c] = Math.exp(NULL_SPREAD * normal());
    total += weights[c];
  }
  for (let c = 0; c < VOCAB_SIZE; c += 1) weights[c] /= total;
  return weights;
}

module.exports = { NgramModel, Mixture, tokenize, detokenize, VOCAB_SIZE, UNK };
