//! Headers both ways: `Location`, `Refresh`, `Set-Cookie` and the rest of a response;
//! cookies, credentials and the rest of a request toward the device; a worker's scope.

use super::*;

#[test]
fn location_and_refresh() {
    let s = scope();
    for (input, want) in [
        ("5; url=/x", Some("5; url=P/x")),
        (
            "0;URL='/pt_BR/html/index.html'",
            Some("0;URL='P/pt_BR/html/index.html'"),
        ),
        ("0; url=\"http://192.168.1.50/a\"", Some("0; url=\"P/a\"")),
        ("3;url=other.html", None),
        ("3", None),
        ("0; url=https://example.com/", None),
    ] {
        assert_eq!(refresh(&s, input), want.map(p), "{input}");
    }
}

#[test]
fn set_cookies() {
    let s = scope();
    for (input, want) in [
        ("session=abc; Path=/", Some("__pd_session=abc; Path=P/")),
        ("session=abc", Some("__pd_session=abc; Path=P/")),
        (
            "a=b; Path=/pt_BR; HttpOnly",
            Some("__pd_a=b; HttpOnly; Path=P/pt_BR"),
        ),
        (
            "a=b; Path=/; Domain=192.168.1.50",
            Some("__pd_a=b; Path=P/"),
        ),
        (
            "a=b; Domain=.example.com; Path=/x; Secure; SameSite=Lax",
            Some("__pd_a=b; SameSite=Lax; Secure; Path=P/x"),
        ),
        ("a=b; Path=relative", Some("__pd_a=b; Path=P/")),
        ("a=b; Path=P/x", Some("__pd_a=b; Path=P/x")),
        ("tok=ab/c+d==; Path=/", Some("__pd_tok=ab/c+d==; Path=P/")),
        (
            "a=b; Max-Age=60; Path=/",
            Some("__pd_a=b; Path=P/; Max-Age=60"),
        ),
        ("no equals sign", None),
    ] {
        let input = p(input);
        assert_eq!(set_cookie(&s, &input), want.map(p), "{input}");
    }
}

#[test]
fn only_device_cookies_reach_the_device() {
    for (input, want) in [
        ("__pd_session=ab/c+d==", Some("session=ab/c+d==")),
        (
            "saas=secret; __ponte_rs=grant; __pd_a=1;__pd_b=2",
            Some("a=1; b=2"),
        ),
        ("saas=secret; __ponte_rs=grant", None),
        ("__pd_=x; x__pd_y=1", Some("=x")),
        ("", None),
    ] {
        assert_eq!(device_cookies(input).as_deref(), want, "{input}");
    }
}

/// A header map from a table row (`P/` stands for the prefix in values).
fn header_map(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut m = http::HeaderMap::new();
    for (k, v) in pairs {
        m.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(&p(v)).unwrap(),
        );
    }
    m
}

#[test]
fn response_headers() {
    let h = header_map;
    let html = |decode, charset: Option<&str>| BodyPlan::Html {
        decode,
        charset: charset.map(str::to_owned),
    };
    let referrer = ("referrer-policy", "same-origin");
    for (input, want, plan) in [
        (
            vec![("location", "http://192.168.1.50/pt_BR/html/index.html")],
            vec![("location", "P/pt_BR/html/index.html"), referrer],
            BodyPlan::Pass,
        ),
        (
            vec![("location", "next.html"), ("content-location", "/a")],
            vec![
                ("location", "next.html"),
                ("content-location", "P/a"),
                referrer,
            ],
            BodyPlan::Pass,
        ),
        (
            vec![("refresh", "0; url=/x"), ("referrer-policy", "no-referrer")],
            vec![("refresh", "0; url=P/x"), referrer],
            BodyPlan::Pass,
        ),
        (
            vec![
                ("set-cookie", "a=1; Path=/; Domain=192.168.1.50"),
                ("set-cookie", "garbage"),
                ("set-cookie", "b=2"),
            ],
            vec![
                ("set-cookie", "__pd_a=1; Path=P/"),
                ("set-cookie", "__pd_b=2; Path=P/"),
                referrer,
            ],
            BodyPlan::Pass,
        ),
        (
            vec![
                ("strict-transport-security", "max-age=63072000"),
                ("clear-site-data", "\"cookies\""),
                ("content-security-policy", "script-src 'self'"),
                ("content-type", "image/jpeg"),
                ("content-length", "10"),
                ("etag", "\"x\""),
            ],
            vec![
                ("content-type", "image/jpeg"),
                ("content-length", "10"),
                ("etag", "\"x\""),
                referrer,
            ],
            BodyPlan::Pass,
        ),
        (
            vec![
                ("content-type", "text/html; charset=ISO-8859-1"),
                ("content-length", "10"),
                ("content-encoding", "gzip"),
                ("etag", "\"x\""),
                ("content-md5", "abc"),
                ("accept-ranges", "bytes"),
            ],
            vec![("content-type", "text/html; charset=ISO-8859-1"), referrer],
            html(Some(Coding::Gzip), Some("iso-8859-1")),
        ),
        (
            vec![("content-type", "text/html"), ("content-encoding", "br")],
            vec![("content-type", "text/html"), referrer],
            html(Some(Coding::Brotli), None),
        ),
        (
            vec![
                ("content-type", "text/css;charset=utf-8"),
                ("content-encoding", "deflate"),
            ],
            vec![("content-type", "text/css;charset=utf-8"), referrer],
            BodyPlan::Css {
                decode: Some(Coding::Deflate),
            },
        ),
        (
            vec![
                ("content-type", "text/html"),
                ("content-encoding", "gzip, br"),
                ("content-length", "5"),
            ],
            vec![
                ("content-type", "text/html"),
                ("content-encoding", "gzip, br"),
                ("content-length", "5"),
                referrer,
            ],
            BodyPlan::Pass,
        ),
    ] {
        let mut headers = h(&input);
        let got_plan = rewrite_response_headers(&scope(), &mut headers);
        assert_eq!(got_plan, plan, "{input:?}");
        assert_eq!(headers, h(&want), "{input:?}");
    }
}

#[test]
fn request_headers_toward_the_device() {
    let h = header_map;
    for (input, want) in [
        (
            vec![("cookie", "saas=1; __ponte_rs=grant; __pd_session=ab/c+d=="), ("accept", "*/*")],
            vec![("accept", "*/*"), ("cookie", "session=ab/c+d==")],
        ),
        (
            vec![("cookie", "__ponte_rs=grant"), ("cookie", "__pd_a=1")],
            vec![("cookie", "a=1")],
        ),
        (vec![("cookie", "saas=1; __ponte_rs=grant")], vec![]),
        // The device's own credentials, whatever the scheme: its pages set them.
        (
            vec![("authorization", "Bearer eyJhbGciOi.x.y")],
            vec![("authorization", "Bearer eyJhbGciOi.x.y")],
        ),
        (
            vec![("authorization", "Digest username=\"admin\", nonce=\"n\"")],
            vec![("authorization", "Digest username=\"admin\", nonce=\"n\"")],
        ),
        (
            vec![("authorization", "Basic YWRtaW46YWRtaW4=")],
            vec![("authorization", "Basic YWRtaW46YWRtaW4=")],
        ),
        (
            vec![("referer", "https://gw.example/remote/s/3f2b8c1e-0000-4000-8000-00000000abcd/pt_BR/html/index.html")],
            vec![("referer", "http://192.168.1.50/pt_BR/html/index.html")],
        ),
        (vec![("referer", "https://saas.example/equipamento/100")], vec![]),
        // Same path on another host (a sibling session's origin): not this device's page.
        (
            vec![("host", "gw.example"), ("referer", "https://s-x.gw.example/remote/s/3f2b8c1e-0000-4000-8000-00000000abcd/x")],
            vec![],
        ),
        (
            vec![("host", "gw.example"), ("referer", "https://gw.example/remote/s/3f2b8c1e-0000-4000-8000-00000000abcd/x")],
            vec![("referer", "http://192.168.1.50/x")],
        ),
        // One hop's headers stay on it, and what `Connection` names.
        (
            vec![
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "1"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("trailer", "x-sum"),
                ("transfer-encoding", "chunked"),
                ("upgrade", "h2c"),
                ("proxy-connection", "keep-alive"),
                ("accept", "*/*"),
            ],
            vec![("accept", "*/*")],
        ),
        (
            vec![("connection", "Upgrade"), ("upgrade", "websocket")],
            vec![("connection", "upgrade"), ("upgrade", "websocket")],
        ),
        (vec![("referer", "https://gw.example/remote/s/other/x")], vec![]),
        (vec![("origin", "https://gw.example")], vec![("origin", "http://192.168.1.50")]),
        (
            vec![("accept-encoding", "gzip, deflate, br, zstd")],
            vec![("accept-encoding", "gzip, deflate, br")],
        ),
        (
            vec![("range", "bytes=0-99"), ("sec-fetch-dest", "document")],
            vec![("sec-fetch-dest", "document")],
        ),
        (
            vec![("range", "bytes=0-99"), ("sec-fetch-dest", "video")],
            vec![("range", "bytes=0-99"), ("sec-fetch-dest", "video")],
        ),
        (
            vec![("x-forwarded-for", "203.0.113.9"), ("forwarded", "for=x"), ("proxy-authorization", "Basic x")],
            vec![],
        ),
    ] {
        // Every request names the device as its host.
        let mut want = h(&want);
        want.insert("host", http::HeaderValue::from_static("192.168.1.50"));
        assert_eq!(device_request_headers(&scope(), &h(&input)), want, "{input:?}");
    }
}

/// Found by `fuzz/fuzz_targets/rewrite_headers.rs`: a refresh URL without `url=`
/// (`0;/x`), which browsers follow, was left as it was and led to the gateway's root;
/// and `url=` inside the URL was taken for its start.
#[test]
fn refresh_urls_as_browsers_read_them() {
    let s = scope();
    for (input, want) in [
        ("0;/x", Some("0;P/x")),
        ("0, '/x' junk", Some("0, 'P/x' junk")),
        ("5 /x", Some("5 P/x")),
        ("0; /a?url=/b", Some("0; P/a?url=/b")),
        ("0; URL = \"/x\"", Some("0; URL = \"P/x\"")),
        ("0; urx=/x", None),
        ("x; url=/x", None),
        ("0;", None),
        // A time may start with a dot (it then counts as 0), and a value with no time
        // at all is no refresh to a browser.
        (".5; url=/x", Some(".5; url=P/x")),
        ("1.5;/x", Some("1.5;P/x")),
        ("; url=/x", None),
        ("url=/x", None),
    ] {
        assert_eq!(refresh(&s, input), want.map(p), "{input}");
    }
}

/// The device's own `Authorization` (Bearer, Basic, Digest; one value or several) reaches
/// it as the page sent it (issue 14): the SaaS's token never travels to the gateway's
/// origin, so there is nothing of Ponte's in it to hold back.
#[test]
fn every_authorization_value_reaches_the_device_as_sent() {
    let s = scope();
    for values in [
        &["Basic YTpi", "Bearer abc"][..],
        &["Bearer\tabc"],
        &["Digest username=\"a\", nonce=\"n\""],
    ] {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append("authorization", http::HeaderValue::from_str(v).unwrap());
        }
        let out = device_request_headers(&s, &h);
        let got: Vec<_> = out
            .get_all("authorization")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(got, values, "{out:?}");
    }
}

/// Found by `fuzz/fuzz_targets/rewrite_headers.rs`: only the first of two `Location`,
/// `Content-Location` or `Refresh` headers was rewritten.
#[test]
fn every_location_and_refresh_value_is_rewritten() {
    let s = scope();
    let mut h = http::HeaderMap::new();
    for (name, v) in [
        ("location", "//cdn.example/a"),
        ("location", "/x"),
        ("content-location", "/c"),
        ("content-location", "/y"),
        ("refresh", "5"),
        ("refresh", "0;/r"),
    ] {
        h.append(name, http::HeaderValue::from_static(v));
    }
    let _ = rewrite_response_headers(&s, &mut h);
    let all = |n: &str| -> Vec<String> {
        h.get_all(n)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(all("location"), ["//cdn.example/a".to_owned(), p("P/x")]);
    assert_eq!(all("content-location"), [p("P/c"), p("P/y")]);
    assert_eq!(all("refresh"), ["5".to_owned(), p("0;P/r")]);
}

/// A device may not set Ponte's own cookies (the session grant, the console's sign-in),
/// under any spelling a browser would treat as the same name; its other cookies pass.
#[test]
fn a_device_cannot_set_a_cookie_named_as_ponte_s_own() {
    let s = scope();
    for (input, want) in [
        ("__ponte_rs=forged; Path=/", None),
        ("__PONTE_RS=forged", None),
        ("ponte_session=forged", None),
        ("__Host-ponte_session=forged; Path=/; Secure", None),
        ("__host-PONTE_x=forged; Path=/; Secure", None),
        ("__Secure-ponte_x=forged; Secure", None),
        ("__Secure-__ponte_rs=forged; Secure", None),
        ("ponted=1", Some("__pd_ponted=1; Path=P/")),
        ("my_ponte_x=1", Some("__pd_my_ponte_x=1; Path=P/")),
        (
            "__Host-sid=1; Secure",
            Some("__pd___Host-sid=1; Secure; Path=P/"),
        ),
    ] {
        assert_eq!(set_cookie(&s, input), want.map(p), "{input}");
    }
}

/// The device's `Service-Worker-Allowed` never lets a worker control a URL outside the
/// session prefix: `/` and device URLs map under it, relative ones resolve against the
/// script's directory, and what could leave it (another host, dot segments, encoded or
/// not, backslashes) is refused.
#[test]
fn service_worker_scope_never_leaves_the_session_prefix() {
    let s = scope();
    let script = p("P/sw/app.js");
    for (input, want) in [
        ("/", Some("P/")),
        (" /app/ ", Some("P/app/")),
        ("/app/?v=1#x", Some("P/app/")),
        ("http://192.168.1.50/app/", Some("P/app/")),
        ("P/app/", Some("P/app/")),
        ("./", Some("P/sw/")),
        ("./scope/", Some("P/sw/scope/")),
        ("scope/", Some("P/sw/scope/")),
        ("https://example.com/", None),
        ("//cdn.example/", None),
        ("javascript:x", None),
        ("../", None),
        ("a/./b/", None),
        ("%2e%2e/", None),
        ("%2E./x/", None),
        ("a\\b/", None),
        // The browser drops tabs from a URL before it resolves it: `/` of the gateway.
        ("..\t/..\t/..\t/..\t/", None),
        (".\t%2e/x/", None),
        // Climbs out of the prefix as the browser reads it: the device path, kept in.
        ("P/../", Some("P/remote/s/")),
        // The bare prefix (no slash) is not under it: the browser's default scope rules.
        ("/remote/s/3f2b8c1e-0000-4000-8000-00000000abcd", None),
    ] {
        let input = p(input);
        assert_eq!(
            service_worker_allowed(&s, &input, &script),
            want.map(p),
            "{input}"
        );
    }
}
