// A service worker that precaches the shell and answers from the cache first.
const SHELL = ["/", "/static/app.js", "/static/app.css"];
self.addEventListener("install", (e) => {
  e.waitUntil(caches.open("shell-v1").then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});
self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));
self.addEventListener("fetch", (e) => {
  if (e.request.method !== "GET") return;
  e.respondWith(caches.match(e.request).then((r) => r || fetch(e.request)));
});
self.addEventListener("message", (e) => {
  caches.open("shell-v1").then((c) => c.keys()).then((keys) => {
    e.ports[0].postMessage({
      cached: keys.length,
      requests: performance.getEntriesByType("resource").map((r) => r.name),
    });
  });
});
