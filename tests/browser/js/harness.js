// In-browser side of tests/browser/test_module.py: thin calls into the module, JSON in and out.
// The tests decide what is right; this file only runs the module's functions in Chromium.
import * as m from "/js/echange.js";

const devices = new Map(); // keyId -> DeviceSecrets made in this page
const text = new TextEncoder();

function xorNonce(base, seq) {
  const nonce = base.slice();
  for (let i = 0; i < 8 && seq > 0; i++) {
    nonce[nonce.length - 1 - i] ^= seq & 0xff;
    seq = Math.floor(seq / 256);
  }
  return nonce;
}

export async function hpkeVector(v) {
  const eph = { privateKey: await m.importPrivate("X25519", m.unhex(v.skEm)), publicRaw: m.unhex(v.pkEm) };
  const info = m.unhex(v.info);
  const s = await m.setupBaseS(m.unhex(v.pkRm), info, eph);
  const skR = await m.importPrivate("X25519", m.unhex(v.skRm));
  const r = await m.setupBaseR(m.unhex(v.enc), skR, m.unhex(v.pkRm), info);
  const encryptions = [];
  for (const [seq, e] of v.encryptions.entries()) {
    const nonce = xorNonce(s.baseNonce, seq);
    const ct = await m.aesGcmSeal(s.key, nonce, m.unhex(e.aad), m.unhex(e.pt));
    const pt = await m.aesGcmOpen(r.key, xorNonce(r.baseNonce, seq), m.unhex(e.aad), m.unhex(e.ct));
    encryptions.push({ nonce: m.hex(nonce), ct: m.hex(ct), pt: m.hex(pt) });
  }
  // Single shot both ways with a fresh ephemeral key, and a wrong info refused.
  const sealed = await m.hpkeSeal(m.unhex(v.pkRm), info, text.encode("clé de vue"));
  const opened = new TextDecoder().decode(await m.hpkeOpen(skR, m.unhex(v.pkRm), sealed, info));
  let wrongInfo = "opened";
  try {
    await m.hpkeOpen(skR, m.unhex(v.pkRm), sealed, text.encode("autre"));
  } catch (e) {
    wrongInfo = e.code;
  }
  return {
    enc: m.hex(s.enc),
    shared_secret: m.hex(s.sharedSecret),
    shared_secret_r: m.hex(r.sharedSecret),
    key_schedule_context: m.hex(s.keyScheduleContext),
    secret: m.hex(s.secret),
    key: m.hex(s.key),
    base_nonce: m.hex(s.baseNonce),
    encryptions,
    single_shot: opened,
    wrong_info: wrongInfo,
  };
}

export async function publicKey(record) {
  const key = await m.DeviceKey.fromRecord(JSON.parse(JSON.stringify(record)));
  return { keyId: key.keyId, fingerprint: key.fingerprint, record: key.record() };
}

export async function fromPrivate(record) {
  const secrets = await m.DeviceSecrets.fromPrivateRecord(record);
  devices.set(secrets.public.keyId, secrets);
  return { keyId: secrets.public.keyId, fingerprint: secrets.public.fingerprint, record: secrets.public.record() };
}

export async function newDevice() {
  const { secrets } = await m.generateDevice();
  devices.set(secrets.public.keyId, secrets);
  // Non-extractable: exporting the private keys must fail.
  let exportable = false;
  try {
    await crypto.subtle.exportKey("pkcs8", secrets.signing);
    exportable = true;
  } catch {
    /* expected */
  }
  try {
    await crypto.subtle.exportKey("pkcs8", secrets.receiving);
    exportable = true;
  } catch {
    /* expected */
  }
  return { keyId: secrets.public.keyId, fingerprint: secrets.public.fingerprint, record: secrets.public.record(), exportable };
}

/** Parse, verify and open ``envelope`` as device ``keyId``: the values, or the step and code. */
export async function openEnvelope(envelope, keyId, senderRecord) {
  const secrets = devices.get(keyId);
  let parsed;
  try {
    parsed = m.parseEnvelope(text.encode(envelope));
  } catch (e) {
    return { step: "parse", code: e.code };
  }
  const sender = await m.DeviceKey.fromRecord(senderRecord);
  try {
    await m.verifyEnvelope(parsed, sender);
  } catch (e) {
    return { step: "verify", code: e.code };
  }
  try {
    const opened = await m.openForm(parsed, secrets, sender);
    const files = Object.values(opened.files).map((f) => ({ field: f.field, name: f.name, type: f.type, data: m.b64e(f.data) }));
    return { view: opened.view, values: opened.values, form: opened.manifest.form, files };
  } catch (e) {
    return { step: "open", code: e.code };
  }
}

/** Seal a form from device ``senderId`` to [{record, fields}] with ``values``. */
export async function sealForm(senderId, recipients, values, meta, files = []) {
  const secrets = devices.get(senderId);
  const groups = new Map();
  for (const r of recipients) {
    const fields = [...r.fields].sort();
    const name = fields.join(",");
    if (!groups.has(name)) groups.set(name, { values: Object.fromEntries(fields.map((f) => [f, values[f]])), recipients: [] });
    groups.get(name).recipients.push(await m.DeviceKey.fromRecord(r.record));
  }
  const { body } = await m.seal({
    secrets,
    user: meta.user,
    org: meta.org,
    caseRef: meta.case,
    charter: meta.charter,
    consent: meta.consent,
    purpose: meta.purpose,
    directory: meta.directory,
    views: [...groups.values()],
    now: new Date(meta.now),
    files: files.map((f) => ({ ...f, data: m.b64d(f.data, "data") })),
  });
  return new TextDecoder().decode(body);
}

export async function merkleRoot(entries) {
  const leaves = [];
  for (const e of entries) leaves.push(await m.leafHash(m.b64d(e, "entry")));
  return m.hex(await m.rootFromLeafHashes(leaves));
}

export async function inclusion(leaf, index, size, proof, root) {
  await m.verifyInclusion(m.unhex(leaf), index, size, proof.map(m.unhex), m.unhex(root));
  return "ok";
}

export async function consistency(oldSize, newSize, oldRoot, newRoot, proof) {
  await m.verifyConsistency(oldSize, newSize, m.unhex(oldRoot), m.unhex(newRoot), proof.map(m.unhex));
  return "ok";
}

/** A replica from ``steps`` of [entries, note] applied in turn; its keys, or the error. */
export async function replica(vkey, steps, peer = null) {
  let directory = await m.Directory.empty(vkey);
  for (const [entries, note] of steps) directory = await directory.update(entries.map((e) => m.b64d(e, "entry")), note);
  const answer = {
    size: directory.size,
    keys: [...directory.keys.entries()].map(([id, s]) => ({ id, owner: s.owner, org: s.org, added: s.added, revoked: s.revoked })),
    releases: directory.releases.map((r) => ({ module: r.module, sha256: r.sha256, release: r.release })),
  };
  if (peer !== null) answer.peer = (await directory.checkPeer(peer)).size;
  return answer;
}

export async function lockRecovery(privateRecord, passphrase, iterations) {
  return new TextDecoder().decode(await m.lockRecovery(privateRecord, passphrase, iterations));
}

export async function unlockRecovery(backup, passphrase) {
  const secrets = await m.unlockRecovery(text.encode(backup), passphrase);
  devices.set(secrets.public.keyId, secrets);
  return secrets.public.keyId;
}

export async function canonical(value) {
  return new TextDecoder().decode(m.canonicalJson(value));
}

export async function parseJson(textValue) {
  const value = m.parseJsonObject(text.encode(textValue), "le test", 1024);
  return JSON.parse(JSON.stringify(value, (k, v) => (v instanceof m.JsonNumber ? { number: v.text } : v)));
}

/**
 * Timings (ms) of seal (10 recipients) and open, and of the raw WebCrypto operations they are
 * made of, in alternating rounds. Each figure is the mean of ``batch`` runs within its round:
 * performance.now() is coarsened to 0.1 ms in a page that is not cross-origin isolated.
 */
export async function timings(rounds, batch = 10) {
  const sender = (await m.generateDevice()).secrets;
  const recipients = [];
  for (let i = 0; i < 10; i++) recipients.push((await m.generateDevice()).secrets);
  const values = { "parcours.besoins": "x".repeat(2000), "sortie.date_prevue": "2026-12-15" };
  const meta = { user: "user:u-1", org: "o-1", caseRef: "C-7K3Q-X9M2", charter: { id: "charte", version: 1, digest: "sha256:" + "3".repeat(64) }, purpose: "suivi_parcours", directory: "x" };
  const plain = text.encode(JSON.stringify(values));
  const signed = text.encode("x".repeat(4000));
  const key = m.randomBytes(32);
  const nonce = m.randomBytes(12);
  const ct = await m.aesGcmSeal(key, nonce, new Uint8Array(0), plain);
  const out = { seal: [], open: [], raw: [], rawOpen: [] };
  let body = null;
  const time = async (name, work) => {
    const t = performance.now();
    for (let i = 0; i < batch; i++) await work();
    out[name].push((performance.now() - t) / batch);
  };
  for (let round = 0; round < rounds; round++) {
    await time("seal", async () => {
      body = (await m.seal({ secrets: sender, ...meta, views: [{ values, recipients: recipients.map((r) => r.public) }] })).body;
    });
    await time("raw", async () => {
      await m.aesGcmSeal(key, nonce, new Uint8Array(0), plain);
      for (const r of recipients) {
        const eph = await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
        const pub = await crypto.subtle.importKey("raw", r.public.kem, { name: "X25519" }, true, []);
        await crypto.subtle.deriveBits({ name: "X25519", public: pub }, eph.privateKey, 256);
      }
      await sender.sign(signed);
    });
    await time("open", () => m.openForm(body, recipients[3], sender.public));
    await time("rawOpen", async () => {
      const vk = await crypto.subtle.importKey("raw", sender.public.sign, { name: "Ed25519" }, false, ["verify"]);
      await crypto.subtle.verify({ name: "Ed25519" }, vk, new Uint8Array(64), signed);
      const pub = await crypto.subtle.importKey("raw", sender.public.kem, { name: "X25519" }, true, []);
      await crypto.subtle.deriveBits({ name: "X25519", public: pub }, recipients[3].receiving, 256);
      await m.aesGcmOpen(key, nonce, new Uint8Array(0), ct);
      await m.aesGcmOpen(key, nonce, new Uint8Array(0), ct);
    });
  }
  return out;
}
