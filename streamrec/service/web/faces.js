"use strict";
// The Faces page: people, their samples, unknown people and recent recognitions, through the
// REST API under api/. Names and labels are always set as text, never as HTML. The token (if
// any) comes from this page's own ?token= and is forwarded to every request and image.

const token = new URLSearchParams(location.search).get("token");
const withToken = (url) =>
  token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;
const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
const REFRESH_MS = 5000;

const state = { people: [], unknowns: [], person: null };
const shown = {}; // the data each list was last drawn from

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function button(text, onClick, cls) {
  const b = el("button", cls, text);
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

function face(url, alt) {
  if (!url) return el("div", "noface", "no face");
  const img = el("img", "face");
  img.alt = alt;
  img.loading = "lazy";
  img.src = withToken(url);
  return img;
}

function ago(seconds) {
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function say(text, bad) {
  const s = $("status");
  s.textContent = text;
  s.className = bad ? "bad" : "ok";
}

function detail(body) {
  if (!body) return "";
  if (typeof body.detail === "string") return body.detail;
  if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg).join("; ");
  return body.message || "";
}

async function api(method, url, body) {
  const options = { method, headers: {} };
  if (body instanceof FormData) {
    options.body = body;
  } else if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers["content-type"] = "application/json";
  }
  const response = await fetch(withToken(url), options);
  const json = (response.headers.get("content-type") || "").includes("json")
    ? await response.json()
    : null;
  if (!response.ok) throw new Error(detail(json) || `HTTP ${response.status}`);
  return json;
}

// Runs an action, reports it, redraws everything.
async function act(done, action) {
  if (document.activeElement) document.activeElement.blur();
  try {
    const result = await action();
    say(typeof done === "function" ? done(result) : done);
  } catch (err) {
    say(err.message, true);
  }
  await refresh(true);
}

// Redraws a list when its data changed, unless the user is typing in it.
function draw(id, data, build, force) {
  const key = JSON.stringify(data);
  const box = $(id);
  if (!force && (shown[id] === key || box.contains(document.activeElement))) return;
  shown[id] = key;
  const items = build(data);
  box.replaceChildren(...(items.length ? items : [el("p", "empty", "none")]));
}

function enrolled(result) {
  const notes = [];
  if (result.duplicates) notes.push(`${plural(result.duplicates, "duplicate")} skipped`);
  for (const s of result.strays) notes.push(s);
  const head = `${result.name}: ${plural(result.samples, "sample")}`;
  return notes.length ? `${head} (${notes.join("; ")})` : head;
}

function isPerson(name) {
  return state.people.some((p) => p.name === name);
}

// Enrols a new person, or adds to an enrolled one, from a FormData holding photos or a recent id.
function enrol(name, form) {
  if (isPerson(name)) {
    return api("POST", `api/people/${enc(name)}/samples`, form);
  }
  form.append("name", name);
  return api("POST", "api/people", form);
}

// -- people ------------------------------------------------------------------------------

function personCard(p) {
  const card = el("button", "card person");
  card.type = "button";
  card.dataset.name = p.name;
  card.classList.toggle("selected", p.name === state.person);
  card.append(face(p.thumbnail, p.name), el("span", "name", p.name),
              el("span", "meta", plural(p.samples, "sample")));
  card.addEventListener("click", () => openPerson(p.name));
  return card;
}

async function openPerson(name) {
  state.person = name;
  $("person").hidden = false;
  $("person-name").textContent = name;
  $("rename-name").value = "";
  await refreshPerson(true);
  draw("people", state.people, (people) => people.map(personCard), true);
  $("person").scrollIntoView({ block: "nearest" });
}

function closePerson() {
  state.person = null;
  $("person").hidden = true;
  draw("people", state.people, (people) => people.map(personCard), true);
}

function sampleCard(s) {
  const name = state.person;
  const card = el("div", "card sample");
  card.dataset.id = String(s.id);
  card.append(face(s.face, s.source), el("span", "meta", s.source || "sample"),
    button("Delete", () => act("sample deleted", () =>
      api("DELETE", `api/people/${enc(name)}/samples/${s.id}`)), "danger"));
  return card;
}

async function refreshPerson(force) {
  if (!state.person) return;
  try {
    const samples = await api("GET", `api/people/${enc(state.person)}/samples`);
    draw("samples", samples, (list) => list.map(sampleCard), force);
  } catch (err) {
    closePerson(); // deleted or renamed elsewhere
  }
}

// -- unknown people ----------------------------------------------------------------------

function unknownRow(u) {
  const row = el("div", "row unknown");
  row.dataset.label = u.label;
  const crops = el("div", "crops");
  crops.append(...(u.crops.length ? u.crops.map((c) => face(c, u.label)) : [face(null, u.label)]));
  const title = el("div", "title");
  title.append(el("span", "name", u.label),
               el("span", "meta", `${plural(u.samples, "sighting")} · last seen ${ago(u.last_seen)}`));

  const naming = el("form", "inline name-form");
  const name = el("input");
  name.placeholder = "Name, or an enrolled person";
  name.required = true;
  name.maxLength = 100;
  name.setAttribute("list", "names");
  naming.append(name, el("button", null, "Name"));
  naming.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(enrolled, () => api("POST", `api/unknowns/${enc(u.label)}/name`, { name: name.value }));
  });

  const merging = el("form", "inline merge-form");
  const into = el("select");
  into.append(el("option", null, "merge into…"));
  into.options[0].value = "";
  for (const other of state.unknowns) {
    if (other.label !== u.label) into.append(el("option", null, other.label));
  }
  merging.append(into, el("button", null, "Merge"));
  merging.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!into.value) return say("choose whom to merge into", true);
    act(enrolled, () => api("POST", `api/unknowns/${enc(u.label)}/merge`, { into: into.value }));
  });

  const remove = button("Delete", () => {
    if (!confirm(`Delete ${u.label} and its faces?`)) return;
    act(`${u.label} deleted`, () => api("DELETE", `api/unknowns/${enc(u.label)}`));
  }, "danger");
  row.append(crops, title, naming, merging, remove);
  return row;
}

// -- recent recognitions -----------------------------------------------------------------

function recentRow(r) {
  const row = el("div", "row recent");
  row.dataset.id = String(r.id);
  const who = r.kind === "identified" ? r.name : r.label;
  const title = el("div", "title");
  const score = r.score === null ? "" : ` · ${r.score.toFixed(2)}`;
  title.append(el("span", "name", who),
               el("span", "meta", `${r.camera}${score} · ${ago(r.time)}`));
  const crops = el("div", "crops");
  crops.append(face(r.crop, who));
  row.append(crops, title);
  if (r.crop) {
    const form = el("form", "inline this-is");
    const name = el("input");
    name.placeholder = "This is…";
    name.required = true;
    name.maxLength = 100;
    name.setAttribute("list", "names");
    form.append(name, el("button", null, "Enrol"));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const data = new FormData();
      data.append("recent", String(r.id));
      act(enrolled, () => enrol(name.value.trim(), data));
    });
    row.append(form);
  }
  return row;
}

// -- refresh -----------------------------------------------------------------------------

async function refresh(force) {
  try {
    const [people, unknowns, recent] = await Promise.all([
      api("GET", "api/people"), api("GET", "api/unknowns"), api("GET", "api/recent?n=30"),
    ]);
    state.people = people;
    state.unknowns = unknowns;
    $("people-count").textContent = String(people.length);
    $("unknown-count").textContent = String(unknowns.length);
    $("names").replaceChildren(...people.map((p) => { const o = el("option"); o.value = p.name; return o; }));
    draw("people", people, (list) => list.map(personCard), force);
    draw("unknowns", unknowns, (list) => list.map(unknownRow), force);
    draw("recent", recent, (list) => list.map(recentRow), force);
    if (state.person && !isPerson(state.person)) closePerson();
    await refreshPerson(force);
  } catch (err) {
    say(`cannot load the face library: ${err.message}`, true);
  }
}

function setUp() {
  $("live-link").href = withToken("./");
  $("enrol").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = $("enrol-name").value.trim();
    const files = [...$("enrol-files").files];
    const form = new FormData();
    act((result) => { $("enrol").reset(); return enrolled(result); }, async () => {
      if (isPerson(name)) { // one photo per call for an enrolled person
        let result;
        for (const file of files) {
          const one = new FormData();
          one.append("file", file);
          result = await enrol(name, one);
        }
        return result;
      }
      for (const file of files) form.append("files", file);
      return enrol(name, form);
    });
  });
  $("add-sample").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const form = new FormData();
    form.append("file", $("sample-file").files[0]);
    act((result) => { $("add-sample").reset(); return enrolled(result); },
        () => api("POST", `api/people/${enc(state.person)}/samples`, form));
  });
  $("rename").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = $("rename-name").value.trim();
    act(`renamed to ${name}`, async () => {
      const person = await api("PATCH", `api/people/${enc(state.person)}`, { name });
      state.person = person.name;
      $("person-name").textContent = person.name;
      $("rename-name").value = "";
    });
  });
  $("person-delete").addEventListener("click", () => {
    const name = state.person;
    if (!confirm(`Delete ${name} with every sample and face?`)) return;
    act(`${name} deleted`, async () => {
      await api("DELETE", `api/people/${enc(name)}`);
      closePerson();
    });
  });
  $("person-close").addEventListener("click", closePerson);
  refresh(true);
  setInterval(() => refresh(false), REFRESH_MS);
}

setUp();
