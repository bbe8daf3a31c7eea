'use strict';
/**
 * Seeded randomness that is the same on every machine and every run.
 *
 * The contract promises that a request's answer is a pure function of the
 * request (a restarted worker must answer a retried call bit for bit), so
 * nothing here may depend on Math.random, time or insertion order: a
 * generator is derived from a SHA-256 of a text key, and sfc32 (a small,
 * well-tested 32-bit generator) produces the stream.
 */

const crypto = require('crypto');

/**
 * A generator of floats in [0, 1), seeded by `key`.
 * @param {string} key
 * @returns {() => number}
 */
function seeded(key) {
  const digest = crypto.createHash('sha256').update(key).digest();
  let a = digest.readUInt32LE(0);
  let b = digest.readUInt32LE(4);
  let c = digest.readUInt32LE(8);
  let d = digest.readUInt32LE(12);
  const next = () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t / 4294967296;
  };
  for (let i = 0; i < 12; i += 1) next(); // let the seed's bits mix before use
  return next;
}

/**
 * Standard normal draws (Box-Muller) from a uniform generator.
 * @param {() => number} uniform
 * @returns {() => number}
 */
function gaussian(uniform) {
  return () => {
    const u1 = 1 - uniform(); // (0, 1]: log is finite
    const u2 = uniform();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  };
}

/** A short stable digest of a text, for cache identities. */
function digest(text) {
  return crypto.createHash('sha256').update(text).digest('hex').slice(0, 16);
}

module.exports = { seeded, gaussian, digest };
