//! `/console.js` and `/console.css`, served from constants.

use axum::http::header;
use axum::response::IntoResponse;

pub(super) async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        JS,
    )
}

pub(super) async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        CSS,
    )
}

/// The console's script, loaded first in every page's `<head>` (before any form exists):
/// - deletes console cookies a script can see (ours are HttpOnly: a visible one was
///   planted, by a device page on the gateway say) along every path of this page, and
///   loads the page again once;
/// - after sign-in keeps the login key (`#login[data-key]`) and goes on;
/// - adds the login key to every POST form as it is submitted;
/// - submits a sign-in link's confirmation form marked `data-auto`.
const JS: &str = r#"(function () {
  var NAMES = ["ponte_console", "__Host-ponte_console"], KEY = "ponte-console-login";
  var planted = document.cookie.split(/;\s*/).some(function (c) {
    return NAMES.indexOf(c.split("=")[0]) >= 0;
  });
  if (planted) {
    var parts = location.pathname.split("/"), paths = ["/"];
    for (var i = 1; i < parts.length; i++) {
      var p = parts.slice(0, i + 1).join("/");
      if (p) { paths.push(p); paths.push(p + "/"); }
    }
    NAMES.forEach(function (n) {
      paths.forEach(function (p) {
        document.cookie = n + "=; path=" + p + "; max-age=0";
        document.cookie = n + "=; path=" + p + "; max-age=0; secure";
      });
    });
  }
  document.addEventListener("submit", function (e) {
    var f = e.target;
    if (!f || String(f.method).toLowerCase() !== "post") return;
    var k = localStorage.getItem(KEY) || "";
    var input = f.querySelector("input[name=_login]");
    if (!input) {
      input = document.createElement("input");
      input.type = "hidden";
      input.name = "_login";
      f.appendChild(input);
    }
    input.value = k;
  }, true);
  document.addEventListener("DOMContentLoaded", function () {
    var login = document.getElementById("login");
    if (login && login.getAttribute("data-key")) {
      localStorage.setItem(KEY, login.getAttribute("data-key"));
      location.replace(login.getAttribute("data-next") || "/");
      return;
    }
    // This page may have been made for the planted cookie: load it again without it
    // (once; a GET, never a form sent again).
    if (planted && !sessionStorage.getItem("ponte-console-purged")) {
      sessionStorage.setItem("ponte-console-purged", "1");
      location.replace(location.href);
      return;
    }
    if (!planted) sessionStorage.removeItem("ponte-console-purged");
    var auto = document.querySelector("form[data-auto]");
    if (auto) auto.submit();
  });
})();
"#;

const CSS: &str = r#"
*{box-sizing:border-box}body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f6f8;color:#1d2733}
nav{display:flex;justify-content:space-between;align-items:center;padding:.6rem 1.5rem;background:#14324f;color:#fff}
nav a.brand{color:#fff;font-weight:700;text-decoration:none;font-size:1.1rem}nav .who{display:flex;gap:.8rem;align-items:center}
nav form{margin:0}main{max-width:980px;margin:1.5rem auto;padding:0 1rem}h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.15rem;margin-top:0}
.sub{color:#5b6b7b;margin-top:0}.card{background:#fff;border:1px solid #dde3e9;border-radius:8px;padding:1.2rem 1.4rem;margin:1rem 0}
.narrow{max-width:560px}dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1.2rem}dt{color:#5b6b7b}dd{margin:0}
.badge{display:inline-block;padding:.05rem .55rem;border-radius:99px;font-size:.8rem;font-weight:700;letter-spacing:.03em}
.badge.online{background:#d7f5df;color:#11692c}.badge.offline{background:#eceff2;color:#55616d}.badge.pairing{background:#fff1c9;color:#7a5700}
.actions{display:flex;flex-wrap:wrap;gap:.5rem;margin-top:1rem}.actions form{margin:0}
button,.button{display:inline-block;border:0;border-radius:6px;padding:.45rem .9rem;background:#1f6feb;color:#fff;font:inherit;cursor:pointer;text-decoration:none}
.danger{background:#c62828}.quiet{background:#e6ebf0;color:#1d2733}.small{padding:.2rem .6rem;font-size:.85rem}
table{width:100%;border-collapse:collapse}th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #edf0f3}td form{margin:0}
.page-header{display:flex;justify-content:space-between;align-items:center;gap:1rem}.code{font:700 2rem ui-monospace,monospace;letter-spacing:.1em}
pre{background:#0f1b27;color:#e6edf3;padding:.8rem;border-radius:6px;overflow-x:auto}pre.wrap{white-space:pre-wrap;word-break:break-all}
textarea{width:100%;font:13px ui-monospace,monospace}.error{color:#c62828}.muted{color:#5b6b7b}
"#;
