use super::*;

fn layer(toml: &str) -> ServeLayer {
    toml::from_str(toml).unwrap()
}

#[test]
fn flags_beat_the_file_which_beats_defaults() {
    let file = layer("api_listen = \"127.0.0.1:7000\"\nrelay_listen = \"127.0.0.1:7001\"\nroles = [\"api\", \"relay\"]\nshutdown_grace = \"5s\"");
    let flags = ServeLayer {
        api_listen: Some("127.0.0.1:9000".into()),
        ..Default::default()
    };
    let dir = std::env::temp_dir().join(format!("ponte-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ponte.toml");
    std::fs::write(&path, "").unwrap();
    let s = ServeSettings::resolve(flags.over(file).unwrap(), Some(&path)).unwrap();
    assert_eq!(s.api_listen, "127.0.0.1:9000");
    assert_eq!(s.relay_listen, "127.0.0.1:7001");
    assert_eq!(s.gateway_listen, DEFAULT_GATEWAY_LISTEN);
    assert_eq!(s.roles, ["api", "relay"]);
    assert_eq!(s.shutdown_grace, Duration::from_secs(5));
    assert_eq!(s.connector_token_ttl, Duration::from_secs(90 * 86400));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_shipped_example_resolves() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/ponte.toml.example");
    let s = ServeSettings::resolve(ServeLayer::default(), Some(&path)).unwrap();
    assert_eq!(s.roles, ["api", "relay", "gateway"]);
    assert!(s.remote_host_mode && s.trust_forwarded_for);
    assert_eq!(s.shutdown_grace, Duration::from_secs(30));
    assert_eq!(
        s.gateway_public_url.as_deref(),
        Some("https://remote.example.com")
    );
}

#[test]
fn limits_default_as_designed_and_zero_lifts_them() {
    let s = ServeSettings::resolve(ServeLayer::default(), None).unwrap();
    let mut api = ponte_api::ApiConfig::default();
    s.apply_limits(&mut api);
    assert_eq!(api.sessions.idle, Duration::from_secs(600));
    assert_eq!(api.sessions.max, Duration::from_secs(4 * 3600));
    assert_eq!(api.rate_limits.session.per_second, 50.0);
    assert_eq!(api.rate_limits.session.burst, 200);
    assert_eq!(api.rate_limits.connector.per_second, 200.0);
    assert_eq!(api.rate_limits.connector.burst, 400);
    assert!(api.rate_limits.session.limits() && api.rate_limits.connector.limits());
    assert_eq!(s.listen_limits(), ponte_listen::Limits::default());
    // The README's and `--help`'s numbers, by value.
    let listen = (&*s.api_listen, &*s.relay_listen, &*s.gateway_listen);
    assert_eq!(
        listen,
        ("127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002")
    );
    assert_eq!(s.shutdown_grace, Duration::from_secs(30));
    assert_eq!(s.connector_token_ttl, Duration::from_secs(90 * 86400));
    assert_eq!(
        s.listen_limits(),
        ponte_listen::Limits {
            header_read_timeout: Duration::from_secs(10),
            keepalive_idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_address: 256,
        }
    );

    // Each setting reaches its own bucket.
    let s = ServeSettings::resolve(
        layer(
            "session_rate_per_second = 7\nsession_rate_burst = 11\n\
             connector_rate_per_second = 13\nconnector_rate_burst = 17",
        ),
        None,
    )
    .unwrap();
    let mut api = ponte_api::ApiConfig::default();
    s.apply_limits(&mut api);
    let rate = |r: ponte_api::ratelimit::Rate| (r.per_second, r.burst);
    assert_eq!(rate(api.rate_limits.session), (7.0, 11));
    assert_eq!(rate(api.rate_limits.connector), (13.0, 17));

    let s = ServeSettings::resolve(
        layer(
            "session_idle_ttl = \"0\"\nsession_max_ttl = \"8h\"\nsession_rate_per_second = 0\n\
             connector_rate_per_second = 1000\nconnector_rate_burst = 0",
        ),
        None,
    )
    .unwrap();
    let mut api = ponte_api::ApiConfig::default();
    s.apply_limits(&mut api);
    assert!(api.sessions.idle > Duration::from_secs(50 * 365 * 86400));
    assert_eq!(api.sessions.max, Duration::from_secs(8 * 3600));
    assert!(!api.rate_limits.session.limits());
    assert!(!api.rate_limits.connector.limits());
    // --check shows what runs.
    let shown = s.to_toml();
    assert!(shown.contains("session_idle_ttl = \"0s\""), "{shown}");
    assert!(shown.contains("session_rate_per_second = 0.0"), "{shown}");
}

#[test]
fn listener_limits_follow_the_settings_and_the_proxy() {
    let s = ServeSettings::resolve(
        layer(
            "header_read_timeout = \"30s\"\nkeepalive_idle_timeout = \"2m\"\n\
             max_connections = 500\nmax_connections_per_address = 0",
        ),
        None,
    )
    .unwrap();
    let l = s.listen_limits();
    assert_eq!(l.header_read_timeout, Duration::from_secs(30));
    assert_eq!(l.keepalive_idle_timeout, Duration::from_secs(120));
    assert_eq!((l.max_connections, l.max_connections_per_address), (500, 0));
    // Behind a proxy every connection comes from it: no per-address cap unless set.
    let s = ServeSettings::resolve(layer("trust_forwarded_for = true"), None).unwrap();
    assert_eq!(s.max_connections_per_address, 0);
    let s = ServeSettings::resolve(
        layer("trust_forwarded_for = true\nmax_connections_per_address = 9"),
        None,
    )
    .unwrap();
    assert_eq!(s.max_connections_per_address, 9);
    assert!(s.to_toml().contains("header_read_timeout = \"10s\""));
}

#[test]
fn mistakes_name_the_setting() {
    for (toml, says) in [
        ("api_listen = \"localhost\"", "api_listen"),
        ("roles = \"api,relay,web\"", "unknown role \"web\""),
        ("roles = \"api,gateway\"", "must include api and relay"),
        ("shutdown_grace = \"soon\"", "shutdown_grace"),
        ("database = \"mysql://x\"", "database"),
        ("relay_public_url = \"http://x/ws\"", "relay_public_url"),
        ("connector_token_ttl = \"5m\"", "at least 1h"),
        ("session_idle_ttl = \"a while\"", "session_idle_ttl"),
        ("session_rate_per_second = -1", "session_rate_per_second"),
        (
            "connector_rate_per_second = nan",
            "connector_rate_per_second",
        ),
        ("header_read_timeout = \"31s\"", "is over 30s"),
        ("header_read_timeout = \"0\"", "header_read_timeout"),
        ("keepalive_idle_timeout = \"0s\"", "keepalive_idle_timeout"),
    ] {
        let err = ServeSettings::resolve(layer(toml), None).unwrap_err();
        assert!(err.contains(says), "{toml}: {err}");
        assert!(!err.contains('\n'), "{err}");
    }
    assert!(toml::from_str::<ServeLayer>("api_lisen = \"x\"").is_err());
    // A path that is not UTF-8 (a flag can carry one) is a one-line refusal, not a panic.
    let odd = ServeLayer {
        data_dir: Some(
            <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(vec![b'd', 0xff])
                .into(),
        ),
        ..Default::default()
    };
    let err = ServeSettings::resolve(odd, None).unwrap_err();
    assert!(
        err.starts_with("settings: ") && !err.contains('\n'),
        "{err}"
    );
    // A name is fine (resolved when bound); so is IPv6.
    for ok in ["localhost:8000", "[::1]:8000", "0.0.0.0:80"] {
        let l = ServeLayer {
            api_listen: Some(ok.into()),
            ..Default::default()
        };
        assert!(ServeSettings::resolve(l, None).is_ok(), "{ok}");
    }
    // The key a higher layer names replaces the lower layer's other key.
    let file = layer("user_jwt_public_key = \"/etc/ponte/k.pem\"");
    let flags = ServeLayer {
        user_jwt_secret_file: Some("/etc/ponte/s".into()),
        ..Default::default()
    };
    let s = ServeSettings::resolve(flags.over(file).unwrap(), None).unwrap();
    assert!(s.user_jwt_public_key.is_none() && s.user_jwt_secret_file.is_some());
}

#[test]
fn the_public_domain_is_a_name_with_an_optional_port() {
    let domain = |v: &str| {
        ServeSettings::resolve(layer(&format!("public_domain = {v:?}")), None)
            .map(|s| s.public_domain)
    };
    assert_eq!(
        domain("Pub.Example.com").unwrap().as_deref(),
        Some("pub.example.com")
    );
    assert_eq!(
        domain("localhost:8002").unwrap().as_deref(),
        Some("localhost:8002")
    );
    assert_eq!(domain("").unwrap(), None);
    for bad in [
        "https://pub.example.com",
        "pub.example.com/x",
        "127.0.0.1",
        "*.example.com",
        "pub..example.com",
        "-pub.example.com",
        "pub.example.com:0",
        "pub.example.com:99999",
    ] {
        let e = domain(bad).unwrap_err();
        assert!(e.starts_with("public_domain: "), "{bad}: {e}");
    }
    let s = ServeSettings::resolve(layer("api_listen = \"127.0.0.1:7000\""), None).unwrap();
    assert_eq!(s.public_domain, None, "no routes unless asked for");
}
