// A browser app on its own origin: the authorization-code flow with PKCE
// (S256 through WebCrypto) as a public client, the code exchanged with
// fetch (CORS), then the resource API called with the access token. The
// outcome goes into #result as JSON, with data-done set, for the test.
"use strict";

const VERIFIER_KEY = "portcullis_pkce_verifier";
const STATE_KEY = "portcullis_state";

function report(outcome) {
  const out = document.getElementById("result");
  out.textContent = JSON.stringify(outcome);
  out.setAttribute("data-done", outcome.ok ? "ok" : "failed");
}

function base64url(bytes) {
  let binary = "";
  for (const b of bytes) {
    binary += String.fromCharCode(b);
  }
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(n) {
  return base64url(crypto.getRandomValues(new Uint8Array(n)));
}

async function s256(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

async function start(config) {
  const verifier = randomString(32);
  const state = randomString(16);
  const challenge = await s256(verifier);
  sessionStorage.setItem(VERIFIER_KEY, verifier);
  sessionStorage.setItem(STATE_KEY, state);
  const url = new URL(config.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: config.client_id,
    redirect_uri: config.redirect_uri,
    scope: config.scope,
    state: state,
    code_challenge: challenge,
    code_challenge_method: "S256",
  }).toString();
  location.assign(url.toString());
}

async function readJson(response) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch (e) {
    return { not_json: text };
  }
}

async function callback(config) {
  const params = new URLSearchParams(location.search);
  const expected = sessionStorage.getItem(STATE_KEY);
  const verifier = sessionStorage.getItem(VERIFIER_KEY);
  sessionStorage.removeItem(STATE_KEY);
  sessionStorage.removeItem(VERIFIER_KEY);
  if (params.get("error")) {
    return report({ ok: false, step: "authorize", error: params.get("error") });
  }
  if (!expected || params.get("state") !== expected) {
    return report({ ok: false, step: "state", state: params.get("state") });
  }
  if (params.get("iss") !== config.issuer) {
    return report({ ok: false, step: "iss", iss: params.get("iss") });
  }
  let step = "token";
  try {
    const tokenResponse = await fetch(config.token_endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code: params.get("code") || "",
        redirect_uri: config.redirect_uri,
        client_id: config.client_id,
        code_verifier: verifier || "",
      }),
    });
    const tokens = await readJson(tokenResponse);
    if (!tokenResponse.ok) {
      return report({ ok: false, step, status: tokenResponse.status, body: tokens });
    }
    step = "me";
    const meResponse = await fetch(config.api + "/api/v2/me", {
      headers: { Authorization: "Bearer " + tokens.access_token },
    });
    const me = await readJson(meResponse);
    report({
      ok: meResponse.ok,
      step,
      token_type: tokens.token_type,
      access_token: tokens.access_token,
      refresh_token: Boolean(tokens.refresh_token),
      scope: tokens.scope,
      me_status: meResponse.status,
      me,
    });
  } catch (e) {
    report({ ok: false, step, error: e.name + ": " + e.message });
  }
}

// Calls /token and the resource API from this origin, whatever it is, and
// reports how each call ended: a status (the browser let the page read the
// answer) or the error fetch rejected with (a CORS refusal is a TypeError).
async function probe(config) {
  const outcome = { ok: true };
  try {
    const r = await fetch(config.token_endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code: "not-a-code",
        redirect_uri: config.redirect_uri,
        client_id: config.client_id,
        code_verifier: randomString(32),
      }),
    });
    outcome.token = { status: r.status, body: await readJson(r) };
  } catch (e) {
    outcome.token = { error: e.name + ": " + e.message };
  }
  try {
    const r = await fetch(config.api + "/api/v2/me", {
      headers: { Authorization: "Bearer not-a-token" },
    });
    outcome.me = { status: r.status };
  } catch (e) {
    outcome.me = { error: e.name + ": " + e.message };
  }
  report(outcome);
}

async function main() {
  const config = await readJson(await fetch("/config.json"));
  if (location.pathname === "/callback") {
    return callback(config);
  }
  if (location.pathname === "/probe") {
    return probe(config);
  }
  const login = document.getElementById("login");
  login.addEventListener("click", () => {
    start(config).catch((e) => report({ ok: false, step: "start", error: e.name + ": " + e.message }));
  });
  login.disabled = false;
}

main().catch((e) => report({ ok: false, step: "main", error: e.name + ": " + e.message }));
