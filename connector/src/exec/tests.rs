use super::{without_queries, Executor};
use crate::policy::TargetPolicy;

/// The text fast path gives the URI the URL parser gives, and anything it cannot
/// vouch for (dot segments, escapes, fragments, a base not in canonical form) takes
/// the parser's way.
#[test]
fn http_targets_are_the_parsed_url() {
    let exec = Executor::new(TargetPolicy::default_private(), 4);
    for base in [
        "http://127.0.0.1:8080",
        "http://127.0.0.1:8080/",
        "http://10.0.0.5",
        "http://Device.LAN:80/",
        "https://[::1]:8443/app/",
        "http://h/base?q",
    ] {
        for path in [
            "/",
            "/a/b.html?x=1&y=a+b,c;d:e@f",
            "/a/../b",
            "/a/%2e%2E/b",
            "/a/./b",
            "/a b?c d",
            "/a#frag",
            "/é?ü",
            "/a\\b",
            "//double/slash",
            "/a?b=/../c",
            "/%zz",
        ] {
            let mut parsed = Executor::target_url(base, path, false).unwrap();
            // What goes on the wire: no fragment (reqwest's Uri dropped it too).
            parsed.set_fragment(None);
            let target = exec.http_target(base, path).unwrap();
            assert_eq!(target.uri.to_string(), parsed.as_str(), "{base} + {path}");
            assert_eq!(target.origin.url.host(), parsed.host(), "{base}");
            assert_eq!(
                target.origin.url.port_or_known_default(),
                parsed.port_or_known_default()
            );
        }
    }
    assert!(exec.http_target("ftp://h", "/").is_err());
    assert!(exec.http_target("http://u:p@h", "/").is_err());
    assert!(exec.http_target("http://h", "x").is_err());
}

#[test]
fn urls_in_messages_lose_their_queries() {
    for (input, want) in [
        (
            "error sending request for url (http://10.0.0.5/cgi?session=SECRET&x=1): boom",
            "error sending request for url (http://10.0.0.5/cgi): boom",
        ),
        (
            "https://d/a?b#c and http://e/f?g",
            "https://d/a and http://e/f",
        ),
        ("no url? here", "no url? here"),
        ("http://d/p", "http://d/p"),
    ] {
        assert_eq!(without_queries(input), want, "{input}");
    }
}
