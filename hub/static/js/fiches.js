// Maillon — the pages of sealed liaison forms: my devices, compose and send, reading.
// Crypto and formats live in echange.js; this script talks to the page and to the hub's relay
// under /echange/… (the person's session, CSRF token in a header). Nothing personal is logged.
import * as x from "./echange.js";

const root = document.getElementById("echange");
const page = root.dataset;
const statusBox = document.getElementById("statut");
const alertBox = document.getElementById("alerte");
const bar = document.getElementById("progression");
const DEVICE = `appareil:${page.owner}`;

// -- page helpers ----------------------------------------------------------------------------

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function say(text) {
  statusBox.replaceChildren(element("p", { class: "message message--info" }, text));
}

function warn(text, extra = null) {
  const box = element("div", { class: "message message--error" }, element("p", {}, text));
  if (extra) box.append(extra);
  alertBox.replaceChildren(box);
}

function clear() {
  statusBox.replaceChildren();
  alertBox.replaceChildren();
}

function progress(done, total, text) {
  bar.hidden = done >= total;
  bar.max = total;
  bar.value = done;
  if (text) say(text);
}

function csrfToken() {
  const input = document.querySelector('input[name="csrf_token"]');
  return input ? input.value : "";
}

/** A refusal of the hub as an ExchangeError (its code and French message). */
function hubError(status, data) {
  const error = new x.ExchangeError(data.error || `http_${status}`, data.message || `Le hub a refusé la demande (${status}).`);
  error.details = data;
  error.status = status;
  return error;
}

async function call(method, path, { json, raw, bytes = false } = {}) {
  const headers = { "X-CSRFToken": csrfToken() };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (raw !== undefined) {
    headers["Content-Type"] = "application/json";
    body = raw;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, credentials: "same-origin", redirect: "error" });
  } catch {
    throw new x.ExchangeError("network", "Le hub ne répond pas : vérifiez la connexion puis réessayez.");
  }
  if (!response.ok) {
    let data = {};
    try {
      data = await response.json();
    } catch {
      /* not JSON: the status says enough */
    }
    if (response.status === 401 && !data.error) data.message = "Votre session a expiré : reconnectez-vous puis recommencez.";
    throw hubError(response.status, data);
  }
  return bytes ? new Uint8Array(await response.arrayBuffer()) : response.json();
}

/** POST ``body`` with upload progress (fetch gives none). */
function upload(path, body, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("Content-Type", "application/json");
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded, e.total);
    xhr.onerror = () => reject(new x.ExchangeError("network", "Le hub ne répond pas : la fiche n'a pas été envoyée."));
    xhr.onload = () => {
      let data = {};
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        /* status only */
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(hubError(xhr.status, data));
    };
    xhr.send(body);
  });
}

// -- local keys and the directory ------------------------------------------------------------

async function openStore() {
  if (!globalThis.indexedDB) {
    throw new x.ExchangeError("storage_unavailable", "Ce navigateur ne permet pas de conserver les clés de l'appareil (navigation privée ?). Utilisez une fenêtre normale.");
  }
  return x.Store.open();
}

/** This browser's device for this person: {secrets, known} or null. */
async function localDevice(store) {
  const stored = await store.get(DEVICE);
  if (!stored) return null;
  return { secrets: await x.DeviceSecrets.fromStored(stored), known: stored.known || [], stored };
}

/**
 * The verified directory: the saved replica checked again, then brought up to the hub's latest
 * signed checkpoint. The directory's key is pinned on first use; a change is an alarm.
 */
async function syncDirectory(store) {
  const saved = await store.get("annuaire");
  let replica = await x.Directory.empty(page.vkey);
  let entries = [];
  if (saved) {
    if (saved.vkey !== page.vkey) {
      throw new x.ExchangeError("directory_key_changed", "ALERTE : la clé de l'annuaire des clés a changé depuis votre dernière visite. Prévenez le DPO ; rien n'est envoyé ni ouvert.");
    }
    entries = saved.entries.map((e) => x.b64d(e, "entrée"));
    if (saved.note) replica = await replica.update(entries, saved.note);
  }
  const head = await call("GET", "/echange/annuaire");
  const fresh = [];
  while (replica.size + fresh.length < head.size) {
    const start = replica.size + fresh.length;
    const batch = await call("GET", `/echange/annuaire/entrees?debut=${start}&fin=${head.size}`);
    if (!batch.entries.length) break;
    fresh.push(...batch.entries.map((e) => x.b64d(e, "entrée")));
    progress(replica.size + fresh.length, head.size, `Vérification de l'annuaire des clés : ${replica.size + fresh.length}/${head.size}`);
  }
  replica = await replica.update(fresh, head.checkpoint);
  const saved2 = { vkey: page.vkey, note: head.checkpoint, entries: [...entries, ...fresh].map((e) => x.b64e(e)) };
  await store.putIfNotSmaller("annuaire", saved2, (s) => s.entries.length);
  progress(1, 1);
  return replica;
}

/** Refuse to go on when the directory gives this person a key nobody here recognised. */
function checkOwn(replica, device) {
  x.checkOwnKeys(replica, page.owner, device.known);
}

function numbers(replica, owner) {
  return replica.devices([owner]).map((s) => s.key.fingerprint);
}

function explain(error) {
  if (error instanceof x.ExchangeError) return error.message;
  return "Une erreur inattendue est survenue dans la page ; rien n'a été envoyé. Rechargez la page.";
}

// -- my devices ------------------------------------------------------------------------------

async function devicesPage() {
  const store = await openStore();
  const replica = await syncDirectory(store);
  const device = await localDevice(store);
  const local = document.getElementById("appareil-local");
  if (device) {
    const state = replica.state(device.secrets.public.keyId);
    if (!state || state.revoked !== null || state.owner !== page.owner) {
      await store.delete(DEVICE);
      local.textContent = "Les clés de ce navigateur ont été révoquées : elles ont été effacées. Activez-le de nouveau ou restaurez une sauvegarde.";
      showSetUp();
      return;
    }
    local.textContent = "Ce navigateur est activé : il peut sceller et ouvrir vos fiches.";
    document.getElementById("empreinte").hidden = false;
    document.getElementById("cle-locale").textContent = device.secrets.public.keyId;
    document.getElementById("numero-local").textContent = device.secrets.public.fingerprint;
    // Revoked ones too: a key added under this name and revoked since could have read or signed.
    const foreign = replica.history(page.owner).filter((s) => !device.known.includes(s.key.keyId));
    if (foreign.length) showForeign(store, device, foreign);
    return;
  }
  local.textContent = "Ce navigateur n'a pas encore de clés.";
  showSetUp();

  function showSetUp() {
    document.getElementById("activation").hidden = false;
    document.getElementById("restauration").hidden = false;
    const activation = document.getElementById("form-activation");
    if (activation) activation.addEventListener("submit", (e) => guard(e, () => activate(store, activation)));
    const restore = document.getElementById("form-restauration");
    restore.addEventListener("submit", (e) => guard(e, () => restoreKeys(store, restore)));
    ready(activation, restore);
  }
}

function showForeign(store, device, foreign) {
  const list = element("ul");
  for (const s of foreign) {
    const label = s.revoked === null ? "en service" : "révoquée depuis";
    const button = element("button", { type: "button", class: "button button--secondary" }, "C'est bien un de mes appareils");
    button.addEventListener("click", async () => {
      device.stored.known = [...device.known, s.key.keyId];
      await store.put(DEVICE, device.stored);
      window.location.reload();
    });
    list.append(element("li", {}, `Clé ${label}, organisation ${s.org}, numéro de sécurité ${s.key.fingerprint} — `, button));
  }
  warn(
    "L'annuaire vous attribue des appareils que ce navigateur ne connaît pas. Si vous les avez activés vous-même (autre poste), reconnaissez-les ; sinon révoquez-les et prévenez le DPO. En attendant, rien n'est envoyé ni ouvert ici.",
    list,
  );
}

async function guard(event, work) {
  event.preventDefault();
  clear();
  // Every button waits while the work runs, then gets back the state the work left it
  // (``hold``): a sealed form's button stays disabled.
  const buttons = [...document.querySelectorAll("#echange button")];
  buttons.forEach((b) => (b.disabled = true));
  try {
    await work();
  } catch (error) {
    bar.hidden = true;
    warn(explain(error));
  } finally {
    buttons.forEach((b) => (b.disabled = b.dataset.held === "1"));
  }
}

/** Keep ``button`` disabled (or not) beyond the work in progress. */
function hold(button, disabled) {
  button.dataset.held = disabled ? "1" : "";
  button.disabled = disabled;
}

async function activate(store, form) {
  const label = form.elements.libelle.value.trim() || "Navigateur";
  const phrase = form.elements.phrase.value;
  if (phrase !== form.elements.phrase2.value) throw new x.ExchangeError("passphrase_mismatch", "Les deux phrases de récupération diffèrent.");
  if (Array.from(phrase.normalize("NFC")).length < x.MIN_PASSPHRASE_CHARS) {
    throw new x.ExchangeError("passphrase_too_short", `La phrase de récupération doit compter au moins ${x.MIN_PASSPHRASE_CHARS} caractères.`);
  }
  progress(0, 3, "Création des clés dans ce navigateur…");
  const { secrets, privateRecord } = await x.generateDevice();
  progress(1, 3, "Protection de la sauvegarde par votre phrase (quelques secondes)…");
  const backup = await x.lockRecovery(privateRecord, phrase);
  privateRecord.sign = privateRecord.kem.sk = "";
  progress(2, 3, "Enregistrement de l'appareil…");
  const keyId = secrets.public.keyId;
  await call("POST", "/echange/appareils", { json: { key: secrets.public.record(), label } });
  try {
    await call("PUT", "/echange/sauvegarde", { raw: backup });
  } catch (error) {
    // Nothing half-done: a device without its backup is withdrawn again.
    await call("POST", `/echange/appareils/${encodeURIComponent(keyId)}/revocation`).catch(() => null);
    throw error;
  }
  // Only this browser's own key is known: any other under this person's name (another
  // browser of theirs, or one the hub added) is shown for them to recognise, or to revoke.
  await store.put(DEVICE, { ...secrets.toStored(), known: [keyId] });
  progress(3, 3, "Appareil activé.");
  window.location.reload();
}

async function restoreKeys(store, form) {
  progress(0, 2, "Récupération de la sauvegarde…");
  const data = await call("GET", "/echange/sauvegarde", { bytes: true });
  progress(1, 2, "Ouverture avec votre phrase (quelques secondes)…");
  let secrets;
  try {
    secrets = await x.unlockRecovery(data, form.elements["phrase-restauration"].value);
  } catch (error) {
    if (error.code === "keystore_locked") {
      throw new x.ExchangeError("keystore_locked", "Phrase de récupération incorrecte. Sans elle la sauvegarde ne peut pas être ouverte : révoquez l'ancien appareil et activez ce navigateur avec de nouvelles clés.");
    }
    throw error;
  }
  const replica = await syncDirectory(store);
  const state = replica.state(secrets.public.keyId);
  if (!state || state.revoked !== null || state.owner !== page.owner) {
    throw new x.ExchangeError("key_revoked", "Cette sauvegarde correspond à un appareil révoqué : activez ce navigateur avec de nouvelles clés.");
  }
  await store.put(DEVICE, { ...secrets.toStored(), known: [secrets.public.keyId] });
  progress(2, 2, "Clés restaurées.");
  window.location.reload();
}

// -- compose and send ------------------------------------------------------------------------

function fieldLabel(id) {
  const label = document.querySelector(`label[for="${CSS.escape(id)}"]`);
  return label ? label.textContent : id;
}

/** The forms' buttons wait for the script (a form sent without it would leak what it holds). */
function ready(...forms) {
  for (const form of forms) if (form) form.querySelectorAll("button").forEach((b) => (b.disabled = false));
}

async function composePage() {
  const form = document.getElementById("form-fiche");
  const preview = document.getElementById("apercu");
  let pending = null;
  form.addEventListener("submit", (e) =>
    guard(e, async () => {
      pending = null;
      preview.hidden = true;
      const values = {};
      for (const input of form.querySelectorAll("[data-champ]")) {
        const value = input.value.trim();
        if (value) values[input.id] = value;
      }
      const files = await attachments(form, values);
      if (!Object.keys(values).length) throw new x.ExchangeError("empty", "Remplissez au moins une information de la fiche.");
      const store = await openStore();
      const device = await localDevice(store);
      if (!device) throw notActivated();
      const replica = await syncDirectory(store);
      checkOwn(replica, device);
      const purpose = form.elements.finalite.value;
      const query = new URLSearchParams({ finalite: purpose, champs: Object.keys(values).sort().join(",") });
      say("Recherche des destinataires…");
      const answer = await call("GET", `/echange/dossiers/${encodeURIComponent(page.case)}/destinataires?${query}`);
      const plan = x.planForm(answer, values, replica, page.case);
      // The hub's word on each recipient's organisation must be the verified directory's.
      for (const r of answer.recipients) {
        const orgs = new Set(replica.devices([r.owner]).map((s) => s.org));
        if (orgs.size && (orgs.size > 1 || !orgs.has(r.organisation))) {
          throw new x.ExchangeError("org_mismatch", "Le hub présente un destinataire sous une autre organisation que celle de l'annuaire vérifié : envoi arrêté. Prévenez le DPO.");
        }
      }
      renderPreview(answer, plan, replica, values, files);
      pending = { plan, answer, purpose, device, replica, files: files.filter((f) => !plan.leftOut.includes(f.field)) };
      preview.hidden = false;
      hold(document.getElementById("sceller"), plan.views.length === 0);
      clear();
      preview.focus();
    }),
  );
  ready(form);
  document.getElementById("modifier").addEventListener("click", () => {
    preview.hidden = true;
    pending = null;
    form.querySelector("[data-champ]")?.focus();
  });
  document.getElementById("sceller").addEventListener("click", (e) =>
    guard(e, async () => {
      if (!pending) return;
      const { plan, answer, purpose, device, replica, files } = pending;
      const total = plan.views.reduce((n, v) => n + v.recipients.length, 0);
      progress(0, total, "Scellement de la fiche sur cet appareil…");
      const sealed = await sealOrExplain({
        secrets: device.secrets,
        user: page.owner,
        org: page.org,
        caseRef: page.case,
        charter: answer.charter,
        purpose,
        directory: replica.note,
        views: plan.views,
        files,
        progress: (done) => progress(done, total, `Scellement : ${done}/${total} destinataire(s)`),
      });
      try {
        const result = await upload("/echange/fiches", sealed.body, (done, size) => progress(done, size, "Envoi de la fiche scellée…"));
        pending = null;
        bar.hidden = true;
        hold(document.getElementById("sceller"), true);
        say(`Fiche envoyée et remise à ${result.recipients} appareil(s) destinataire(s).`);
      } catch (error) {
        const refusals = error.details && error.details.refusals;
        if (refusals && refusals.length) {
          const list = element("ul");
          for (const r of refusals) list.append(element("li", {}, r.field ? `${fieldLabel(r.field)} : ${r.message}` : r.message));
          warn(`${error.message} Rien n'a été envoyé.`, list);
          return;
        }
        throw error;
      }
    }),
  );
}

/** Seal, saying in plain words when the form is too large to travel. */
async function sealOrExplain(request) {
  try {
    return await x.seal(request);
  } catch (error) {
    if (error instanceof x.ExchangeError && error.code === "too_large") {
      const limit = Math.round(x.MAX_ENVELOPE_BYTES / 1048576);
      throw new x.ExchangeError("too_large", `La fiche scellée dépasserait la taille permise (${limit} Mio, toutes vues et pièces jointes comprises) : retirez des pièces ou raccourcissez les textes. Rien n'a été envoyé.`);
    }
    throw error;
  }
}

/**
 * The chosen files, read and checked (type, size, number): each supports the field chosen
 * beside them, which then travels too (with a note when left empty) so that exactly the
 * recipients who may know it receive them.
 */
async function attachments(form, values) {
  const input = form.querySelector("#pieces");
  if (!input || !input.files.length) return [];
  const chosen = [...input.files];
  if (chosen.length > x.MAX_FILES) throw new x.ExchangeError("too_many_files", `Au plus ${x.MAX_FILES} pièces jointes par fiche.`);
  const field = form.querySelector("#piece-champ").value;
  const files = [];
  for (const file of chosen) {
    if (!x.FILE_TYPES.has(file.type)) throw new x.ExchangeError("file_type", `« ${file.name} » : seuls les PDF, PNG et JPEG peuvent être joints.`);
    if (file.size > x.MAX_FILE_BYTES) throw new x.ExchangeError("too_large", `« ${file.name} » dépasse ${x.MAX_FILE_BYTES / 1048576} Mio.`);
    const data = new Uint8Array(await file.arrayBuffer());
    if (!x.looksLike(file.type, data)) throw new x.ExchangeError("file_type", `« ${file.name} » n'est pas réellement un fichier ${file.type} : il n'est pas joint.`);
    files.push({ field, name: x.travellingName(file.name), type: file.type, data });
  }
  if (!(field in values)) values[field] = "Voir la pièce jointe.";
  return files;
}

function notActivated() {
  return new x.ExchangeError("no_device", "Ce navigateur n'est pas activé : activez-le ou restaurez vos clés depuis « Mes appareils », puis revenez.");
}

function renderPreview(answer, plan, replica, values, files = []) {
  const box = document.getElementById("apercu-contenu");
  const table = element("table", { tabindex: "0" });
  table.append(element("caption", {}, "Destinataires possibles et informations que chacun recevra"));
  const head = element("tr");
  for (const title of ["Destinataire", "Reçoit", "Ne reçoit pas (article de la charte)", "Numéros de sécurité"]) head.append(element("th", { scope: "col" }, title));
  table.append(element("thead", {}, head));
  const body = element("tbody");
  const reached = new Set(plan.owners.map((o) => o.owner));
  for (const r of [...answer.recipients, ...(answer.not_entitled || [])]) {
    const row = element("tr");
    const identity = element("th", { scope: "row" }, r.label || r.owner);
    identity.append(element("br"), element("small", {}, `${r.owner}, organisation ${r.organisation}`));
    row.append(identity);
    const given = r.fields.filter((f) => f in values);
    const gets = element("td");
    if (!reached.has(r.owner)) {
      gets.append(plan.unreachable.includes(r.owner) ? "Rien : ses appareils n'utilisent que des clés post-quantiques, que ce navigateur ne sait pas encore sceller." : given.length ? "Rien : aucun appareil activé." : "Rien.");
    } else {
      const list = element("ul");
      for (const f of given) list.append(element("li", {}, fieldLabel(f)));
      for (const file of files.filter((f) => given.includes(f.field))) list.append(element("li", {}, `Pièce jointe : ${file.name}`));
      gets.append(list);
    }
    row.append(gets);
    const refusedCell = element("td");
    const refused = (r.refused || []).filter((f) => f.field in values);
    if (refused.length) {
      const list = element("ul");
      for (const f of refused) list.append(element("li", {}, `${fieldLabel(f.field)} — ${f.message}`));
      refusedCell.append(list);
    } else {
      refusedCell.append("—");
    }
    row.append(refusedCell);
    const numberCell = element("td");
    for (const n of reached.has(r.owner) ? numbers(replica, r.owner) : []) numberCell.append(element("code", { class: "numero" }, n), element("br"));
    row.append(numberCell);
    body.append(row);
  }
  table.append(body);
  const parts = [table];
  if (plan.leftOut.length) {
    parts.push(element("p", { class: "warning" }, `Transmises à personne : ${plan.leftOut.map(fieldLabel).join(", ")}.`));
  }
  if (!plan.views.length) parts.push(element("p", { class: "warning" }, "Aucun destinataire ne peut recevoir cette fiche : rien ne sera envoyé."));
  box.replaceChildren(...parts);
}

// -- reading ---------------------------------------------------------------------------------

function display(id, value, dates) {
  if (value === null || value === "") return "non renseigné";
  if (value === true) return "oui";
  if (value === false) return "non";
  if (typeof value === "string" && dates.has(id) && /^\d{4}-\d{2}-\d{2}$/.test(value)) {
    const [y, m, d] = value.split("-");
    return `${d}/${m}/${y}`;
  }
  return String(value);
}

async function readPage() {
  clear();
  const store = await openStore();
  const device = await localDevice(store);
  if (!device) throw notActivated();
  const keyId = device.secrets.public.keyId;
  if (!page.devices.split(",").includes(keyId)) {
    throw new x.ExchangeError("not_a_recipient", "Cette fiche a été scellée pour un autre de vos appareils : ouvrez-la depuis celui-ci.");
  }
  say("Récupération de la fiche scellée…");
  const data = await call("GET", `/echange/fiches/${encodeURIComponent(page.form)}?appareil=${encodeURIComponent(keyId)}`, { bytes: true });
  const replica = await syncDirectory(store);
  checkOwn(replica, device);
  say("Vérification et ouverture sur cet appareil…");
  let opened;
  try {
    opened = await x.openReceived(data, device.secrets, replica);
  } catch (error) {
    if (error instanceof x.ExchangeError && x.SENDER_FAULTS.has(error.code)) {
      await call("POST", `/echange/fiches/${encodeURIComponent(page.form)}/violation`, { json: { appareil: keyId, code: error.code } }).catch(() => null);
      throw new x.ExchangeError(error.code, `La fiche ne correspond pas à ce que l'expéditeur a signé (${error.message}) : elle n'est pas affichée, et le DPO en est averti.`);
    }
    if (error instanceof x.ExchangeError && error.code === "digest_mismatch") {
      // The relay checked every digest on accepting the form: the hub or its storage did this.
      throw new x.ExchangeError(error.code, "La fiche a été modifiée après son envoi (par le hub ou son stockage) : elle n'est pas affichée. Prévenez le DPO.");
    }
    throw error;
  }
  // What the page shows is what was verified: this form, this case, this sender.
  const m = opened.manifest;
  if (m.form !== page.form || m.case !== page.case) {
    throw new x.ExchangeError("form_mismatch", "Le hub a remis une autre fiche que celle demandée : elle n'est pas affichée. Prévenez le DPO.");
  }
  if (m.sender.user !== page.senderOwner || m.sender.org !== page.senderOrg) {
    throw new x.ExchangeError("sender_mismatch", "L'expéditeur signé n'est pas celui que le hub annonce : la fiche n'est pas affichée. Prévenez le DPO.");
  }
  const labels = JSON.parse(page.labels || "{}");
  const dates = new Set((page.dates || "").split(",").filter(Boolean));
  const list = document.getElementById("valeurs");
  list.replaceChildren();
  for (const [id, value] of Object.entries(opened.values)) {
    list.append(element("dt", {}, labels[id] || id), element("dd", {}, display(id, value, dates)));
  }
  const attached = Object.values(opened.files);
  if (attached.length) {
    const links = document.getElementById("liste-pieces");
    for (const file of attached) {
      // Saved from memory: the decrypted bytes never go back to the hub.
      const url = URL.createObjectURL(new Blob([file.data], { type: file.type }));
      // Saved under an extension of its (checked) type, whatever name the sender gave.
      const endings = { "application/pdf": [".pdf"], "image/png": [".png"], "image/jpeg": [".jpg", ".jpeg"] }[file.type];
      const saveAs = endings.some((e) => file.name.toLowerCase().endsWith(e)) ? file.name : file.name + endings[0];
      const size = file.data.length < 1048576 ? `${Math.ceil(file.data.length / 1024)} Kio` : `${(file.data.length / 1048576).toFixed(1)} Mio`;
      links.append(element("li", {}, element("a", { href: url, download: saveAs }, file.name), ` (${size}, pour « ${labels[file.field] || file.field} »)`));
    }
    document.getElementById("pieces-jointes").hidden = false;
  }
  const created = new Date(m.created).toLocaleString("fr-FR", { timeZone: "Europe/Paris" });
  document.getElementById("verification").textContent =
    `Signée le ${created} par l'appareil ${m.sender.device} de ${m.sender.user} (organisation ${m.sender.org}), pour la finalité « ${m.purpose} » : signature vérifiée, contenu conforme, clé présente dans l'annuaire vérifié.` +
    (opened.rotated ? " Attention : cette clé a été remplacée depuis ; que la fiche ait été scellée avant est l'affirmation de l'expéditeur (antériorité non prouvable)." : "");
  document.getElementById("contenu-fiche").hidden = false;
  await call("POST", `/echange/fiches/${encodeURIComponent(page.form)}/ouverture`, { json: { appareil: keyId } });
  clear();
}

// -- start -----------------------------------------------------------------------------------

const pages = { appareils: devicesPage, redaction: composePage, lecture: readPage };
const start = pages[page.page];
if (start) {
  start().catch((error) => {
    bar.hidden = true;
    warn(explain(error));
  });
}
