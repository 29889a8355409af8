// A dedicated worker that opens its own WebSocket to the app, built from its location.
onmessage = (e) => {
  const token = e.data;
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + `/ws?token=${token}`;
  const ws = new WebSocket(url);
  const requests = () => performance.getEntriesByType("resource").map((r) => r.name);
  ws.onmessage = (m) => {
    postMessage({ ok: true, echo: JSON.parse(m.data).hello, requests: requests() });
    ws.close();
  };
  ws.onerror = () => postMessage({ ok: false, error: `WebSocket ${url} failed`, requests: requests() });
};
