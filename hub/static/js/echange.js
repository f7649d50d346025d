// Maillon — sealed liaison forms in the browser (docs/envelope.md, docs/browser.md).
//
// One dependency-free ES module on WebCrypto: strict base64url and JSON, device keys (Ed25519
// signs, X25519 receives), HPKE base mode written from RFC 9180 (DHKEM(X25519, HKDF-SHA256),
// HKDF-SHA256, AES-256-GCM), envelope v1 (seal, verify, open), the key directory replica
// (signed checkpoints, RFC 6962 trees, inclusion and consistency proofs, split-view check),
// and the recovery backup. It is the second implementation of docs/envelope.md beside
// exchange/envelope.py; both pass the same test vectors, and each opens what the other seals.
//
// Every failure is an ExchangeError with the stable code of docs/envelope.md and a French
// message for people. Nothing here touches the page: the page scripts (fiches.js) do.

const subtle = globalThis.crypto.subtle;
const utf8 = new TextEncoder();
// ignoreBOM: a leading U+FEFF stays in the text (and is refused) as Python refuses it.
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export const FORMAT = "maillon/fiche/1";
export const JWS_TYPE = "maillon-fiche+jws";
export const MAX_ENVELOPE_BYTES = 8 * 1024 * 1024;
// Attachments (docs/envelope.md): each travels once under its own key, carried by the views
// that hold the field it supports.
export const MAX_FILES = 8;
export const MAX_FILE_BYTES = 4 * 1024 * 1024;
// Each type and the bytes its files start with (as exchange.envelope.FILE_MAGIC).
const FILE_MAGIC = {
  "application/pdf": [0x25, 0x50, 0x44, 0x46, 0x2d],
  "image/png": [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a],
  "image/jpeg": [0xff, 0xd8, 0xff],
};
export const FILE_TYPES = new Set(Object.keys(FILE_MAGIC));

/** Whether ``data`` starts as a file of ``type`` must. */
export function looksLike(type, data) {
  const magic = FILE_MAGIC[type];
  return Boolean(magic) && data.length >= magic.length && magic.every((b, i) => data[i] === b);
}
export const MAX_MANIFEST_BYTES = 256 * 1024;
export const MAX_VIEWS = 16;
export const MAX_RECIPIENTS = 200;
export const MAX_FIELDS = 64;
export const MAX_VALUE_CHARS = 20000;
export const MAX_CHECKPOINT_CHARS = 4096;
export const MAX_ENTRY_BYTES = 8192;
export const ROTATION_GRACE_MS = 30 * 24 * 3600 * 1000;
// What a recipient can only fail for if the sender signed one thing and delivered another: the
// only codes reported to the hub as a charter violation (as exchange.envelope.SENDER_FAULTS).
// A changed digest is not one: the relay checked every digest on accepting the form.
export const SENDER_FAULTS = new Set(["seal_invalid", "view_invalid", "fields_mismatch"]);

const KEY_ID_PREFIX = "dk_";
const SUITES = { X25519: "x25519", HYBRID: "mlkem768-x25519" };
const PUBLIC_SIZE = { [SUITES.X25519]: 32, [SUITES.HYBRID]: 1184 + 32 };
const ENC_SIZE = { [SUITES.X25519]: 32, [SUITES.HYBRID]: 1088 + 32 };
const TAG = 16;
const VIEW_KEY_SIZE = 32;
const NONCE_SIZE = 12;

const RE = {
  form: /^f-[a-z2-7]{26}$/,
  view: /^v[1-9][0-9]?$/,
  file: /^p[1-9]$/,
  field: /^[a-z][a-z0-9_]{0,63}\.[a-z][a-z0-9_]{0,63}$/,
  caseRef: /^C-[0-9A-Z]{4}-[0-9A-Z]{4}$/,
  charter: /^[a-z0-9][a-z0-9_-]{0,63}$/,
  digest: /^sha256:[0-9a-f]{64}$/,
  word: /^[a-z][a-z0-9_]{0,63}$/,
  publicId: /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$/,
  keyId: /^dk_[A-Za-z0-9_-]{43}$/,
  time: /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/,
  owner: /^(user|client):[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
  org: /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
};

// -- errors ----------------------------------------------------------------------------------

/** A refusal with a stable code (docs/envelope.md) and a French message. */
export class ExchangeError extends Error {
  constructor(code, message, kind = "verification") {
    super(message);
    this.name = "ExchangeError";
    this.code = code;
    this.kind = kind; // "malformed" (unreadable input) or "verification" (a check failed)
  }
}

function malformed(code, message) {
  return new ExchangeError(code, message, "malformed");
}

function refused(code, message) {
  return new ExchangeError(code, message, "verification");
}

// -- bytes -----------------------------------------------------------------------------------

/** The concatenation of byte arrays. */
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Whether two byte arrays are equal (in time independent of where they differ). */
export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function unhex(text) {
  if (!/^([0-9a-f]{2})*$/i.test(text)) throw new TypeError("not hexadecimal");
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function binary(bytes) {
  // String.fromCharCode on slices: one call per byte would be slow for a 1 MiB envelope.
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return text;
}

/** ``bytes`` as base64url without padding. */
export function b64e(bytes) {
  return btoa(binary(bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * Strict base64url (no padding, canonical: the bytes must re-encode to the very same text), as
 * exchange.encoding.b64d; ``maxBytes`` refuses a value too long before decoding it.
 */
export function b64d(text, what, maxBytes = null) {
  if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
    throw malformed("invalid_base64", `${what} n'est pas en base64url.`);
  }
  if (maxBytes !== null && text.length > Math.floor((maxBytes * 4 + 2) / 3)) {
    throw malformed("too_large", `${what} est trop long.`);
  }
  const raw = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  if (b64e(out) !== text) throw malformed("invalid_base64", `${what} n'est pas en base64url.`);
  return out;
}

function b64std(bytes) {
  return btoa(binary(bytes));
}

function unb64std(text, what) {
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw malformed("invalid_base64", `${what} n'est pas en base64.`);
  }
  const raw = atob(text);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  if (b64std(out) !== text) throw malformed("invalid_base64", `${what} n'est pas en base64.`);
  return out;
}

function i2osp(value, length) {
  const out = new Uint8Array(length);
  for (let i = length - 1; i >= 0; i--) {
    out[i] = value & 0xff;
    value = Math.floor(value / 256);
  }
  return out;
}

export function randomBytes(n) {
  return globalThis.crypto.getRandomValues(new Uint8Array(n));
}

// -- JSON ------------------------------------------------------------------------------------

/** A JSON number that is not a safe integer: readable, but never a value Maillon accepts. */
export class JsonNumber {
  constructor(text) {
    this.text = text;
  }
}

/**
 * A JSON object from UTF-8 bytes (or text), read strictly as exchange.encoding does: a repeated
 * member, invalid UTF-8 or anything beyond ``maxBytes`` is refused. Objects come back without
 * a prototype, so a member named "__proto__" is only a member.
 */
export function parseJsonObject(data, what, maxBytes) {
  const bytes = typeof data === "string" ? utf8.encode(data) : data;
  if (bytes.length > maxBytes) throw malformed("too_large", `${what} est trop volumineux.`);
  let text;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw malformed("invalid_json", `${what} n'est pas du JSON valide.`);
  }
  const value = new JsonReader(text, what).document();
  if (value === null || typeof value !== "object" || Array.isArray(value) || value instanceof JsonNumber) {
    throw malformed("invalid_json", `${what} doit être un objet JSON.`);
  }
  return value;
}

class JsonReader {
  constructor(text, what) {
    this.text = text;
    this.at = 0;
    this.what = what;
    this.depth = 0;
  }

  fail() {
    return malformed("invalid_json", `${this.what} n'est pas du JSON valide.`);
  }

  space() {
    while (this.at < this.text.length && " \t\n\r".includes(this.text[this.at])) this.at++;
  }

  document() {
    const value = this.value();
    this.space();
    if (this.at !== this.text.length) throw this.fail();
    return value;
  }

  value() {
    this.space();
    const c = this.text[this.at];
    if (c === "{") return this.object();
    if (c === "[") return this.array();
    if (c === '"') return this.string();
    for (const [word, value] of [["true", true], ["false", false], ["null", null]]) {
      if (this.text.startsWith(word, this.at)) {
        this.at += word.length;
        return value;
      }
    }
    const match = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(this.text.slice(this.at, this.at + 400));
    if (!match || match[0] === "" || match[0] === "-") throw this.fail();
    this.at += match[0].length;
    if (match[2] === undefined && match[3] === undefined) {
      const n = Number(match[0]);
      if (Number.isSafeInteger(n)) return n;
    }
    return new JsonNumber(match[0]);
  }

  nest() {
    if (++this.depth > 100) throw this.fail();
  }

  object() {
    this.nest();
    this.at++;
    const out = Object.create(null);
    this.space();
    if (this.text[this.at] === "}") {
      this.at++;
      this.depth--;
      return out;
    }
    for (;;) {
      this.space();
      if (this.text[this.at] !== '"') throw this.fail();
      const key = this.string();
      if (Object.prototype.hasOwnProperty.call(out, key)) {
        // Two readers could take either value: one signed meaning only.
        throw malformed("duplicate_member", `${this.what} répète un membre.`);
      }
      this.space();
      if (this.text[this.at++] !== ":") throw this.fail();
      out[key] = this.value();
      this.space();
      const next = this.text[this.at++];
      if (next === "}") break;
      if (next !== ",") throw this.fail();
    }
    this.depth--;
    return out;
  }

  array() {
    this.nest();
    this.at++;
    const out = [];
    this.space();
    if (this.text[this.at] === "]") {
      this.at++;
      this.depth--;
      return out;
    }
    for (;;) {
      out.push(this.value());
      this.space();
      const next = this.text[this.at++];
      if (next === "]") break;
      if (next !== ",") throw this.fail();
    }
    this.depth--;
    return out;
  }

  string() {
    this.at++;
    let out = "";
    for (;;) {
      const c = this.text[this.at++];
      if (c === undefined) throw this.fail();
      if (c === '"') return out;
      if (c < " ") throw this.fail(); // control characters must be escaped
      if (c !== "\\") {
        out += c;
        continue;
      }
      const e = this.text[this.at++];
      const simple = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" }[e];
      if (simple !== undefined) {
        out += simple;
      } else if (e === "u" && /^[0-9a-fA-F]{4}$/.test(this.text.slice(this.at, this.at + 4))) {
        out += String.fromCharCode(parseInt(this.text.slice(this.at, this.at + 4), 16));
        this.at += 4;
      } else {
        throw this.fail();
      }
    }
  }
}

/**
 * The one byte string of a JSON value where bytes are hashed: sorted keys, no whitespace, UTF-8
 * (exchange.encoding.canonical_json; values hold strings, safe integers, booleans, null, lists
 * and objects).
 */
export function canonicalJson(value) {
  return utf8.encode(canonicalText(value));
}

function canonicalText(value) {
  if (value === null || typeof value === "boolean" || typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new TypeError("only safe integers are canonical");
    return String(value);
  }
  if (Array.isArray(value)) return "[" + value.map(canonicalText).join(",") + "]";
  if (typeof value === "object" && !(value instanceof JsonNumber)) {
    // Code point order, as Python sorts str keys (UTF-16 order differs only beyond the BMP).
    const keys = Object.keys(value).sort((a, b) => {
      const x = Array.from(a, (ch) => ch.codePointAt(0));
      const y = Array.from(b, (ch) => ch.codePointAt(0));
      for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
      return x.length - y.length;
    });
    return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonicalText(value[k])).join(",") + "}";
  }
  throw new TypeError("not a canonical JSON value");
}

/** ``obj`` as an object holding exactly ``required`` and possibly ``optional`` members. */
export function members(obj, what, required, optional = []) {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj) || obj instanceof JsonNumber) {
    throw malformed("invalid_member", `${what} doit être un objet.`);
  }
  const keys = Object.keys(obj);
  const missing = required.filter((k) => !keys.includes(k)).sort();
  if (missing.length) throw malformed("missing_member", `${what} : membre manquant « ${missing[0]} ».`);
  const unknown = keys.filter((k) => !required.includes(k) && !optional.includes(k)).sort();
  if (unknown.length) throw malformed("unknown_member", `${what} : membre inconnu « ${unknown[0]} ».`);
  return obj;
}

function text(value, pattern, what) {
  if (typeof value !== "string" || !pattern.test(value)) throw malformed("invalid_member", `${what} est invalide.`);
  return value;
}

// -- primitives ------------------------------------------------------------------------------

export async function sha256(data) {
  return new Uint8Array(await subtle.digest("SHA-256", data));
}

async function hmac(key, data) {
  const k = await subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await subtle.sign("HMAC", k, data));
}

// HKDF through HMAC (RFC 5869): HPKE needs Extract and Expand apart, which WebCrypto's HKDF
// does not offer. An empty salt is HashLen zero bytes (an HMAC key is zero-padded anyway).
async function extract(salt, ikm) {
  return hmac(salt.length ? salt : new Uint8Array(32), ikm);
}

async function expand(prk, info, length) {
  const out = [];
  let previous = new Uint8Array(0);
  for (let i = 1; out.length * 32 < length; i++) {
    previous = await hmac(prk, concat(previous, info, Uint8Array.of(i)));
    out.push(previous);
  }
  return concat(...out).subarray(0, length);
}

async function aesKey(raw, usage) {
  return subtle.importKey("raw", raw, "AES-GCM", false, [usage]);
}

export async function aesGcmSeal(key, nonce, aad, plaintext) {
  const k = await aesKey(key, "encrypt");
  return new Uint8Array(await subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: aad }, k, plaintext));
}

export async function aesGcmOpen(key, nonce, aad, ciphertext) {
  const k = await aesKey(key, "decrypt");
  return new Uint8Array(await subtle.decrypt({ name: "AES-GCM", iv: nonce, additionalData: aad }, k, ciphertext));
}

// PKCS#8 wrappers of raw 32-byte private keys (RFC 8410): how WebCrypto imports and exports them.
const PKCS8_PREFIX = {
  X25519: unhex("302e020100300506032b656e04220420"),
  Ed25519: unhex("302e020100300506032b657004220420"),
};

/** A private key (Ed25519 or X25519) from its raw 32 bytes. */
export async function importPrivate(algorithm, raw, extractable = false) {
  const usages = algorithm === "Ed25519" ? ["sign"] : ["deriveBits"];
  return subtle.importKey("pkcs8", concat(PKCS8_PREFIX[algorithm], raw), { name: algorithm }, extractable, usages);
}

async function exportPrivateRaw(key) {
  const der = new Uint8Array(await subtle.exportKey("pkcs8", key));
  return der.slice(der.length - 32);
}

const P = 2n ** 255n - 19n;

function littleEndian(bytes) {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]);
  return n;
}

// X25519 u-coordinates of small order (curve and twist): every shared secret with such a key is
// zero. As exchange.hpke, as libsodium's list.
const LOW_ORDER_U = new Set(
  [
    0n,
    1n,
    325606250916557431795983626356110631294008115727848805560023387167927233504n,
    39382357235489614581723060781553021112529911719440698176882885853963445705823n,
    P - 1n,
  ].map(String),
);

function lowOrderX25519(raw) {
  const u = littleEndian(raw) & ((1n << 255n) - 1n);
  return LOW_ORDER_U.has(String(u % P));
}

// Ed25519 points of small order, and non-canonical encodings (y >= p): with such a key a
// signature (R = identity, S = 0) verifies over anything. As exchange.keys.
const SMALL_ORDER_Y = new Set(
  [
    0n,
    1n,
    P - 1n,
    2707385501144840649318225287225658788936804267575313519463743609750303402022n,
    P - 2707385501144840649318225287225658788936804267575313519463743609750303402022n,
  ].map(String),
);

function weakEd25519(raw) {
  const y = littleEndian(raw) & ((1n << 255n) - 1n);
  return y >= P || SMALL_ORDER_Y.has(String(y));
}

async function ed25519Public(raw) {
  return subtle.importKey("raw", raw, { name: "Ed25519" }, true, ["verify"]);
}

async function x25519Public(raw) {
  if (raw.length !== 32 || lowOrderX25519(raw)) throw malformed("invalid_key", "Clé publique invalide (ordre faible).");
  return subtle.importKey("raw", raw, { name: "X25519" }, true, []);
}

async function dh(privateKey, publicRaw) {
  try {
    const pub = await x25519Public(publicRaw);
    return new Uint8Array(await subtle.deriveBits({ name: "X25519", public: pub }, privateKey, 256));
  } catch (error) {
    if (error instanceof ExchangeError) throw error;
    // WebCrypto refuses an all-zero shared secret (RFC 7748 §6.1): a low-order point.
    throw refused("seal_invalid", "Échange de clés X25519 impossible avec cette clé.");
  }
}

// -- HPKE (RFC 9180), base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM ------

const HPKE_V1 = utf8.encode("HPKE-v1");
const KEM_SUITE = concat(utf8.encode("KEM"), i2osp(0x0020, 2));
const HPKE_SUITE = concat(utf8.encode("HPKE"), i2osp(0x0020, 2), i2osp(0x0001, 2), i2osp(0x0002, 2));

async function labeledExtract(suite, salt, label, ikm) {
  return extract(salt, concat(HPKE_V1, suite, utf8.encode(label), ikm));
}

async function labeledExpand(suite, prk, label, info, length) {
  return expand(prk, concat(i2osp(length, 2), HPKE_V1, suite, utf8.encode(label), info), length);
}

async function extractAndExpand(dhSecret, kemContext) {
  const prk = await labeledExtract(KEM_SUITE, new Uint8Array(0), "eae_prk", dhSecret);
  return labeledExpand(KEM_SUITE, prk, "shared_secret", kemContext, 32);
}

async function keySchedule(sharedSecret, info) {
  const empty = new Uint8Array(0);
  const pskIdHash = await labeledExtract(HPKE_SUITE, empty, "psk_id_hash", empty);
  const infoHash = await labeledExtract(HPKE_SUITE, empty, "info_hash", info);
  const context = concat(Uint8Array.of(0), pskIdHash, infoHash); // mode_base = 0
  const secret = await labeledExtract(HPKE_SUITE, sharedSecret, "secret", empty);
  return {
    keyScheduleContext: context,
    secret,
    key: await labeledExpand(HPKE_SUITE, secret, "key", context, 32),
    baseNonce: await labeledExpand(HPKE_SUITE, secret, "base_nonce", context, 12),
  };
}

/** An ephemeral X25519 key pair for one encapsulation (its private key never leaves memory). */
export async function ephemeralX25519() {
  const pair = await subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
  return { privateKey: pair.privateKey, publicRaw: new Uint8Array(await subtle.exportKey("raw", pair.publicKey)) };
}

/**
 * SetupBaseS (RFC 9180 §5.1.1): the sender's context for the recipient public key ``pkR``.
 * ``ephemeral`` is for test vectors only; a fresh key is made otherwise.
 */
export async function setupBaseS(pkR, info, ephemeral = null) {
  const eph = ephemeral ?? (await ephemeralX25519());
  const dhSecret = await dh(eph.privateKey, pkR);
  const enc = eph.publicRaw;
  const sharedSecret = await extractAndExpand(dhSecret, concat(enc, pkR));
  return { enc, sharedSecret, ...(await keySchedule(sharedSecret, info)) };
}

/** SetupBaseR (RFC 9180 §5.1.1): the recipient's context from ``enc``. */
export async function setupBaseR(enc, skR, pkR, info) {
  const dhSecret = await dh(skR, enc);
  const sharedSecret = await extractAndExpand(dhSecret, concat(enc, pkR));
  return { sharedSecret, ...(await keySchedule(sharedSecret, info)) };
}

/** Single-shot seal (empty aad, sequence 0): ``enc || ciphertext``. */
export async function hpkeSeal(pkR, info, plaintext, ephemeral = null) {
  const ctx = await setupBaseS(pkR, info, ephemeral);
  return concat(ctx.enc, await aesGcmSeal(ctx.key, ctx.baseNonce, new Uint8Array(0), plaintext));
}

/** Single-shot open of ``enc || ciphertext`` with the recipient's private and public keys. */
export async function hpkeOpen(skR, pkR, sealed, info) {
  if (sealed.length < 32 + TAG) throw refused("seal_invalid", "La clé scellée est tronquée.");
  let ctx;
  try {
    ctx = await setupBaseR(sealed.subarray(0, 32), skR, pkR, info);
  } catch (error) {
    // A low-order ephemeral key is the sender's doing, as any key that does not open.
    if (error instanceof ExchangeError) throw refused("seal_invalid", "La clé scellée ne s'ouvre pas avec cette clé d'appareil.");
    throw error;
  }
  try {
    return await aesGcmOpen(ctx.key, ctx.baseNonce, new Uint8Array(0), sealed.subarray(32));
  } catch {
    throw refused("seal_invalid", "La clé scellée ne s'ouvre pas avec cette clé d'appareil.");
  }
}

// -- device keys -----------------------------------------------------------------------------

const ID_DOMAIN = utf8.encode("maillon/device-key/1\u0000");
const FINGERPRINT_DOMAIN = utf8.encode("maillon/numero-de-securite/1\u0000");

/** The public keys of a device, its key id and numéro de sécurité (exchange.keys.DeviceKey). */
export class DeviceKey {
  constructor(sign, suite, kem, keyId, fingerprint) {
    this.sign = sign;
    this.suite = suite;
    this.kem = kem;
    this.keyId = keyId;
    this.fingerprint = fingerprint;
    Object.freeze(this);
  }

  /** A checked key: weak keys are refused (invalid_key), the id and number computed. */
  static async create(sign, suite, kem) {
    if (!(suite in PUBLIC_SIZE)) throw malformed("unknown_suite", `Suite de chiffrement inconnue : ${String(suite).slice(0, 40)}.`);
    if (sign.length !== 32 || weakEd25519(sign)) throw malformed("invalid_key", "Clé de signature invalide.");
    try {
      await ed25519Public(sign);
    } catch {
      throw malformed("invalid_key", "Clé de signature invalide.");
    }
    if (kem.length !== PUBLIC_SIZE[suite]) throw malformed("invalid_key", `Clé publique de taille incorrecte pour la suite ${suite}.`);
    // The X25519 key, alone or the hybrid's last 32 bytes (the ML-KEM half is not checked here).
    await x25519Public(kem.subarray(kem.length - 32));
    const canonical = canonicalJson(recordOf(sign, suite, kem));
    const keyId = KEY_ID_PREFIX + b64e(await sha256(concat(ID_DOMAIN, canonical)));
    const digest = new Uint8Array(await subtle.digest("SHA-512", concat(FINGERPRINT_DOMAIN, canonical)));
    const groups = [];
    for (let i = 0; i < 60; i += 5) {
      let n = 0;
      for (let j = i; j < i + 5; j++) n = n * 256 + digest[j]; // 40 bits: exact in a double
      groups.push(String(n % 100000).padStart(5, "0"));
    }
    return new DeviceKey(sign, suite, kem, keyId, groups.join(" "));
  }

  /** A public record read strictly (exchange.keys.DeviceKey.from_record). */
  static async fromRecord(record) {
    const obj = members(record, "la clé d'appareil", ["v", "sign", "kem"]);
    if (obj.v !== 1) throw malformed("unknown_version", "Version de clé d'appareil inconnue.");
    const kem = members(obj.kem, "la clé de chiffrement", ["suite", "pk"]);
    if (typeof kem.suite !== "string" || !(kem.suite in PUBLIC_SIZE)) {
      throw malformed("unknown_suite", `Suite de chiffrement inconnue : ${String(kem.suite).slice(0, 40)}.`);
    }
    return DeviceKey.create(b64d(obj.sign, "sign", 32), kem.suite, b64d(kem.pk, "pk", 2048));
  }

  record() {
    return recordOf(this.sign, this.suite, this.kem);
  }

  /** Whether this browser can seal to the key (it does X25519, not the post-quantum hybrid). */
  get sealable() {
    return this.suite === SUITES.X25519;
  }

  async verify(signature, data) {
    const key = await ed25519Public(this.sign);
    if (signature.length !== 64 || !(await subtle.verify({ name: "Ed25519" }, key, signature, data))) {
      throw refused("signature_invalid", "La signature ne correspond pas à la clé de l'appareil.");
    }
  }
}

function recordOf(sign, suite, kem) {
  return { v: 1, sign: b64e(sign), kem: { suite, pk: b64e(kem) } };
}

/**
 * A device's private keys in the browser: non-extractable CryptoKeys (kept in IndexedDB as they
 * are), and the public half. The HPKE public key is kept beside them: opening needs it.
 */
export class DeviceSecrets {
  constructor(signing, receiving, publicKey) {
    this.signing = signing;
    this.receiving = receiving;
    this.public = publicKey;
  }

  async sign(data) {
    return new Uint8Array(await subtle.sign({ name: "Ed25519" }, this.signing, data));
  }

  /** Back from what IndexedDB kept (structured clone keeps CryptoKeys non-extractable). */
  static async fromStored(stored) {
    const pub = await DeviceKey.fromRecord(stored.record);
    return new DeviceSecrets(stored.signing, stored.receiving, pub);
  }

  toStored() {
    return { signing: this.signing, receiving: this.receiving, record: this.public.record(), keyId: this.public.keyId };
  }

  /** From a private record (recovery backup, test vectors): imported non-extractable. */
  static async fromPrivateRecord(record) {
    const obj = members(record, "les clés privées", ["v", "sign", "kem"]);
    if (obj.v !== 1) throw malformed("unknown_version", "Version de clés privées inconnue.");
    const kem = members(obj.kem, "la clé de déchiffrement", ["suite", "sk"]);
    if (kem.suite !== SUITES.X25519) {
      throw malformed("unknown_suite", "Ce navigateur ne sait utiliser que des clés x25519.");
    }
    const signRaw = b64d(obj.sign, "sign", 32);
    const kemRaw = b64d(kem.sk, "sk", 32);
    if (signRaw.length !== 32 || kemRaw.length !== 32) throw malformed("invalid_key", "Clé privée de taille incorrecte.");
    // Imported extractable only long enough to read the public halves, then again without.
    const signX = await importPrivate("Ed25519", signRaw, true);
    const kemX = await importPrivate("X25519", kemRaw, true);
    const pub = await DeviceKey.create(await publicOf(signX), SUITES.X25519, await publicOf(kemX));
    return new DeviceSecrets(await importPrivate("Ed25519", signRaw), await importPrivate("X25519", kemRaw), pub);
  }
}

async function publicOf(privateKey) {
  // WebCrypto derives no public key from a private one: the JWK export carries both halves.
  const jwk = await subtle.exportKey("jwk", privateKey);
  return b64d(jwk.x, "x", 32);
}

/**
 * New device keys. The private halves are made extractable only to be written once into the
 * recovery backup (``privateRecord``), then re-imported non-extractable: what IndexedDB keeps
 * cannot be read out by a script, only used.
 */
export async function generateDevice() {
  const signing = await subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const receiving = await subtle.generateKey({ name: "X25519" }, true, ["deriveBits"]);
  const signRaw = await exportPrivateRaw(signing.privateKey);
  const kemRaw = await exportPrivateRaw(receiving.privateKey);
  const privateRecord = { v: 1, sign: b64e(signRaw), kem: { suite: SUITES.X25519, sk: b64e(kemRaw) } };
  const secrets = await DeviceSecrets.fromPrivateRecord(privateRecord);
  signRaw.fill(0);
  kemRaw.fill(0);
  return { secrets, privateRecord };
}

// -- recovery backup -------------------------------------------------------------------------

// The hub keeps the backup, so it can guess offline as long as it likes: longer than the
// Python keystore's 12 (a file the partner keeps), and PBKDF2 at OWASP's cost below.
export const MIN_PASSPHRASE_CHARS = 16;
// PBKDF2-HMAC-SHA256 at 600,000 iterations (OWASP's 2023 figure for this hash): WebCrypto has
// neither scrypt nor Argon2. A reader accepts 100,000 to 5,000,000 (docs/browser.md).
export const PBKDF2_ITERATIONS = 600000;
const RECOVERY = "maillon/recovery/1";

function normalisePassphrase(passphrase) {
  const nfc = passphrase.normalize("NFC");
  if (Array.from(nfc).length < MIN_PASSPHRASE_CHARS) {
    throw malformed("passphrase_too_short", `La phrase de passe doit compter au moins ${MIN_PASSPHRASE_CHARS} caractères.`);
  }
  return utf8.encode(nfc);
}

async function pbkdf2(passphrase, salt, iterations) {
  const base = await subtle.importKey("raw", passphrase, "PBKDF2", false, ["deriveBits"]);
  return new Uint8Array(await subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt, iterations }, base, 256));
}

function recoveryHeader(salt, iterations) {
  return { format: RECOVERY, kdf: { name: "pbkdf2-sha256", iterations, salt: b64e(salt) } };
}

/** The recovery backup of ``privateRecord`` under ``passphrase`` (the hub keeps it, unread). */
export async function lockRecovery(privateRecord, passphrase, iterations = PBKDF2_ITERATIONS) {
  const secret = normalisePassphrase(passphrase);
  const salt = randomBytes(16);
  const nonce = randomBytes(NONCE_SIZE);
  const header = recoveryHeader(salt, iterations);
  const key = await pbkdf2(secret, salt, iterations);
  const ciphertext = await aesGcmSeal(key, nonce, canonicalJson(header), canonicalJson({ device: privateRecord }));
  return utf8.encode(JSON.stringify({ ...header, nonce: b64e(nonce), ciphertext: b64e(ciphertext) }));
}

/** The keys in a recovery backup: non-extractable DeviceSecrets, or keystore_locked. */
export async function unlockRecovery(data, passphrase) {
  let document, kdf, salt, nonce, ciphertext;
  try {
    document = members(parseJsonObject(data, "la sauvegarde", 64 * 1024), "la sauvegarde", ["format", "kdf", "nonce", "ciphertext"]);
    kdf = members(document.kdf, "kdf", ["name", "iterations", "salt"]);
    salt = b64d(kdf.salt, "salt", 64);
    nonce = b64d(document.nonce, "nonce", NONCE_SIZE);
    ciphertext = b64d(document.ciphertext, "ciphertext", 64 * 1024);
  } catch (error) {
    if (error instanceof ExchangeError) throw malformed("keystore_damaged", "La sauvegarde de récupération est illisible.");
    throw error;
  }
  if (document.format !== RECOVERY) throw malformed("keystore_kind", "Ce fichier n'est pas une sauvegarde de récupération.");
  const iterations = kdf.iterations;
  if (kdf.name !== "pbkdf2-sha256" || !Number.isSafeInteger(iterations) || iterations < 100000 || iterations > 5000000) {
    throw malformed("kdf_params", "Paramètres de dérivation refusés.");
  }
  if (salt.length < 16 || nonce.length !== NONCE_SIZE) throw malformed("keystore_damaged", "La sauvegarde de récupération est illisible.");
  const key = await pbkdf2(normalisePassphrase(passphrase), salt, iterations);
  let plaintext;
  try {
    plaintext = await aesGcmOpen(key, nonce, canonicalJson(recoveryHeader(salt, iterations)), ciphertext);
  } catch {
    // A wrong passphrase and a changed byte are one answer: the file reveals nothing more.
    throw refused("keystore_locked", "Phrase de récupération incorrecte, ou sauvegarde modifiée.");
  }
  const body = members(parseJsonObject(plaintext, "les clés", 64 * 1024), "les clés", ["device"]);
  return DeviceSecrets.fromPrivateRecord(body.device);
}

// -- envelope v1 -----------------------------------------------------------------------------

function info(form, view, device) {
  return utf8.encode([FORMAT, form, view, device].join("\u0000"));
}

function aad(form, view) {
  return utf8.encode([FORMAT, "view", form, view].join("\u0000"));
}

function fileAad(form, file) {
  return utf8.encode([FORMAT, "file", form, file].join("\u0000"));
}

// As exchange.envelope: no control character (C0, DEL, C1), bidirectional override or isolate,
// or lone surrogate in a file name.
const NAME_REFUSED = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function fileNameOk(name) {
  // 1 to 200 characters (code points).
  return typeof name === "string" && Array.from(name).length >= 1 && Array.from(name).length <= 200 && !NAME_REFUSED.test(name);
}

/** A file's name as it may travel: refused characters replaced, at most 200 characters. */
export function travellingName(name) {
  const cleaned = Array.from(String(name)).map((c) => (NAME_REFUSED.test(c) ? "_" : c)).slice(0, 200).join("");
  return cleaned || "piece-jointe";
}

/** A random form id: ``f-`` and 26 base32 characters (128 bits), the send's idempotency key. */
export function newFormId() {
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  const bytes = randomBytes(16);
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return "f-" + out;
}

function parseManifest(obj) {
  members(obj, "le manifeste", ["v", "form", "case", "charter", "consent", "purpose", "sender", "created", "directory", "views"], ["files"]);
  if (obj.v !== 1) throw malformed("unknown_version", "Version de manifeste inconnue.");
  const charter = members(obj.charter, "charter", ["id", "version", "digest"]);
  if (!Number.isSafeInteger(charter.version) || charter.version < 1 || charter.version >= 2 ** 31) {
    throw malformed("invalid_member", "charter.version est invalide.");
  }
  const sender = members(obj.sender, "sender", ["device", "user", "org"]);
  const consent = obj.consent === null ? null : text(obj.consent, RE.publicId, "consent");
  if (typeof obj.directory !== "string" || obj.directory.length === 0 || obj.directory.length > MAX_CHECKPOINT_CHARS) {
    throw malformed("invalid_member", "directory est invalide.");
  }
  const created = text(obj.created, RE.time, "created");
  if (Number.isNaN(Date.parse(created)) || new Date(created).toISOString().replace(".000Z", "Z") !== created) {
    throw malformed("invalid_member", "created est invalide.");
  }
  if (!Array.isArray(obj.views) || obj.views.length < 1 || obj.views.length > MAX_VIEWS) {
    throw malformed("invalid_member", "views est invalide.");
  }
  const views = obj.views.map((item, i) => parseView(item, i + 1));
  const seen = new Set();
  for (const view of views) {
    for (const r of view.recipients) {
      if (seen.has(r.device)) {
        throw malformed("duplicate_recipient", `L'appareil ${r.device} figure deux fois parmi les destinataires.`);
      }
      seen.add(r.device);
    }
  }
  if (seen.size > MAX_RECIPIENTS) throw malformed("too_large", "recipients est trop long.");
  const files = "files" in obj ? parseFiles(obj.files, views) : [];
  return {
    form: text(obj.form, RE.form, "form"),
    case: text(obj.case, RE.caseRef, "case"),
    charter: {
      id: text(charter.id, RE.charter, "charter.id"),
      version: charter.version,
      digest: text(charter.digest, RE.digest, "charter.digest"),
    },
    consent,
    purpose: text(obj.purpose, RE.word, "purpose"),
    sender: {
      device: text(sender.device, RE.keyId, "sender.device"),
      user: text(sender.user, RE.publicId, "sender.user"),
      org: text(sender.org, RE.publicId, "sender.org"),
    },
    created,
    directory: obj.directory,
    views,
    files,
  };
}

function parseFiles(items, views) {
  if (!Array.isArray(items) || items.length < 1 || items.length > MAX_FILES) throw malformed("invalid_member", "files est invalide.");
  const listed = new Set(views.flatMap((v) => v.fields));
  return items.map((item, i) => {
    const part = members(item, "une pièce jointe", ["id", "field", "digest"]);
    const id = text(part.id, RE.file, "files.id");
    const field = text(part.field, RE.field, "files.field");
    const digest = b64d(part.digest, "files.digest", 32);
    if (id !== `p${i + 1}` || !listed.has(field) || digest.length !== 32) throw malformed("invalid_member", "files est invalide.");
    return { id, field, digest };
  });
}

function parseView(item, position) {
  const view = members(item, "une vue", ["id", "fields", "digest", "recipients"]);
  const id = text(view.id, RE.view, "views.id");
  if (id !== `v${position}`) throw malformed("invalid_member", "views.id est invalide.");
  const fields = view.fields;
  if (!Array.isArray(fields) || fields.length < 1 || fields.length > MAX_FIELDS) {
    throw malformed("invalid_member", "views.fields est invalide.");
  }
  fields.forEach((f) => text(f, RE.field, "views.fields"));
  const sorted = [...new Set(fields)].sort();
  if (sorted.length !== fields.length || sorted.some((f, i) => f !== fields[i])) {
    throw malformed("invalid_member", "views.fields est invalide.");
  }
  if (!Array.isArray(view.recipients) || view.recipients.length < 1 || view.recipients.length > MAX_RECIPIENTS) {
    throw malformed("invalid_member", "views.recipients est invalide.");
  }
  const digest = b64d(view.digest, "views.digest", 32);
  if (digest.length !== 32) throw malformed("invalid_member", "views.digest est invalide.");
  return { id, fields: [...fields], digest, recipients: view.recipients.map(parseRecipient) };
}

function parseRecipient(item) {
  const r = members(item, "un destinataire", ["device", "suite", "key"]);
  if (typeof r.suite !== "string" || !(r.suite in ENC_SIZE)) {
    throw malformed("unknown_suite", `Suite de chiffrement inconnue : ${String(r.suite).slice(0, 40)}.`);
  }
  const sealed = b64d(r.key, "recipients.key", 4096);
  if (sealed.length !== ENC_SIZE[r.suite] + VIEW_KEY_SIZE + TAG) throw malformed("invalid_member", "recipients.key est invalide.");
  return { device: text(r.device, RE.keyId, "recipients.device"), suite: r.suite, sealedKey: sealed };
}

/** Read an envelope strictly (exchange.envelope.parse); nothing verified yet. */
export function parseEnvelope(data) {
  const outer = members(parseJsonObject(data, "l'enveloppe", MAX_ENVELOPE_BYTES), "l'enveloppe", ["format", "manifest", "views"], ["files"]);
  if (outer.format !== FORMAT) throw malformed("unknown_version", "Format d'enveloppe inconnu.");
  const jws = outer.manifest;
  if (typeof jws !== "string" || jws.length > MAX_MANIFEST_BYTES * 2) throw malformed("invalid_member", "manifest est invalide.");
  const parts = jws.split(".");
  if (parts.length !== 3) throw malformed("invalid_jws", "Le manifeste n'est pas un JWS compact.");
  const headerBytes = b64d(parts[0], "l'en-tête JWS", 1024);
  const payload = b64d(parts[1], "le manifeste", MAX_MANIFEST_BYTES);
  const signature = b64d(parts[2], "la signature", 64);
  const header = members(parseJsonObject(headerBytes, "l'en-tête JWS", 1024), "l'en-tête JWS", ["alg", "kid", "typ"]);
  if (header.alg !== "Ed25519") {
    // Pinned: "none", HMAC or RSA never reach a verifier (RFC 8725 §3.1).
    throw malformed("alg_not_allowed", "Algorithme de signature refusé : seul Ed25519 est accepté.");
  }
  if (header.typ !== JWS_TYPE) throw malformed("invalid_jws", "Type de JWS inattendu.");
  text(header.kid, RE.keyId, "kid");
  const manifest = parseManifest(parseJsonObject(payload, "le manifeste", MAX_MANIFEST_BYTES));
  const viewsJson = outer.views;
  if (viewsJson === null || typeof viewsJson !== "object" || Array.isArray(viewsJson) || viewsJson instanceof JsonNumber) {
    throw malformed("invalid_member", "views est invalide.");
  }
  const expected = manifest.views.map((v) => v.id);
  const given = Object.keys(viewsJson).sort();
  if (given.length !== expected.length || [...expected].sort().some((id, i) => id !== given[i])) {
    throw malformed("views_mismatch", "Les vues chiffrées ne correspondent pas à celles du manifeste.");
  }
  const views = {};
  for (const id of expected) views[id] = b64d(viewsJson[id], "une vue chiffrée", MAX_ENVELOPE_BYTES);
  const wanted = manifest.files.map((f) => f.id);
  const filesJson = "files" in outer ? outer.files : Object.create(null);
  const isObject = filesJson !== null && typeof filesJson === "object" && !Array.isArray(filesJson) && !(filesJson instanceof JsonNumber);
  const fileIds = isObject ? Object.keys(filesJson).sort() : [];
  if (!isObject || ("files" in outer && !wanted.length) || fileIds.length !== wanted.length || [...wanted].sort().some((id, i) => id !== fileIds[i])) {
    throw malformed("views_mismatch", "Les pièces jointes ne correspondent pas à celles du manifeste.");
  }
  const files = {};
  for (const id of wanted) files[id] = b64d(filesJson[id], "une pièce jointe", MAX_FILE_BYTES + NONCE_SIZE + TAG);
  return { jws, header, manifest, views, files, signingInput: utf8.encode(`${parts[0]}.${parts[1]}`), signature };
}

/** The checks the hub and every recipient make first (exchange.envelope.verify). */
export async function verifyEnvelope(envelope, senderKey) {
  const manifest = envelope.manifest;
  if (!(envelope.header.kid === manifest.sender.device && manifest.sender.device === senderKey.keyId)) {
    throw refused("sender_key_mismatch", "La clé de l'expéditeur ne correspond pas au manifeste.");
  }
  await senderKey.verify(envelope.signature, envelope.signingInput);
  for (const view of manifest.views) {
    if (!equalBytes(await sha256(envelope.views[view.id]), view.digest)) {
      throw refused("digest_mismatch", `La vue ${view.id} ne correspond pas à son empreinte signée.`);
    }
  }
  for (const part of manifest.files) {
    if (!equalBytes(await sha256(envelope.files[part.id]), part.digest)) {
      throw refused("digest_mismatch", `La pièce jointe ${part.id} ne correspond pas à son empreinte signée.`);
    }
  }
  return manifest;
}

function checkValues(values) {
  const fields = Object.keys(values);
  if (fields.length < 1 || fields.length > MAX_FIELDS) throw new TypeError("a view holds 1 to 64 fields");
  for (const field of fields) {
    const value = values[field];
    if (!RE.field.test(field)) throw new TypeError(`not a field id: ${field}`);
    const scalar = value === null || typeof value === "boolean" || typeof value === "string" || Number.isSafeInteger(value);
    if (!scalar) throw new TypeError(`field ${field} does not hold a scalar`);
    if (typeof value === "string" && Array.from(value).length > MAX_VALUE_CHARS) {
      throw malformed("too_large", `Le champ ${field} dépasse ${MAX_VALUE_CHARS} caractères.`);
    }
  }
}

/**
 * Seal a form (exchange.envelope.seal): each view encrypted under a fresh key, that key sealed
 * to each of its recipients, the manifest signed. ``views``: [{values, recipients: [DeviceKey]}].
 * The result is parsed back and verified before it is returned, as the Python sender does.
 * ``progress(done, total)`` is told after each sealed key.
 */
export async function seal({ secrets, user, org, caseRef, charter, consent = null, purpose, directory, views, now = new Date(), formId = null, progress = null, files = [] }) {
  const form = formId ?? newFormId();
  const total = views.reduce((n, v) => n + v.recipients.length, 0);
  let done = 0;
  if (files.length > MAX_FILES) throw malformed("too_large", `Au plus ${MAX_FILES} pièces jointes.`);
  const listed = new Set(views.flatMap((v) => Object.keys(v.values)));
  const parts = [];
  const partCiphertexts = {};
  for (const [index, file] of files.entries()) {
    if (!RE.field.test(file.field) || !listed.has(file.field)) throw new TypeError(`no view holds ${file.field}`);
    if (!FILE_TYPES.has(file.type)) throw malformed("file_type", "Pièce jointe refusée : seuls les PDF, PNG et JPEG voyagent.");
    if (!fileNameOk(file.name)) throw malformed("file_name", "Nom de pièce jointe invalide (1 à 200 caractères).");
    if (file.data.length > MAX_FILE_BYTES) throw malformed("too_large", `Une pièce jointe dépasse ${MAX_FILE_BYTES / 1048576} Mio.`);
    if (!looksLike(file.type, file.data)) throw malformed("file_type", `« ${file.name} » n'est pas un fichier ${file.type}.`);
    const id = `p${index + 1}`;
    const key = randomBytes(VIEW_KEY_SIZE);
    const nonce = randomBytes(NONCE_SIZE);
    const ciphertext = concat(nonce, await aesGcmSeal(key, nonce, fileAad(form, id), file.data));
    partCiphertexts[id] = ciphertext;
    parts.push({ id, field: file.field, digest: await sha256(ciphertext), key, name: file.name, type: file.type });
  }
  const entries = [];
  const ciphertexts = {};
  for (const [index, plan] of views.entries()) {
    checkValues(plan.values);
    const viewId = `v${index + 1}`;
    const key = randomBytes(VIEW_KEY_SIZE);
    const nonce = randomBytes(NONCE_SIZE);
    const content = { fields: plan.values };
    const carried = parts.filter((p) => p.field in plan.values);
    if (carried.length) content.files = Object.fromEntries(carried.map((p) => [p.id, { key: b64e(p.key), name: p.name, type: p.type }]));
    const plaintext = canonicalJson(content);
    const ciphertext = concat(nonce, await aesGcmSeal(key, nonce, aad(form, viewId), plaintext));
    ciphertexts[viewId] = ciphertext;
    const recipients = [];
    for (const device of plan.recipients) {
      if (!device.sealable) throw refused("unknown_suite", "Ce navigateur ne sait pas sceller pour une clé post-quantique.");
      const sealed = await hpkeSeal(device.kem, info(form, viewId, device.keyId), key);
      recipients.push({ device: device.keyId, suite: device.suite, key: b64e(sealed) });
      if (progress) progress(++done, total);
    }
    key.fill(0);
    entries.push({ id: viewId, fields: Object.keys(plan.values).sort(), digest: b64e(await sha256(ciphertext)), recipients });
  }
  const manifest = {
    v: 1,
    form,
    case: caseRef,
    charter: { id: charter.id, version: charter.version, digest: charter.digest },
    consent,
    purpose,
    sender: { device: secrets.public.keyId, user, org },
    created: now.toISOString().replace(/\.\d{3}Z$/, "Z"),
    directory,
    views: entries,
  };
  if (parts.length) manifest.files = parts.map((p) => ({ id: p.id, field: p.field, digest: b64e(p.digest) }));
  parts.forEach((p) => p.key.fill(0));
  const header = { alg: "Ed25519", kid: secrets.public.keyId, typ: JWS_TYPE };
  const signingInput = b64e(utf8.encode(JSON.stringify(header))) + "." + b64e(utf8.encode(JSON.stringify(manifest)));
  const signature = await secrets.sign(utf8.encode(signingInput));
  const viewsText = {};
  for (const [id, bytes] of Object.entries(ciphertexts)) viewsText[id] = b64e(bytes);
  const outer = { format: FORMAT, manifest: `${signingInput}.${b64e(signature)}`, views: viewsText };
  if (parts.length) outer.files = Object.fromEntries(Object.entries(partCiphertexts).map(([id, bytes]) => [id, b64e(bytes)]));
  const body = utf8.encode(JSON.stringify(outer));
  // Read back as a recipient would: one outside the limits fails here, not at the hub, and the
  // signature is checked once with the public key before it leaves the device.
  await verifyEnvelope(parseEnvelope(body), secrets.public);
  return { form, body };
}

/**
 * Open a received form with this device's keys (exchange.envelope.open_form); ``senderKey`` is
 * the key the verified directory gives for the sender (see senderKey()).
 */
export async function openForm(envelope, secrets, senderKey) {
  const parsed = envelope instanceof Uint8Array ? parseEnvelope(envelope) : envelope;
  const manifest = await verifyEnvelope(parsed, senderKey);
  const me = secrets.public;
  const mine = [];
  for (const view of manifest.views) for (const r of view.recipients) if (r.device === me.keyId) mine.push([view, r]);
  if (mine.length !== 1) throw refused("not_a_recipient", "Cet appareil n'est pas destinataire de cette fiche.");
  const [view, recipient] = mine[0];
  if (recipient.suite !== me.suite) throw refused("seal_invalid", "La clé scellée n'est pas de la suite de l'appareil.");
  const key = await hpkeOpen(secrets.receiving, me.kem, recipient.sealedKey, info(manifest.form, view.id, me.keyId));
  if (key.length !== VIEW_KEY_SIZE) throw refused("seal_invalid", "La clé de vue n'a pas la bonne taille.");
  const ciphertext = parsed.views[view.id];
  if (ciphertext.length < NONCE_SIZE + TAG) throw refused("view_invalid", "La vue chiffrée est tronquée.");
  let plaintext;
  try {
    plaintext = await aesGcmOpen(key, ciphertext.subarray(0, NONCE_SIZE), aad(manifest.form, view.id), ciphertext.subarray(NONCE_SIZE));
  } catch {
    throw refused("view_invalid", "La vue ne se déchiffre pas.");
  }
  let values, body;
  try {
    body = members(parseJsonObject(plaintext, "la vue", MAX_ENVELOPE_BYTES), "la vue", ["fields"], ["files"]);
    values = body.fields;
  } catch {
    throw refused("fields_mismatch", "La vue déchiffrée est illisible.");
  }
  if (values === null || typeof values !== "object" || Array.isArray(values) || values instanceof JsonNumber) {
    throw refused("fields_mismatch", "Les champs déchiffrés ne sont pas ceux que le manifeste annonce.");
  }
  const names = Object.keys(values).sort();
  if (names.length !== view.fields.length || names.some((f, i) => f !== view.fields[i])) {
    throw refused("fields_mismatch", "Les champs déchiffrés ne sont pas ceux que le manifeste annonce.");
  }
  for (const value of Object.values(values)) {
    if (!(value === null || typeof value === "boolean" || typeof value === "string" || Number.isSafeInteger(value))) {
      throw refused("fields_mismatch", "Une valeur de la vue n'est pas simple.");
    }
  }
  const plain = {};
  for (const name of names) plain[name] = values[name];
  const files = await openFiles(parsed, view, "files" in body ? body.files : Object.create(null));
  return { manifest, view: view.id, values: plain, files };
}

/** The attachments of the view's fields, exactly, each opened with the key the view carries. */
async function openFiles(envelope, view, carried) {
  const expected = envelope.manifest.files.filter((p) => view.fields.includes(p.field));
  const given = carried !== null && typeof carried === "object" && !Array.isArray(carried) && !(carried instanceof JsonNumber) ? Object.keys(carried).sort() : null;
  const ids = expected.map((p) => p.id).sort();
  if (!given || given.length !== ids.length || ids.some((id, i) => id !== given[i])) {
    throw refused("fields_mismatch", "Les pièces jointes de la vue ne sont pas celles de ses champs.");
  }
  const out = {};
  for (const part of expected) {
    let entry, key;
    try {
      entry = members(carried[part.id], "une pièce jointe", ["key", "name", "type"]);
      key = b64d(entry.key, "key", VIEW_KEY_SIZE);
    } catch {
      throw refused("fields_mismatch", "Pièce jointe illisible.");
    }
    if (key.length !== VIEW_KEY_SIZE || !FILE_TYPES.has(entry.type) || !fileNameOk(entry.name)) throw refused("fields_mismatch", "Pièce jointe illisible.");
    const ciphertext = envelope.files[part.id];
    let data;
    try {
      data = await aesGcmOpen(key, ciphertext.subarray(0, NONCE_SIZE), fileAad(envelope.manifest.form, part.id), ciphertext.subarray(NONCE_SIZE));
    } catch {
      throw refused("view_invalid", `La pièce jointe ${part.id} ne se déchiffre pas.`);
    }
    if (!looksLike(entry.type, data)) throw refused("fields_mismatch", `La pièce jointe ${part.id} n'est pas du type annoncé.`);
    out[part.id] = { field: part.field, name: entry.name, type: entry.type, data };
  }
  return out;
}

// -- key directory ---------------------------------------------------------------------------

/** A signed-note verifier key ``name+keyid+base64(0x01 || key)`` (audit.checkpoint). */
export async function noteVerifier(vkey) {
  const parts = String(vkey).trim().split("+");
  if (parts.length < 3) throw malformed("invalid_key", "Clé de l'annuaire invalide.");
  const [name, keyIdHex] = parts;
  const raw = unb64std(parts.slice(2).join("+"), "la clé de l'annuaire");
  if (!/^[^\s+]{1,255}$/.test(name) || raw.length !== 33 || raw[0] !== 0x01) throw malformed("invalid_key", "Clé de l'annuaire invalide.");
  const keyId = (await sha256(concat(utf8.encode(name + "\n"), raw))).subarray(0, 4);
  if (hex(keyId) !== keyIdHex) throw malformed("invalid_key", "Clé de l'annuaire invalide.");
  return { name, keyId, key: await ed25519Public(raw.subarray(1)), vkey: String(vkey).trim() };
}

/**
 * Verify a checkpoint note signed by ``verifier`` and return {origin, size, root, time}; as
 * signed-note requires, other keys' lines are ignored and a failing line of this key rejects.
 */
export async function verifyCheckpoint(verifier, note) {
  const bad = () => refused("checkpoint_invalid", "Le point de contrôle de l'annuaire n'est pas signé par lui.");
  if (typeof note !== "string" || /[\u0000-\u0009\u000b-\u001f]/.test(note) || !note.endsWith("\n")) throw bad();
  const cut = note.lastIndexOf("\n\n");
  if (cut < 0) throw bad();
  const body = note.slice(0, cut + 1);
  const lines = note.slice(cut + 2).split("\n").slice(0, -1);
  if (lines.length < 1 || lines.length > 32) throw bad();
  let found = false;
  for (const line of lines) {
    // Every line is read as audit.checkpoint reads it, those of other keys too.
    if (!line.startsWith("\u2014 ")) throw bad();
    const rest = line.slice(2);
    const cut = rest.indexOf(" ");
    const name = cut < 0 ? rest : rest.slice(0, cut);
    let raw;
    try {
      raw = unb64std(cut < 0 ? "" : rest.slice(cut + 1), "signature");
    } catch {
      throw bad();
    }
    if (!/^[^\s+]{1,255}$/.test(name) || raw.length < 5) throw bad();
    if (name !== verifier.name || !equalBytes(raw.subarray(0, 4), verifier.keyId)) continue;
    if (!(await subtle.verify({ name: "Ed25519" }, verifier.key, raw.subarray(4), utf8.encode(body)))) throw bad();
    found = true;
  }
  if (!found) throw bad();
  const m = /^([^\s+]{1,255})\n(0|[1-9][0-9]{0,15})\n([A-Za-z0-9+/]{43}=)\ntimestamp (\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z)\n$/.exec(body);
  if (!m || m[1] !== verifier.name) throw bad();
  return { origin: m[1], size: Number(m[2]), root: unb64std(m[3], "root"), time: m[4] };
}

export async function leafHash(data) {
  return sha256(concat(Uint8Array.of(0), data));
}

async function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(1), left, right));
}

/** The RFC 6962 root of a list of leaf hashes (a lone last node is promoted unchanged). */
export async function rootFromLeafHashes(hashes) {
  if (!hashes.length) return sha256(new Uint8Array(0));
  let level = hashes;
  while (level.length > 1) {
    const upper = [];
    for (let i = 0; i + 1 < level.length; i += 2) upper.push(nodeHash(level[i], level[i + 1]));
    const resolved = await Promise.all(upper);
    if (level.length % 2) resolved.push(level[level.length - 1]);
    level = resolved;
  }
  return level[0];
}

function proofError(message) {
  return refused("proof_invalid", `Preuve de l'annuaire invalide : ${message}.`);
}

/** RFC 9162 §2.1.3.2: refuse unless ``proof`` shows leaf ``index`` of ``size`` under ``root``. */
export async function verifyInclusion(leaf, index, size, proof, root) {
  if (!(index >= 0 && index < size)) throw proofError("indice hors de l'arbre");
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) throw proofError("trop longue");
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn !== 0 && fn % 2 === 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw proofError("trop courte");
  if (!equalBytes(r, root)) throw proofError("elle ne mène pas à la racine signée");
}

/** RFC 9162 §2.1.4.2: refuse unless the tree of ``oldSize`` is a prefix of the one of ``newSize``. */
export async function verifyConsistency(oldSize, newSize, oldRoot, newRoot, proof) {
  if (!(oldSize >= 0 && oldSize <= newSize)) throw proofError("un arbre ne rétrécit pas");
  if (oldSize === newSize) {
    if (proof.length || !equalBytes(oldRoot, newRoot)) throw proofError("tailles égales, racines différentes");
    return;
  }
  if (oldSize === 0) {
    if (proof.length) throw proofError("l'arbre vide n'a pas de preuve");
    return;
  }
  if (!proof.length) throw proofError("vide");
  const path = [...proof];
  if ((oldSize & (oldSize - 1)) === 0) path.unshift(oldRoot);
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) throw proofError("trop longue");
    if (fn % 2 === 1 || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn !== 0 && fn % 2 === 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw proofError("trop courte");
  if (!equalBytes(fr, oldRoot) || !equalBytes(sr, newRoot)) throw proofError("elle ne relie pas les deux racines signées");
}

/** A directory entry read strictly; it must be in canonical form (exchange.directory.parse_entry). */
export async function parseEntry(data) {
  const obj = parseJsonObject(data, "l'entrée d'annuaire", MAX_ENTRY_BYTES);
  let canonical;
  try {
    canonical = canonicalJson(obj);
  } catch {
    canonical = null;
  }
  if (canonical === null || !equalBytes(canonical, data)) {
    throw malformed("not_canonical", "L'entrée d'annuaire n'est pas sous forme canonique.");
  }
  if (obj.type === "key.add") members(obj, "key.add", ["v", "type", "time", "device", "key", "owner", "org"]);
  else if (obj.type === "key.revoke") members(obj, "key.revoke", ["v", "type", "time", "device", "reason"]);
  else if (obj.type === "module.release") members(obj, "module.release", ["v", "type", "time", "module", "sha256", "release"]);
  else throw malformed("unknown_entry", "Type d'entrée d'annuaire inconnu.");
  if (obj.v !== 1 || typeof obj.time !== "string") throw malformed("unknown_version", "Version d'entrée d'annuaire inconnue.");
  if (!RE.time.test(obj.time)) throw malformed("invalid_member", "time est invalide.");
  if (obj.type === "module.release") {
    return { kind: obj.type, time: obj.time, module: text(obj.module, /^[a-z0-9._/-]{1,128}$/, "module"), sha256: text(obj.sha256, /^[0-9a-f]{64}$/, "sha256"), release: text(obj.release, /^[A-Za-z0-9._+-]{1,64}$/, "release") };
  }
  if (typeof obj.device !== "string") throw malformed("invalid_member", "time est invalide.");
  if (obj.type === "key.revoke") {
    if (obj.reason !== "owner" && obj.reason !== "admin") throw malformed("invalid_member", "reason est invalide.");
    return { kind: obj.type, time: obj.time, device: obj.device, reason: obj.reason };
  }
  const key = await DeviceKey.fromRecord(obj.key);
  if (key.keyId !== obj.device) throw malformed("invalid_member", "device est invalide.");
  return { kind: obj.type, time: obj.time, device: key.keyId, key, owner: text(obj.owner, RE.owner, "owner"), org: text(obj.org, RE.org, "org") };
}

/**
 * A verified replica of the key directory (exchange.directory.Directory): every leaf hash, the
 * keys they describe, the module releases logged, the last checkpoint. ``update`` returns a new
 * replica and leaves this one as it was when anything fails.
 */
export class Directory {
  constructor(verifier, leaves = [], keys = new Map(), releases = [], note = "", size = 0) {
    this.verifier = verifier;
    this.leaves = leaves;
    this.keys = keys;
    this.releases = releases;
    this.note = note;
    this.size = size;
  }

  static async empty(vkey) {
    return new Directory(await noteVerifier(vkey));
  }

  async update(entries, note) {
    const checkpoint = await verifyCheckpoint(this.verifier, note);
    if (checkpoint.size < this.size) throw refused("rollback", "L'annuaire présenté est plus ancien que celui déjà vérifié.");
    if (checkpoint.size !== this.size + entries.length) throw refused("entries_missing", "Les entrées reçues ne mènent pas à la taille signée.");
    const leaves = [...this.leaves];
    const keys = new Map(this.keys);
    const releases = [...this.releases];
    for (const data of entries) {
      leaves.push(await leafHash(data));
      apply(keys, releases, await parseEntry(data), leaves.length - 1);
    }
    if (!equalBytes(await rootFromLeafHashes(leaves), checkpoint.root)) {
      throw refused("fork", "L'annuaire signé ne correspond pas aux entrées reçues.");
    }
    return new Directory(this.verifier, leaves, keys, releases, note, leaves.length);
  }

  /** Another party's checkpoint against this replica: same size same root, smaller a prefix. */
  async checkPeer(note) {
    const checkpoint = await verifyCheckpoint(this.verifier, note);
    if (checkpoint.size > this.size) throw refused("checkpoint_ahead", "L'expéditeur a vu un annuaire plus récent : mettez à jour.");
    if (!equalBytes(await rootFromLeafHashes(this.leaves.slice(0, checkpoint.size)), checkpoint.root)) {
      throw refused("split_view", "L'annuaire vu par l'expéditeur diffère du vôtre : le hub montre deux annuaires.");
    }
    return checkpoint;
  }

  state(keyId) {
    return this.keys.get(keyId) ?? null;
  }

  history(owner) {
    return [...this.keys.values()].filter((s) => s.owner === owner).sort((a, b) => a.added - b.added);
  }

  devices(owners) {
    const wanted = new Set(owners);
    return [...this.keys.values()].filter((s) => s.revoked === null && wanted.has(s.owner)).sort((a, b) => a.added - b.added);
  }
}

function apply(keys, releases, entry, index) {
  if (entry.kind === "module.release") {
    releases.push({ ...entry, index });
    return;
  }
  if (entry.kind === "key.add") {
    if (keys.has(entry.device)) throw refused("entry_invalid", "Clé d'appareil publiée deux fois.");
    keys.set(entry.device, { key: entry.key, owner: entry.owner, org: entry.org, added: index, revoked: null, revokedReason: "", revokedTime: "" });
    return;
  }
  const known = keys.get(entry.device);
  if (!known || known.revoked !== null) throw refused("entry_invalid", "Révocation d'une clé inconnue ou déjà révoquée.");
  keys.set(entry.device, { ...known, revoked: index, revokedReason: entry.reason, revokedTime: entry.time });
}

/**
 * The key that must have signed ``manifest``, from the verified directory
 * (exchange.client.sender_key): owner and organisation as announced, the sender's checkpoint
 * consistent with ours and already holding the key, the key in force (or rotated by its owner
 * after that checkpoint, less than 30 days ago).
 */
export async function senderKey(replica, manifest, now = new Date()) {
  const state = replica.state(manifest.sender.device);
  if (!state) throw refused("key_unknown", "Clé d'appareil absente de l'annuaire.");
  if (state.owner !== manifest.sender.user || state.org !== manifest.sender.org) {
    throw refused("sender_mismatch", "Selon l'annuaire vérifié, la clé de signature n'est pas celle de l'expéditeur annoncé.");
  }
  const checkpoint = await replica.checkPeer(manifest.directory);
  if (state.added >= checkpoint.size) throw refused("sender_key_unseen", "La clé de signature n'était pas dans l'annuaire vu par l'expéditeur.");
  if (state.revoked !== null) {
    const withinGrace = now.getTime() - Date.parse(state.revokedTime) <= ROTATION_GRACE_MS;
    if (!(state.revoked >= checkpoint.size && state.revokedReason === "owner" && withinGrace)) {
      throw refused("key_revoked", "Clé d'appareil révoquée.");
    }
  }
  return state.key;
}

/**
 * Open a received form: the sender's key from the verified directory, then the form's checks.
 * ``rotated``: the key was accepted within the grace after its owner rotated it, so that the
 * form predates the rotation is the sender's claim (« antériorité non prouvable »).
 */
export async function openReceived(data, secrets, replica, now = new Date()) {
  const envelope = parseEnvelope(data);
  const key = await senderKey(replica, envelope.manifest, now);
  const opened = await openForm(envelope, secrets, key);
  return { ...opened, rotated: replica.state(key.keyId).revoked !== null };
}

/**
 * Refuse a directory that gives ``owner`` (this person) a key this browser does not know of:
 * only keys it registered or restored (``known``), in force or revoked (exchange.client).
 */
export function checkOwnKeys(replica, owner, known) {
  const foreign = replica.history(owner).filter((s) => !known.includes(s.key.keyId)).map((s) => s.key.keyId);
  if (foreign.length) {
    throw refused("foreign_key", `ALERTE : l'annuaire vous attribue des clés que vous n'avez pas enregistrées (${foreign.join(", ")}). Prévenez le DPO ; rien n'est envoyé.`);
  }
}

/**
 * One view per distinct set of fields, sealed only to keys the verified directory holds for the
 * owner the hub named (exchange.client.plan_form). ``answer`` is the hub's recipients answer.
 * A key the hub names but the directory does not stops everything. Owners whose keys this
 * browser cannot seal to (post-quantum only) come back in ``unreachable``.
 */
export function planForm(answer, values, replica, caseRef) {
  if (answer.case !== caseRef) throw refused("case_mismatch", "Le hub répond pour un autre dossier que celui demandé.");
  const groups = new Map();
  const owners = [];
  const unreachable = [];
  const given = new Set();
  for (const recipient of answer.recipients) {
    const fields = recipient.fields.filter((f) => Object.prototype.hasOwnProperty.call(values, f)).sort();
    if (!fields.length || !recipient.devices.length) continue;
    const keys = [];
    for (const keyId of recipient.devices) {
      const state = replica.state(keyId);
      if (!state || state.revoked !== null || state.owner !== recipient.owner) {
        throw refused("key_not_in_directory", "Le hub propose une clé que l'annuaire vérifié ne lui attribue pas : envoi arrêté.");
      }
    }
    // Every key in force of the owner, as the directory says (not only those the hub listed):
    // an owner with a key this browser cannot seal to (post-quantum) gets none, since the
    // relay refuses a form that leaves out one of a recipient's devices.
    const current = replica.devices([recipient.owner]);
    if (current.every((state) => state.key.sealable)) for (const state of current) keys.push(state.key);
    if (!keys.length) {
      unreachable.push(recipient.owner);
      continue;
    }
    const name = fields.join(",");
    if (!groups.has(name)) groups.set(name, { fields, keys: [] });
    groups.get(name).keys.push(...keys);
    owners.push({ owner: recipient.owner, fields, devices: keys.length });
    fields.forEach((f) => given.add(f));
  }
  const views = [...groups.values()]
    .sort((a, b) => (a.fields.join(",") < b.fields.join(",") ? -1 : 1))
    .map((g) => ({
      values: Object.fromEntries(g.fields.map((f) => [f, values[f]])),
      recipients: g.keys.sort((a, b) => (a.keyId < b.keyId ? -1 : 1)),
    }));
  return { views, owners, unreachable, leftOut: Object.keys(values).filter((f) => !given.has(f)).sort() };
}

// -- storage (IndexedDB) ---------------------------------------------------------------------

/**
 * The browser's store: device keys (non-extractable CryptoKeys) and the directory replica.
 * ``storage_unavailable`` when IndexedDB cannot be opened (a private window may refuse it).
 */
export class Store {
  constructor(db) {
    this.db = db;
  }

  static open(name = "maillon") {
    return new Promise((resolve, reject) => {
      let request;
      const unavailable = () =>
        refused("storage_unavailable", "Ce navigateur ne permet pas de conserver les clés de l'appareil (navigation privée ?). Utilisez une fenêtre normale.");
      try {
        request = indexedDB.open(name, 1);
      } catch {
        reject(unavailable());
        return;
      }
      request.onupgradeneeded = () => request.result.createObjectStore("kv");
      request.onsuccess = () => resolve(new Store(request.result));
      request.onerror = () => reject(unavailable());
      request.onblocked = () => reject(unavailable());
    });
  }

  transaction(mode, work) {
    return new Promise((resolve, reject) => {
      const tx = this.db.transaction("kv", mode);
      let result;
      const request = work(tx.objectStore("kv"));
      if (request) request.onsuccess = () => (result = request.result);
      // Resolved on completion only: a write is kept once the transaction has committed.
      tx.oncomplete = () => resolve(result);
      tx.onerror = () => reject(refused("storage_failed", "L'enregistrement local a échoué : rien n'a été conservé."));
      tx.onabort = tx.onerror;
    });
  }

  get(key) {
    return this.transaction("readonly", (s) => s.get(key));
  }

  /** Keep ``value`` unless what is stored is larger by ``size(value)``: in one transaction, so
   *  two tabs syncing at once never put an older directory replica over a newer one. */
  putIfNotSmaller(key, value, size) {
    return this.transaction("readwrite", (s) => {
      const read = s.get(key);
      read.onsuccess = () => {
        if (!read.result || size(read.result) <= size(value)) s.put(value, key);
      };
      return null;
    });
  }

  put(key, value) {
    return this.transaction("readwrite", (s) => s.put(value, key));
  }

  delete(key) {
    return this.transaction("readwrite", (s) => s.delete(key));
  }
}
