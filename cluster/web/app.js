// keyquorum's read-only web UI: each page reads the node's JSON API with the
// operator's token and renders tables. Values are written with textContent only,
// so nothing the API returns is ever parsed as HTML.
"use strict";

const TOKEN_KEY = "keyquorum-token";

function token() { return sessionStorage.getItem(TOKEN_KEY); }

async function api(path) {
  const headers = token() ? { "X-Keyquorum-Token": token() } : {};
  const response = await fetch(path, { headers });
  const body = await response.json().catch(() => ({}));
  // Health answers 429 and 503 with a body worth showing.
  if (!response.ok && !path.endsWith("/health")) {
    const reason = (body.errors || [response.statusText]).join("; ");
    throw new Error(`${response.status}: ${reason}`);
  }
  return body;
}

function element(tag, text, className) {
  const made = document.createElement(tag);
  if (text !== undefined) made.textContent = String(text);
  if (className) made.className = className;
  return made;
}

function table(headers, rows) {
  const made = element("table");
  const head = made.createTHead().insertRow();
  headers.forEach((name) => head.appendChild(element("th", name)));
  const body = made.createTBody();
  rows.forEach((row) => {
    const line = body.insertRow();
    row.forEach((cell) => {
      const td = line.insertCell();
      if (cell instanceof Node) td.appendChild(cell); else td.textContent = show(cell);
    });
  });
  return made;
}

function show(value) {
  if (value === null || value === undefined) return "-";
  if (Array.isArray(value)) return value.join(", ") || "-";
  return String(value);
}

function facts(pairs) { return table(["what", "value"], pairs); }

function flag(good, yes, no) { return element("span", good ? yes : no, good ? "ok" : "bad"); }

function when(seconds) { return seconds ? new Date(seconds * 1000).toISOString() : "-"; }

const PAGES = {
  async cluster(main) {
    const me = await api("/v1/sys/raft/status");
    main.appendChild(element("h2", `Cluster, as node ${me.node_id} sees it`));
    main.appendChild(facts([
      ["node", me.node_id], ["raft address", me.address], ["role", me.role],
      ["leader", me.leader], ["term", me.term], ["commit index", me.commit_index],
      ["applied index", me.applied_index],
      ["quorum", flag(me.has_quorum, "yes", "no")],
      ["seal", flag(!me.sealed, "unsealed", "sealed")],
      ["health", flag(me.health < 500, String(me.health), String(me.health))],
    ]));
    main.appendChild(element("h3", "Peers"));
    main.appendChild(table(["raft address", "role", "connection", "match index"],
      me.peers.map((peer) => [peer.address, peer.address === me.leader ? "leader" : "follower",
        flag(peer.connected, "connected", "unreachable"), peer.match_index])));
    main.appendChild(element("p", "Only the leader knows how far each peer has replicated.",
      "note"));
  },

  async seal(main) {
    const seal = await api("/v1/sys/seal-status");
    main.appendChild(element("h2", "Seal"));
    main.appendChild(facts([
      ["state", flag(!seal.sealed, "unsealed", "sealed")],
      ["initialized", seal.initialized], ["seal type", seal.kind],
      ["threshold", `${seal.threshold} of ${seal.shares} shares`],
      ["unseal progress", seal.progress_text], ["keyring version", seal.keyring_version],
    ]));
  },

  async replication(main) {
    main.appendChild(element("h2", "Replication"));
    const status = await api("/v1/sys/replication/status");
    main.appendChild(facts([
      ["mode", status.mode], ["cluster id", status.cluster_id],
      ["sequence", status.sequence], ["primary sequence", status.primary_sequence],
      ["lag (changes)", status.lag_sequences], ["lag (seconds)", status.lag_seconds],
      ["connected to", status.connected_to], ["primary addresses", status.primary_addresses],
      ["this cluster's addresses", status.addresses], ["objects", status.objects],
    ]));
  },

  async tenancy(main) {
    main.appendChild(element("h2", "Scopes, roles and credentials"));
    const scopes = (await api("/v1/kmip/scope")).scopes;
    if (!scopes.length) main.appendChild(element("p", "No scope yet.", "note"));
    for (const scope of scopes) {
      main.appendChild(element("h3", `Scope ${scope}`));
      const roles = (await api(`/v1/kmip/scope/${encodeURIComponent(scope)}/role`)).roles;
      const rows = [];
      for (const name of roles) {
        const base = `/v1/kmip/scope/${encodeURIComponent(scope)}/role/${encodeURIComponent(name)}`;
        const role = await api(base);
        const issued = (await api(`${base}/credential`)).credentials;
        const live = issued.filter((c) => !c.revoked);
        rows.push([name, role.operations, `${live.length} live, ${issued.length - live.length} revoked`,
          live.map((c) => `${c.common_name} (${c.serial_number}, until ${when(c.not_after)})`)]);
      }
      main.appendChild(table(["role", "operations", "credentials", "live credentials"], rows));
    }
  },

  async objects(main) {
    main.appendChild(element("h2", "Managed objects by scope, type and state"));
    const counts = (await api("/v1/sys/objects")).counts;
    if (!counts.length) {
      main.appendChild(element("p", "No managed object yet.", "note"));
      return;
    }
    main.appendChild(table(["scope", "object type", "state", "count"],
      counts.map((c) => [c.scope, c.object_type.replaceAll("_", " "), c.state.replaceAll("_", " "),
        c.count])));
  },

  async audit(main) {
    main.appendChild(element("h2", "Audit"));
    try {
      const devices = (await api("/v1/sys/audit")).devices;
      main.appendChild(devices.length
        ? table(["name", "type", "where", "enabled"], devices.map((d) => [
          d.name, d.type, d.local ? d.local.path : JSON.stringify(d.options), when(d.enabled_at)]))
        : element("p", "No audit device: requests are not recorded.", "bad"));
    } catch (error) {
      main.appendChild(element("p", `Devices: ${error.message}.`, "note"));
    }
    const trail = (await api("/v1/sys/audit-trail?limit=50")).devices;
    if (!trail.length) {
      main.appendChild(element("p", "No file device on this node: no records to read back.",
        "note"));
    }
    for (const device of trail) {
      main.appendChild(element("h3", `Latest records of ${device.device}, newest first`));
      main.appendChild(table(["seq", "time", "type", "fields"], device.records.reverse().map(
        (r) => [r.seq, r.time, r.type, Object.entries(r)
          .filter(([key]) => !["seq", "prev", "time", "type", "node"].includes(key))
          .map(([key, value]) => `${key}=${typeof value === "object" ? JSON.stringify(value)
            : value}`).join(" ")])));
    }
  },
};

// Each render builds a page of its own and shows it only if no newer one started
// meanwhile: a hash change during a slow request must not mix two pages.
let renders = 0;

async function render() {
  const generation = ++renders;
  const name = (location.hash || "#cluster").slice(1);
  const page = PAGES[name] ? name : "cluster";
  const built = document.createElement("div");
  document.body.dataset.ready = "false";
  try {
    await PAGES[page](built);
  } catch (error) {
    const hint = token() ? "" : " Enter an admin token above (a read-only one is enough).";
    built.appendChild(element("p", `Cannot show this page: ${error.message}.${hint}`, "bad"));
  }
  if (generation !== renders) return;
  document.getElementById("page").replaceChildren(...built.childNodes);
  document.querySelectorAll("nav a").forEach((link) =>
    link.classList.toggle("current", link.getAttribute("href") === `#${page}`));
  document.body.dataset.page = page;
  document.body.dataset.ready = "true";
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const field = document.getElementById("token");
  if (field.value) sessionStorage.setItem(TOKEN_KEY, field.value);
  field.value = "";
  render();
});
document.getElementById("logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  render();
});
window.addEventListener("hashchange", render);
render();
