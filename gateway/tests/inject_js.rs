//! The injected script's URL and cookie logic, run in Node.js against stand-ins for the
//! browser objects it patches (the real-browser test drives it in Chromium).

use ponte_gateway::rewrite::{inject_script, Scope};
use std::process::Command;

const SID: &str = "3f2b8c1e-0000-4000-8000-00000000abcd";

/// Browser stand-ins: each patched API records the URL it finally receives.
const STUBS: &str = r#"
globalThis.window = globalThis;
window.location = { host: "gw.example:8002", protocol: "http:" };
var seen = [];
window.fetch = function (u) { seen.push(["fetch", typeof u === "string" ? u : u.url]); };
window.XMLHttpRequest = function () {};
XMLHttpRequest.prototype.open = function (m, u) { seen.push(["xhr", u]); };
window.WebSocket = function (u) { seen.push(["ws", u]); };
window.WebSocket.OPEN = 1;
window.EventSource = function (u) { seen.push(["es", u]); };
window.history = { pushState: function (s, t, u) { seen.push(["push", u]); },
                   replaceState: function (s, t, u) { seen.push(["replace", u]); } };
window.open = function (u) { seen.push(["open", u]); };
window.Element = function () {};
Element.prototype.setAttribute = function (n, v) { seen.push(["attr:" + n, v]); };
window.Document = function () {};
var jar = ["saas=secret", "__pd_old=1"];
Object.defineProperty(Document.prototype, "cookie", {
  configurable: true, enumerable: true,
  get: function () { return jar.join("; "); },
  set: function (v) { jar.push(v); }
});
var document = new Document();
"#;

const CALLS: &str = r##"
fetch("/load_objects.fcgi");
fetch(new Request("http://gw.example:8002/login.fcgi", { method: "POST" }));
fetch("P/already");
fetch("https://example.com/api");
new XMLHttpRequest().open("POST", "/login.fcgi", false);
new XMLHttpRequest().open("GET", "http://192.168.1.50/x?y=1");
new XMLHttpRequest().open("GET", "rel.json");
new WebSocket("ws://" + location.host + "/events");
new WebSocket("ws://192.168.1.50/events");
new WebSocket("/events");
new EventSource("/sse");
history.pushState({}, "", "/pt_BR/html/index.html");
history.replaceState({}, "", "#tab2");
window.open("//192.168.1.50/help");
new Element().setAttribute("src", "/img/a.png");
new Element().setAttribute("class", "/not-a-url");
document.cookie = "session=ab/c+d==; path=/";
document.cookie = "lang=pt; Path=/pt_BR; domain=192.168.1.50";
document.cookie = "x=1";
console.log(JSON.stringify({ seen: seen, jar: jar, visible: document.cookie, WebSocketOPEN: WebSocket.OPEN }));
"##;

#[test]
fn injected_script_maps_runtime_urls_and_scopes_cookies() {
    let scope = Scope::new(SID, "http://192.168.1.50");
    let script = inject_script(&scope);
    let body = script
        .strip_prefix("<script>")
        .and_then(|s| s.strip_suffix("</script>"))
        .unwrap();
    let prefix = scope.prefix();
    let program = format!("{STUBS}\n{body}\n{}", CALLS.replace("P/", prefix));
    let out = Command::new("node")
        .args(["-e", &program])
        .output()
        .expect("run node (Node.js is needed by the tests)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = |s: &str| s.replace("P/", prefix);
    let want_seen: Vec<(String, String)> = [
        ("fetch", "P/load_objects.fcgi"),
        ("fetch", "http://gw.example:8002P/login.fcgi"),
        ("fetch", "P/already"),
        ("fetch", "https://example.com/api"),
        ("xhr", "P/login.fcgi"),
        ("xhr", "P/x?y=1"),
        ("xhr", "rel.json"),
        ("ws", "ws://gw.example:8002P/events"),
        ("ws", "ws://gw.example:8002P/events"),
        ("ws", "ws://gw.example:8002P/events"),
        ("es", "P/sse"),
        ("push", "P/pt_BR/html/index.html"),
        ("replace", "#tab2"),
        ("open", "P/help"),
        ("attr:src", "P/img/a.png"),
        ("attr:class", "/not-a-url"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), p(v)))
    .collect();
    let seen: Vec<(String, String)> = serde_json::from_value(got["seen"].clone()).unwrap();
    assert_eq!(seen, want_seen);
    assert_eq!(
        got["jar"],
        serde_json::json!([
            "saas=secret",
            "__pd_old=1",
            p("__pd_session=ab/c+d==; path=P/"),
            p("__pd_lang=pt; path=P/pt_BR"),
            "__pd_x=1"
        ])
    );
    // The page sees its own cookies under their own names, and nothing else.
    assert_eq!(got["visible"], "old=1; session=ab/c+d==; lang=pt; x=1");
    assert_eq!(got["WebSocketOPEN"], 1);
}
