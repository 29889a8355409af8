//! The shipped deployment files (`deploy/`) stay valid: both systemd units pass
//! `systemd-analyze verify`, keep their hardening and score "OK" in
//! `systemd-analyze security`; the nginx site passes `nginx -t` and maps the routes of
//! DESIGN.md onto the listeners of the example cloud config; the example configs parse;
//! compose, the Dockerfile and the `.deb` metadata have what the deployment needs.
//! The tools are required: a missing one fails the test, naming its Debian package.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const UNIT: &str = include_str!("../../deploy/ponte-connector.service");
const CLOUD_UNIT: &str = include_str!("../../deploy/ponte.service");
const EXAMPLE: &str = include_str!("../../deploy/connector.toml.example");
const CLOUD_EXAMPLE: &str = include_str!("../../deploy/ponte.toml.example");
const NGINX_SITE: &str = include_str!("../../deploy/nginx/ponte.conf");
const COMPOSE: &str = include_str!("../../deploy/compose.yaml");
const DOCKERFILE: &str = include_str!("../../deploy/Dockerfile");
const DOCKERIGNORE: &str = include_str!("../../.dockerignore");
const CONNECTOR_MANIFEST: &str = include_str!("../Cargo.toml");

/// Hardening both units keep (one per line, exactly).
const HARDENING: &[&str] = &[
    "User=ponte",
    "Group=ponte",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectControlGroups=yes",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces=yes",
    "RestrictSUIDSGID=yes",
    "MemoryDenyWriteExecute=yes",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "Restart=on-failure",
    "UMask=0077",
];

/// Every key `ponte serve --config` reads (the long flags with `_`).
const CLOUD_KEYS: &[&str] = &[
    "data_dir",
    "database",
    "nats",
    "roles",
    "api_listen",
    "relay_listen",
    "gateway_listen",
    "relay_public_url",
    "gateway_public_url",
    "remote_host_mode",
    "public_domain",
    "user_jwt_secret_file",
    "user_jwt_public_key",
    "connector_token_ttl",
    "trust_forwarded_for",
    "shutdown_grace",
    "session_idle_ttl",
    "session_max_ttl",
    "session_rate_per_second",
    "session_rate_burst",
    "connector_rate_per_second",
    "connector_rate_burst",
    "header_read_timeout",
    "keepalive_idle_timeout",
    "max_connections",
    "max_connections_per_address",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ponte-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a tool the test needs; its absence fails the test, naming the Debian package.
fn run(cmd: &mut Command, package: &str) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.output().unwrap_or_else(|e| {
        panic!("`{program}` is needed for this test (Debian package `{package}`; .ci/run installs it): {e}")
    })
}

/// `systemd-analyze verify` on a copy of `text` named `name`, its ExecStart binary
/// replaced by one that exists (verify checks that it is executable).
fn verify_unit(name: &str, text: &str, exec: &str) {
    let dir = TempDir::new(name);
    let unit = dir.0.join(name);
    let bin = env!("CARGO_BIN_EXE_ponte-connector");
    let copy = text.replace(&format!("ExecStart={exec} "), &format!("ExecStart={bin} "));
    assert_ne!(copy, text, "{name}: no `ExecStart={exec} …` line");
    std::fs::write(&unit, copy).unwrap();
    let out = run(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&unit),
        "systemd",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains(name)).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify {name}: {stderr}"
    );
    // systemd's own exposure score (0 best, 10 worst; 1.4 when written): "OK" at most.
    let out = run(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--threshold=20"])
            .arg(&unit),
        "systemd",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let overall = stdout.lines().find(|l| l.contains("Overall exposure"));
    assert!(
        out.status.success() && overall.is_some(),
        "systemd-analyze security {name} (exposure above 2.0?): {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_hardened(name: &str, text: &str) {
    let lines: BTreeSet<&str> = text.lines().map(str::trim).collect();
    for needed in HARDENING {
        assert!(lines.contains(needed), "{name} lost {needed:?}");
    }
}

/// "30s", "2m", "1h", "90d" in seconds.
fn seconds(s: &str) -> u64 {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .unwrap_or_else(|_| panic!("not a duration: {s:?}"));
    n * match unit {
        "s" | "" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => panic!("unknown unit in {s:?}"),
    }
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    assert_hardened("ponte-connector.service", UNIT);
    for needed in [
        "EnvironmentFile=-/etc/ponte/connector.env",
        "ReadWritePaths=/etc/ponte",
    ] {
        assert!(UNIT.contains(needed), "unit lost {needed:?}");
    }
    verify_unit("ponte-connector.service", UNIT, "/usr/bin/ponte-connector");
    // systemd must wait longer than the connector's drain (its grace, then up to 2 s for
    // the goodbye) before it kills.
    let stop = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .expect("TimeoutStopSec");
    let cfg: toml::Table = toml::from_str(EXAMPLE).unwrap();
    let grace_ms = cfg["shutdown_grace_ms"].as_integer().unwrap() as u64;
    assert_eq!(grace_ms, ponte_connector::config::DEFAULT_SHUTDOWN_GRACE_MS);
    assert!(
        seconds(stop) * 1000 >= grace_ms + 3000,
        "TimeoutStopSec={stop} leaves no room for a {grace_ms} ms grace"
    );
}

#[test]
fn cloud_systemd_unit_verifies_and_is_hardened() {
    assert_hardened("ponte.service", CLOUD_UNIT);
    for needed in [
        "ExecStart=/usr/bin/ponte serve --config /etc/ponte/ponte.toml",
        "EnvironmentFile=-/etc/ponte/ponte.env",
        "Environment=PONTE_LOG_FORMAT=json",
        "Environment=PONTE_DATA_DIR=/var/lib/ponte",
        "StateDirectory=ponte",
        "KillSignal=SIGTERM",
        "deploy/ponte.toml.example",
    ] {
        assert!(CLOUD_UNIT.contains(needed), "ponte.service lost {needed:?}");
    }
    // systemd must wait longer than the cloud's own shutdown grace before it kills.
    let stop = CLOUD_UNIT
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .expect("TimeoutStopSec");
    let cfg: toml::Table = toml::from_str(CLOUD_EXAMPLE).unwrap();
    let grace = cfg["shutdown_grace"].as_str().unwrap();
    assert!(
        seconds(stop) > seconds(grace),
        "TimeoutStopSec={stop} must exceed shutdown_grace {grace}"
    );
    verify_unit("ponte.service", CLOUD_UNIT, "/usr/bin/ponte");
}

#[test]
fn example_config_parses_and_validates() {
    let f: ponte_connector::config::FileConfig = toml::from_str(EXAMPLE).unwrap();
    let cfg = ponte_connector::config::Config::from_file_config(f, None).unwrap();
    assert_eq!(cfg.per_target_concurrency, 4);
    assert_eq!(cfg.relay_urls, ["wss://cloud.example/ws/connectors"]);
}

#[test]
fn cloud_example_config_parses_with_every_key() {
    let cfg: toml::Table = toml::from_str(CLOUD_EXAMPLE).unwrap();
    // Keys shown commented out (`# key = value`) must parse once uncommented.
    let mut commented = toml::Table::new();
    for line in CLOUD_EXAMPLE.lines() {
        let Some(rest) = line.strip_prefix("# ") else {
            continue;
        };
        let Some((key, _)) = rest.split_once(" = ") else {
            continue;
        };
        if CLOUD_KEYS.contains(&key) {
            let t: toml::Table = toml::from_str(rest)
                .unwrap_or_else(|e| panic!("commented {key:?} does not parse: {e}"));
            commented.extend(t);
        }
    }
    for key in cfg.keys() {
        assert!(CLOUD_KEYS.contains(&key.as_str()), "unknown key {key:?}");
    }
    for key in CLOUD_KEYS {
        assert!(
            cfg.contains_key(*key) || commented.contains_key(*key),
            "ponte.toml.example lacks {key:?}"
        );
    }
    // The NATS bus is not built: shown, not set. The two user-JWT keys exclude each other.
    assert!(!cfg.contains_key("nats") && commented.contains_key("nats"));
    assert!(!(cfg.contains_key("user_jwt_secret_file") && cfg.contains_key("user_jwt_public_key")));

    for key in ["api_listen", "relay_listen", "gateway_listen"] {
        let addr: SocketAddr = cfg[key].as_str().unwrap().parse().unwrap();
        assert!(
            addr.ip().is_loopback(),
            "{key} must stay on loopback behind nginx"
        );
    }
    let relay = url::Url::parse(cfg["relay_public_url"].as_str().unwrap()).unwrap();
    assert_eq!((relay.scheme(), relay.path()), ("wss", "/ws/connectors"));
    let gateway = url::Url::parse(cfg["gateway_public_url"].as_str().unwrap()).unwrap();
    assert_eq!(gateway.scheme(), "https");
    assert!(cfg["database"].as_str().unwrap().starts_with("postgres://"));
    let roles: Vec<&str> = cfg["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(roles, ["api", "relay", "gateway"]);
    assert_eq!(cfg["trust_forwarded_for"].as_bool(), Some(true));
    assert!(cfg["remote_host_mode"].as_bool().is_some());
    seconds(cfg["shutdown_grace"].as_str().unwrap());
    seconds(cfg["connector_token_ttl"].as_str().unwrap());
}

// --- nginx ---------------------------------------------------------------------------

/// One nginx directive: `name args… ;` or `name args… { block }`.
#[derive(Debug)]
struct Directive {
    name: String,
    args: Vec<String>,
    block: Vec<Directive>,
}

impl Directive {
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Directive> + 'a {
        self.block.iter().filter(move |d| d.name == name)
    }

    /// The arguments of every `name` directive in this block, joined by a space.
    fn values(&self, name: &str) -> Vec<String> {
        self.all(name).map(|d| d.args.join(" ")).collect()
    }

    fn has(&self, name: &str, args: &str) -> bool {
        self.values(name).iter().any(|v| v == args)
    }

    fn location(&self, args: &str) -> &Directive {
        self.all("location")
            .find(|l| l.args.join(" ") == args)
            .unwrap_or_else(|| panic!("no `location {args}` in {:?}", self.args))
    }
}

/// Enough of nginx's syntax for the site: words, quotes, comments, `;`, `{`, `}`.
fn parse_nginx(text: &str) -> Directive {
    #[derive(Debug, PartialEq)]
    enum Tok {
        Word(String),
        Semi,
        Open,
        Close,
    }
    let mut toks = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            c if c.is_whitespace() => {}
            ';' => toks.push(Tok::Semi),
            '{' => toks.push(Tok::Open),
            '}' => toks.push(Tok::Close),
            '\'' | '"' => {
                let mut w = String::new();
                loop {
                    match chars.next().expect("unterminated quote") {
                        '\\' => w.push(chars.next().unwrap()),
                        q if q == c => break,
                        ch => w.push(ch),
                    }
                }
                toks.push(Tok::Word(w));
            }
            c => {
                let mut w = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, ';' | '{' | '}') {
                        break;
                    }
                    w.push(n);
                    chars.next();
                }
                toks.push(Tok::Word(w));
            }
        }
    }
    fn block(toks: &mut std::iter::Peekable<std::vec::IntoIter<Tok>>, top: bool) -> Vec<Directive> {
        let mut out = Vec::new();
        loop {
            let name = match toks.next() {
                None if top => return out,
                Some(Tok::Close) if !top => return out,
                Some(Tok::Word(w)) => w,
                t => panic!("nginx syntax: unexpected {t:?}"),
            };
            let mut args = Vec::new();
            loop {
                match toks.next() {
                    Some(Tok::Word(w)) => args.push(w),
                    Some(Tok::Semi) => {
                        out.push(Directive {
                            name,
                            args,
                            block: Vec::new(),
                        });
                        break;
                    }
                    Some(Tok::Open) => {
                        let b = block(toks, false);
                        out.push(Directive {
                            name,
                            args,
                            block: b,
                        });
                        break;
                    }
                    t => panic!("nginx syntax after {name}: unexpected {t:?}"),
                }
            }
        }
    }
    let mut toks = toks.into_iter().peekable();
    Directive {
        name: "http".into(),
        args: Vec::new(),
        block: block(&mut toks, true),
    }
}

fn server_for<'a>(http: &'a Directive, name: &str, tls: bool) -> &'a Directive {
    http.all("server")
        .find(|s| {
            s.values("server_name")
                .iter()
                .any(|v| v.split(' ').any(|n| n == name))
                && s.all("listen").any(|l| l.args.iter().any(|a| a == "ssl")) == tls
        })
        .unwrap_or_else(|| panic!("no server for {name} (tls: {tls})"))
}

fn upstream<'a>(http: &'a Directive, name: &str) -> &'a Directive {
    http.all("upstream")
        .find(|u| u.args == [name])
        .unwrap_or_else(|| panic!("no upstream {name}"))
}

/// The nginx binary: on PATH, or Debian's /usr/sbin (not on a user's PATH).
fn nginx() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`nginx` is needed for this test (Debian package `nginx`; .ci/run installs it)")
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn nginx_site_passes_nginx_t() {
    for needed in [
        "proxy_buffering off",
        "proxy_request_buffering off",
        "/ws/connectors",
        "map $http_upgrade $connection_upgrade",
        "proxy_set_header Connection $connection_upgrade",
        "proxy_set_header Host $http_host",
        "X-Forwarded-For $proxy_add_x_forwarded_for",
        "ssl_certificate ",
        "ssl_certificate_key ",
        "ssl_protocols TLSv1.2 TLSv1.3",
        "return 301 https://",
    ] {
        assert!(NGINX_SITE.contains(needed), "nginx site lost {needed:?}");
    }
    let dir = TempDir::new("nginx");
    let d = dir.0.display().to_string();
    let (cert, key) = (format!("{d}/cert.pem"), format!("{d}/key.pem"));
    let out = run(
        Command::new("openssl").args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=test", "-days", "1",
            "-keyout", &key, "-out", &cert,
        ]),
        "openssl",
    );
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A copy that runs as any user: the throwaway certificate, unprivileged IPv4 ports on
    // loopback (nginx -t binds them), no IPv6 listeners (the host may have no IPv6).
    let (http_port, https_port) = (free_port(), free_port());
    let mut v6 = 0;
    let site: String = NGINX_SITE
        .lines()
        .map(|line| {
            let t = line.trim();
            let (name, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
            let rest = rest.trim_start();
            match name {
                "ssl_certificate" | "ssl_certificate_key" => {
                    assert!(rest.starts_with("/etc/ssl/ponte/"), "{line}");
                    let path = if name == "ssl_certificate" {
                        &cert
                    } else {
                        &key
                    };
                    format!("{name} {path};")
                }
                "listen" => {
                    let (addr, opts) = rest.split_at(rest.find([' ', ';']).unwrap());
                    if addr.starts_with('[') {
                        v6 += 1;
                        return String::new();
                    }
                    let port = match addr {
                        "80" => http_port,
                        "443" => https_port,
                        _ => panic!("unexpected listen {addr}"),
                    };
                    format!("listen 127.0.0.1:{port}{opts}")
                }
                _ => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(v6, 4, "every server listens on IPv6 too");
    std::fs::write(dir.0.join("ponte.conf"), site).unwrap();
    std::fs::write(
        dir.0.join("nginx.conf"),
        format!(
            "pid {d}/nginx.pid;\n\
             error_log {d}/error.log;\n\
             events {{}}\n\
             http {{\n\
             access_log {d}/access.log;\n\
             client_body_temp_path {d}/client_body;\n\
             proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n\
             include {d}/ponte.conf;\n\
             }}\n"
        ),
    )
    .unwrap();
    let out = run(
        Command::new(nginx())
            .args([
                "-t",
                "-p",
                &format!("{d}/"),
                "-c",
                &format!("{d}/nginx.conf"),
            ])
            .args(["-e", &format!("{d}/error.log")]),
        "nginx",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("test is successful"),
        "nginx -t: {stderr}"
    );
    eprintln!("{stderr}");
}

#[test]
fn nginx_site_routes_match_the_cloud_config() {
    let http = parse_nginx(NGINX_SITE);
    let cfg: toml::Table = toml::from_str(CLOUD_EXAMPLE).unwrap();
    let url = |k: &str| url::Url::parse(cfg[k].as_str().unwrap()).unwrap();
    let (relay, gateway) = (url("relay_public_url"), url("gateway_public_url"));
    let (api_host, remote_host) = (relay.host_str().unwrap(), gateway.host_str().unwrap());

    // The upstreams are the listeners.
    for (up, key) in [
        ("ponte_api", "api_listen"),
        ("ponte_relay", "relay_listen"),
        ("ponte_gateway", "gateway_listen"),
    ] {
        assert_eq!(
            upstream(&http, up).values("server"),
            [cfg[key].as_str().unwrap()],
            "upstream {up} vs {key}"
        );
    }
    assert!(http
        .all("map")
        .any(|m| m.args == ["$http_upgrade", "$connection_upgrade"]));

    // Port 80 only redirects.
    for host in [api_host, remote_host] {
        let plain = server_for(&http, host, false);
        assert!(plain.values("listen").iter().any(|l| l == "80"));
        assert!(plain
            .location("/")
            .has("return", "301 https://$host$request_uri"));
    }

    // API origin: console, /api/, /health, /ready to the api; /metrics local only.
    let api = server_for(&http, api_host, true);
    assert!(!api.values("server_name").concat().contains(remote_host));
    assert!(api.has("ssl_protocols", "TLSv1.2 TLSv1.3"));
    assert!(api.has(
        "proxy_set_header",
        "X-Forwarded-For $proxy_add_x_forwarded_for"
    ));
    for loc in ["/api/", "/", "= /health", "= /ready", "= /metrics"] {
        assert!(
            api.location(loc).has("proxy_pass", "http://ponte_api"),
            "{loc}"
        );
    }
    let metrics = api.location("= /metrics");
    assert!(metrics.has("allow", "127.0.0.1") && metrics.has("deny", "all"));
    // The connectors' WebSocket: upgraded, and never timed out before the relay's 90 s.
    let ws = api.location("= /ws/connectors");
    assert!(ws.has("proxy_pass", "http://ponte_relay"));
    assert!(ws.has("proxy_http_version", "1.1"));
    assert!(ws.has("proxy_set_header", "Upgrade $http_upgrade"));
    assert!(ws.has("proxy_set_header", "Connection $connection_upgrade"));
    assert!(ws.has(
        "proxy_set_header",
        "X-Forwarded-For $proxy_add_x_forwarded_for"
    ));
    assert!(seconds(&ws.values("proxy_read_timeout")[0]) > 90);

    // Gateway origin: its own server (and certificate), the wildcard in host mode,
    // streaming both ways, the Host as the browser sent it, WebSockets.
    let gw = server_for(&http, remote_host, true);
    assert!(!gw.values("server_name").concat().contains(api_host));
    assert_ne!(gw.values("ssl_certificate"), api.values("ssl_certificate"));
    if cfg["remote_host_mode"].as_bool() == Some(true) {
        let wildcard = format!("*.{remote_host}");
        assert!(gw.values("server_name")[0]
            .split(' ')
            .any(|n| n == wildcard));
    }
    assert!(gw.has("ssl_protocols", "TLSv1.2 TLSv1.3"));
    let root = gw.location("/");
    for (name, args) in [
        ("proxy_pass", "http://ponte_gateway"),
        ("proxy_http_version", "1.1"),
        ("proxy_buffering", "off"),
        ("proxy_request_buffering", "off"),
        ("proxy_set_header", "Host $http_host"),
        ("proxy_set_header", "Upgrade $http_upgrade"),
        ("proxy_set_header", "Connection $connection_upgrade"),
        (
            "proxy_set_header",
            "X-Forwarded-For $proxy_add_x_forwarded_for",
        ),
        ("proxy_set_header", "X-Forwarded-Proto $scheme"),
    ] {
        assert!(
            root.has(name, args),
            "gateway location / lacks {name} {args}"
        );
    }
    assert!(seconds(&root.values("proxy_read_timeout")[0]) > 90);
    let body = &gw.values("client_max_body_size")[0];
    assert!(
        body == "0" || body.ends_with('g') || body.ends_with('G'),
        "uploads: {body}"
    );

    // Published routes: the wildcard of public_domain, a server (and certificate) of its
    // own, to the gateway with the Host as sent and the visitor's address appended.
    let public = format!("*.{}", cfg["public_domain"].as_str().unwrap());
    assert!(!public.ends_with(remote_host) && !public.ends_with(api_host));
    let plain = server_for(&http, &public, false);
    assert!(plain
        .location("/")
        .has("return", "301 https://$host$request_uri"));
    let pb = server_for(&http, &public, true);
    assert_eq!(pb.values("server_name"), std::slice::from_ref(&public));
    assert_ne!(pb.values("ssl_certificate"), gw.values("ssl_certificate"));
    assert_ne!(pb.values("ssl_certificate"), api.values("ssl_certificate"));
    let root = pb.location("/");
    for (name, args) in [
        ("proxy_pass", "http://ponte_gateway"),
        ("proxy_set_header", "Host $http_host"),
        (
            "proxy_set_header",
            "X-Forwarded-For $proxy_add_x_forwarded_for",
        ),
        ("proxy_set_header", "X-Forwarded-Proto $scheme"),
    ] {
        assert!(
            root.has(name, args),
            "public location / lacks {name} {args}"
        );
    }
    assert!(cfg["trust_forwarded_for"].as_bool() == Some(true));
}

// --- Docker, compose, .deb ----------------------------------------------------------

/// The lines of a top-level YAML section's entry (`services:` → `  name:` → lines).
fn compose_service(name: &str) -> String {
    let header = format!("  {name}:");
    let mut lines = COMPOSE
        .lines()
        .skip_while(|l| *l != "services:")
        .skip_while(|l| *l != header);
    assert!(lines.next().is_some(), "compose.yaml: no service {name}");
    lines
        .take_while(|l| l.is_empty() || l.starts_with("   "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn compose_and_dockerfile_run_the_cloud_with_postgres_and_nats() {
    let postgres = compose_service("postgres");
    assert!(postgres.contains("image: postgres:16"));
    assert!(postgres.contains("pg_isready"));
    let nats = compose_service("nats");
    assert!(nats.contains("image: nats:2"));
    let ponte = compose_service("ponte");
    for needed in [
        "context: ..",
        "dockerfile: deploy/Dockerfile",
        "PONTE_DATABASE: postgres://ponte:ponte@postgres:5432/ponte",
        "PONTE_NATS: nats://nats:4222",
        "PONTE_GATEWAY_PUBLIC_URL:",
        "PONTE_RELAY_PUBLIC_URL:",
        "condition: service_healthy",
        "ponte-data:/var/lib/ponte",
    ] {
        assert!(
            ponte.contains(needed),
            "compose service ponte lacks {needed:?}"
        );
    }
    let ports: Vec<&str> = ponte
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- \""))
        .filter(|l| l.contains(":800"))
        .collect();
    assert_eq!(ports.len(), 3, "{ports:?}");
    assert!(
        ports.iter().all(|p| p.starts_with("127.0.0.1:")),
        "{ports:?}"
    );
    // Grace: compose waits longer than the cloud's shutdown grace.
    let stop = ponte
        .lines()
        .find_map(|l| l.trim().strip_prefix("stop_grace_period: "))
        .expect("stop_grace_period");
    assert!(seconds(stop) > 30);

    for needed in [
        "FROM rust:1-bookworm AS build",
        "cargo build --release --locked -p ponte -p ponte-connector",
        "FROM debian:bookworm-slim",
        "ca-certificates",
        "COPY --from=build",
        "VOLUME /var/lib/ponte",
        "EXPOSE 8000 8001 8002",
        "ENTRYPOINT [\"ponte\"]",
        "CMD [\"serve\"]",
    ] {
        assert!(DOCKERFILE.contains(needed), "Dockerfile lacks {needed:?}");
    }
    let user = DOCKERFILE
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("Dockerfile: USER");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "USER {user}"
    );
    let ignored: BTreeSet<&str> = DOCKERIGNORE.lines().collect();
    for needed in [
        "target/",
        "ponte-data/",
        "tools/prisma/node_modules/",
        "fuzz/target/",
    ] {
        assert!(ignored.contains(needed), ".dockerignore lacks {needed}");
    }
}

#[test]
fn deb_package_installs_binary_unit_and_config() {
    let manifest: toml::Table = toml::from_str(CONNECTOR_MANIFEST).unwrap();
    let deb = manifest["package"]["metadata"]["deb"]
        .as_table()
        .expect("[package.metadata.deb]");
    assert_eq!(deb["section"].as_str(), Some("net"));
    assert!(deb["maintainer"].as_str().is_some());
    assert!(deb["extended-description"].as_str().is_some());
    assert!(deb["depends"].as_str().unwrap().contains("adduser"));
    // A stripped binary; the symbols go to a separate -dbgsym package.
    assert_eq!(deb["dbgsym"].as_bool(), Some(true));
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let assets: Vec<(String, String)> = deb["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_array().unwrap();
            (
                a[0].as_str().unwrap().to_string(),
                a[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (src, dest) in [
        ("target/release/ponte-connector", "usr/bin/"),
        (
            "../deploy/connector.toml.example",
            "usr/share/doc/ponte-connector/",
        ),
        (
            "../deploy/connector.toml.example",
            "etc/ponte/connector.toml.example",
        ),
    ] {
        assert!(
            assets.iter().any(|(s, d)| s == src && d == dest),
            "asset {src} -> {dest} missing"
        );
    }
    for (src, _) in &assets {
        assert!(
            src.starts_with("target/release/") || crate_dir.join(src).is_file(),
            "{src}"
        );
    }
    // The unit is found by cargo-deb in unit-scripts, by the package's name; it is
    // installed but neither enabled nor started before the connector is paired.
    let units = deb["systemd-units"].as_table().unwrap();
    assert_eq!(units["enable"].as_bool(), Some(false));
    assert_eq!(units["start"].as_bool(), Some(false));
    let unit_dir = crate_dir.join(units["unit-scripts"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(unit_dir.join("ponte-connector.service")).unwrap(),
        UNIT
    );

    let scripts = crate_dir.join(deb["maintainer-scripts"].as_str().unwrap());
    assert_eq!(
        scripts.canonicalize().unwrap(),
        repo().join("deploy/debian").canonicalize().unwrap()
    );
    let postinst = std::fs::read_to_string(scripts.join("postinst")).unwrap();
    for needed in [
        "adduser --system --group --no-create-home",
        "chown ponte:ponte /etc/ponte",
        "chmod 0700 /etc/ponte",
        "#DEBHELPER#",
    ] {
        assert!(postinst.contains(needed), "postinst lacks {needed:?}");
    }
    for script in ["postinst", "postrm"] {
        let path = scripts.join(script);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{script} is not executable");
        let out = run(Command::new("sh").arg("-n").arg(&path), "dash");
        assert!(
            out.status.success(),
            "sh -n {script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
