//! [`Scope`]: which URLs are the device's and what they become under the prefix, dot
//! segments and what the browser reads as root-relative included; and back to device paths.

use super::*;

#[test]
fn urls() {
    let s = scope();
    for (input, want) in [
        ("/", Some("P/")),
        ("/login.fcgi", Some("P/login.fcgi")),
        (
            "/pt_BR/html/index.html?x=1#top",
            Some("P/pt_BR/html/index.html?x=1#top"),
        ),
        ("  /img/a.png  ", Some("P/img/a.png")),
        ("http://192.168.1.50/x", Some("P/x")),
        ("http://192.168.1.50", Some("P/")),
        ("http://192.168.1.50?q", Some("P/?q")),
        ("HTTP://192.168.1.50:80/x", Some("P/x")),
        ("https://192.168.1.50:80/x", Some("P/x")),
        ("http://admin@192.168.1.50/x", Some("P/x")),
        ("//192.168.1.50/x", Some("P/x")),
        ("//cdn.example/x.js", None),
        ("http://192.168.1.50:8080/x", None),
        ("http://192.168.1.51/x", None),
        ("https://example.com/x", None),
        ("P/already", None),
        ("P/", None),
        ("/remote/s/3f2b8c1e-0000-4000-8000-00000000abcd", None),
        ("/remote/s/3f2b8c1e-0000-4000-8000-00000000abcd?x", None),
        // Another session's prefix is just a device path here.
        ("/remote/s/other/x", Some("P/remote/s/other/x")),
        (
            "/remote/s/3f2b8c1e-0000-4000-8000-00000000abcdX/",
            Some("P/remote/s/3f2b8c1e-0000-4000-8000-00000000abcdX/"),
        ),
        ("x.html", None),
        ("../x.html", None),
        ("#frag", None),
        ("?q=1", None),
        ("", None),
        ("javascript:void(0)", None),
        ("javascript:location='/x'", None),
        ("data:image/png;base64,AAAA", None),
        ("mailto:a@b.c", None),
    ] {
        let input = p(input);
        assert_eq!(s.url(&input), want.map(p), "{input}");
    }
}

#[test]
fn device_authorities() {
    for (base, authority, is_device) in [
        ("http://192.168.1.50", "192.168.1.50", true),
        ("http://192.168.1.50", "192.168.1.50:80", true),
        ("http://192.168.1.50", "192.168.1.50:443", false),
        ("https://catraca.lan:8443/", "CATRACA.LAN:8443", true),
        ("https://catraca.lan:8443/", "catraca.lan", false),
        ("https://catraca.lan", "catraca.lan:443", true),
        ("http://[fd00::1]:8080", "[fd00::1]:8080", true),
        ("http://[fd00::1]", "[fd00::1]", true),
        ("http://user:pw@10.0.0.5/x", "10.0.0.5", true),
    ] {
        assert_eq!(
            Scope::new(SID, base).is_device(authority),
            is_device,
            "{base} vs {authority}"
        );
    }
}

#[test]
fn device_paths() {
    let s = scope();
    for (input, want) in [
        ("P/", Some("/")),
        (
            "P/pt_BR/html/index.html?x=1",
            Some("/pt_BR/html/index.html?x=1"),
        ),
        ("/remote/s/3f2b8c1e-0000-4000-8000-00000000abcd", Some("/")),
        (
            "/remote/s/3f2b8c1e-0000-4000-8000-00000000abcd?q",
            Some("/?q"),
        ),
        ("/remote/s/3f2b8c1e-0000-4000-8000-00000000abcdX/", None),
        ("/remote/s/other/x", None),
        ("/x", None),
    ] {
        assert_eq!(s.device_path(&p(input)).as_deref(), want, "{input}");
    }
    assert_eq!(s.device_origin(), "http://192.168.1.50");
}

/// Found by `fuzz/fuzz_targets/rewrite_url_scope.rs`: dot segments resolved under the
/// prefix climbed out of it (`/../x` became `P/../x`, which the browser asks as
/// `/remote/s/x`; `P/../other/x` was kept as already prefixed).
#[test]
fn urls_never_climb_out_of_the_prefix() {
    let s = scope();
    for (input, want) in [
        ("/../x", Some("P/x")),
        ("/a/../../b?c=/../d#/../e", Some("P/b?c=/../d#/../e")),
        ("/%2e%2E/%2e/x", Some("P/x")),
        ("/.%2e\\..\\x", Some("P/x")),
        ("/a/..", Some("P/")),
        ("/.\t./x", Some("P/x")),
        ("http://192.168.1.50/../../x", Some("P/x")),
        ("//192.168.1.50/a/./b/..", Some("P/a/")),
        ("P/../other/x", Some("P/remote/s/other/x")),
        ("P/../../../x", Some("P/x")),
        ("P/a/../b", None),
        ("/a/b", Some("P/a/b")),
    ] {
        let input = p(input);
        assert_eq!(s.url(&input), want.map(p), "{input}");
    }
}

/// Found by `fuzz/fuzz_targets/rewrite_url_scope.rs` and `rewrite_headers.rs`: URLs
/// that a browser reads as root-relative (WHATWG URL: leading C0 controls and spaces
/// dropped, tabs and newlines removed, `\\` a slash, `https:/x` from an `https:` page) were
/// left as they were, and led to the gateway's root.
#[test]
fn urls_the_browser_reads_as_root_relative_are_rewritten() {
    let s = scope();
    for (input, want) in [
        ("\u{1}/x", Some("P/x")),
        ("\0 \u{1f}/x\u{7}", Some("P/x")),
        ("/\tx\n", Some("P/x")),
        ("\\x", Some("P/x")),
        ("\\a\\..\\..\\x?q\\r", Some("P/x?q\\r")),
        ("https:/x", Some("P/x")),
        ("http:/x", Some("P/x")),
        ("HTTPS:\\x", Some("P/x")),
        ("h\tttps:/x", Some("P/x")),
        ("https:/../x", Some("P/x")),
        ("https:///192.168.1.50/x", Some("P/x")),
        ("\\\\192.168.1.50\\x", Some("P/x")),
        ("/\\192.168.1.50/x", Some("P/x")),
        ("http:192.168.1.50/x", None),
        ("https:x", None),
        ("/\\cdn.example/x", None),
        ("/\n/cdn.example/x", None),
        (
            "https:/remote/s/3f2b8c1e-0000-4000-8000-00000000abcd/x",
            None,
        ),
        ("\\remote\\s\\3f2b8c1e-0000-4000-8000-00000000abcd\\x", None),
        ("\u{1}javascript:x", None),
    ] {
        assert_eq!(s.url(input), want.map(p), "{input:?}");
    }
    for (input, want) in [
        ("0; url=\u{1}/x", Some("0; url=P/x")),
        ("0;https:/x", Some("0;P/x")),
    ] {
        assert_eq!(refresh(&s, input), want.map(p), "{input:?}");
    }
}
