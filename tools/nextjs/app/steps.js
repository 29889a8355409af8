"use client";
// Each step marks li#ok-<step> when it works: hydrated (React runs), an API route answers,
// a client-side navigation keeps this window (no full reload), the service worker
// controls the page.
import Link from "next/link";
import { useEffect, useState } from "react";

export default function Steps({ page }) {
  const [ok, setOk] = useState([]);
  const mark = (s) => setOk((o) => (o.includes(s) ? o : [...o, s]));
  useEffect(() => {
    mark("hydrated");
    if (!window.__corpusLoadedOnce) window.__corpusLoadedOnce = page;
    if (window.__corpusLoadedOnce !== page) mark("client-navigation");
    fetch("/api/hello")
      .then((r) => r.json())
      .then((j) => j.hello === "mundo" && mark("api"));
    if ("serviceWorker" in navigator) {
      navigator.serviceWorker
        .register("/sw.js")
        .then(() => navigator.serviceWorker.ready)
        .then(() => mark("service-worker"))
        .catch((e) => console.log("sw failed", String(e)));
    }
  }, [page]);
  const [count, setCount] = useState(0);
  return (
    <div>
      <button id="contar" onClick={() => setCount((c) => c + 1)}>
        contar {count}
      </button>
      <span id="contagem">{count}</span>
      <ul>
        {ok.map((s) => (
          <li key={s} id={`ok-${s}`}>
            {s}
          </li>
        ))}
      </ul>
      <Link id="ir-sobre" href="/about">
        sobre
      </Link>{" "}
      <Link id="ir-inicio" href="/">
        início
      </Link>
    </div>
  );
}
