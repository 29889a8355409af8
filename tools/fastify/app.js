// A small Fastify app as the attendance system (Asistencia) builds them: a static
// frontend, JWT `Authorization: Bearer` login, a CSRF cookie the page reads from script,
// a WebSocket, `import()`, a Worker that opens its own WebSocket and a service worker.
// Used by tests/tests/browser.rs (chromium_fastify_*). Listens on 127.0.0.1 only, on the
// port the OS picks, and prints `listening <url>` once it does. No telemetry of any kind.
"use strict";
const crypto = require("node:crypto");
const path = require("node:path");
const fastify = require("fastify")({ logger: false });

const SECRET = crypto.randomBytes(32);
const b64 = (b) => Buffer.from(b).toString("base64url");
function sign(claims) {
  const head = b64(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64(JSON.stringify(claims));
  const mac = crypto.createHmac("sha256", SECRET).update(`${head}.${body}`).digest();
  return `${head}.${body}.${b64(mac)}`;
}
function verify(token) {
  const [head, body, mac] = String(token || "").split(".");
  if (!mac) return null;
  const want = b64(crypto.createHmac("sha256", SECRET).update(`${head}.${body}`).digest());
  if (want !== mac) return null;
  return JSON.parse(Buffer.from(body, "base64url"));
}
function bearer(req) {
  const m = /^Bearer (.+)$/.exec(req.headers.authorization || "");
  return m && verify(m[1]);
}
function cookie(req, name) {
  for (const c of (req.headers.cookie || "").split(/;\s*/)) {
    const i = c.indexOf("=");
    if (c.slice(0, i) === name) return c.slice(i + 1);
  }
  return null;
}

// Every request the app got, for the test: method, URL, Host, what it answered.
const seen = [];
fastify.addHook("onResponse", async (req, reply) => {
  if (seen.length < 10000) {
    seen.push({ method: req.method, url: req.url, host: req.headers.host, status: reply.statusCode });
  }
});

fastify.register(require("@fastify/websocket"));
fastify.register(require("@fastify/static"), { root: path.join(__dirname, "public") });

fastify.get("/api/csrf", async (req, reply) => {
  const t = crypto.randomBytes(16).toString("hex");
  reply.header("set-cookie", `csrf=${t}; Path=/; SameSite=Strict`);
  return { ok: true };
});
fastify.post("/api/login", async (req, reply) => {
  const csrf = cookie(req, "csrf");
  if (!csrf || req.headers["x-csrf-token"] !== csrf) {
    return reply.code(403).send({ error: "csrf" });
  }
  const { user, password } = req.body || {};
  if (user !== "admin" || password !== "admin") return reply.code(401).send({ error: "login" });
  return { token: sign({ sub: user, host: req.headers.host }) };
});
fastify.get("/api/me", async (req, reply) => {
  const c = bearer(req);
  if (!c) return reply.code(401).send({ error: "token" });
  return { user: c.sub };
});
fastify.get("/api/seen", async () => seen);

fastify.register(async (f) => {
  // The token rides in the query: browsers cannot set headers on a WebSocket.
  f.get("/ws", { websocket: true }, (socket, req) => {
    const c = verify(new URL(req.url, "http://x").searchParams.get("token"));
    if (!c) return socket.close(4401, "token");
    socket.send(JSON.stringify({ hello: c.sub }));
    socket.on("message", (m) => socket.send(JSON.stringify({ echo: String(m) })));
  });
});

fastify.listen({ host: "127.0.0.1", port: 0 }).then((url) => {
  console.log(`listening ${url}`);
});
