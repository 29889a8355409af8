// Each step that works adds `li#ok-<step>`; one that fails adds `li#fail-<step>` and logs
// a console error. All done: `document.body.dataset.done`.
const $ = (id) => document.getElementById(id);
function mark(step, ok, detail) {
  const li = document.createElement("li");
  li.id = (ok ? "ok-" : "fail-") + step;
  li.textContent = `${step}: ${detail}`;
  $("status").append(li);
  if (!ok) console.error(`step ${step} failed: ${detail}`);
}
async function step(name, f) {
  try {
    mark(name, true, await f());
  } catch (e) {
    mark(name, false, e && e.message ? e.message : String(e));
  }
}
function wsUrl(p) {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + p;
}
function once(target, ok, bad) {
  return new Promise((resolve, reject) => {
    target.addEventListener(ok, resolve, { once: true });
    if (bad) target.addEventListener(bad, () => reject(new Error(bad)), { once: true });
  });
}
const within = (p, ms, what) =>
  Promise.race([p, new Promise((_, r) => setTimeout(() => r(new Error(`${what}: no answer in ${ms} ms`)), ms))]);

let token;
await step("csrf", async () => {
  const r = await fetch("/api/csrf");
  if (!r.ok) throw new Error(`HTTP ${r.status}`);
  const c = document.cookie.split("; ").find((c) => c.startsWith("csrf="));
  if (!c) throw new Error(`no csrf cookie in ${JSON.stringify(document.cookie)}`);
  return "read";
});
await step("login", async () => {
  const csrf = document.cookie.split("; ").find((c) => c.startsWith("csrf=")).slice(5);
  const r = await fetch("/api/login", {
    method: "POST",
    headers: { "content-type": "application/json", "x-csrf-token": csrf },
    body: JSON.stringify({ user: "admin", password: "admin" }),
  });
  if (!r.ok) throw new Error(`login HTTP ${r.status}`);
  token = (await r.json()).token;
  const me = await fetch("/api/me", { headers: { authorization: `Bearer ${token}` } });
  if (!me.ok) throw new Error(`me HTTP ${me.status}`);
  return (await me.json()).user;
});
await step("image", async () => {
  const img = $("logo");
  img.src = "/static/dot.svg";
  await once(img, "load", "error");
  return img.getAttribute("src");
});
await step("srcset", async () => {
  const img = new Image();
  img.srcset = "/static/dot.svg 1x, /static/dot.svg?2x 2x";
  const p = once(img, "load", "error");
  document.body.append(img);
  await p;
  return "loaded";
});
await step("import", async () => {
  const m = await import("./mod.js");
  return String(m.answer);
});
await step("websocket", async () => {
  const ws = new WebSocket(wsUrl(`/ws?token=${token}`));
  const first = await within(once(ws, "message", "error"), 5000, "websocket");
  ws.send("hola");
  const echo = await within(once(ws, "message", "error"), 5000, "websocket echo");
  ws.close();
  return JSON.parse(first.data).hello + " " + JSON.parse(echo.data).echo;
});
await step("worker", async () => {
  const w = new Worker("/static/worker.js");
  const p = within(once(w, "message", "error"), 5000, "worker");
  w.postMessage(token);
  const m = await p;
  if (!m.data.ok) throw new Error(m.data.error);
  window.workerRequests = m.data.requests;
  return m.data.echo;
});
await step("serviceworker", async () => {
  const reg = await navigator.serviceWorker.register("/sw.js");
  await within(navigator.serviceWorker.ready, 5000, "service worker ready");
  const sw = reg.active || reg.waiting || reg.installing;
  const ch = new MessageChannel();
  const p = within(once(ch.port1, "message"), 5000, "service worker");
  ch.port1.start();
  sw.postMessage("cached?", [ch.port2]);
  const m = await p;
  window.swRequests = m.data.requests;
  if (m.data.cached < 3) throw new Error(`cached ${m.data.cached}`);
  return `${m.data.cached} cached`;
});
document.body.dataset.done = "1";
