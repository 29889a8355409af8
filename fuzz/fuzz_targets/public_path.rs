//! Fuzzes the one normalisation of a published route's request path
//! (`ponte_core::published::path`). Properties: never panics; what it accepts is clean
//! (no `.`/`..`/empty segment, no `\`, no control byte, no `%` once decoded, no segment
//! a server reads as a dot segment); normalising the result again changes nothing; the
//! form the device receives is what a WHATWG URL parser keeps as is (so no client or
//! device library normalises it into another path); and a glob matches the decoded form
//! exactly when it matches what the device receives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ponte_core::published::path::{matches, normalize};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(n) = normalize(raw) else {
        return;
    };
    assert!(n.decoded.starts_with(b"/"), "{raw:?} → {:?}", n.encoded);
    assert!(!n.decoded.contains(&b'\\') && !n.decoded.contains(&b'%'), "{raw:?}");
    assert!(n.decoded.iter().all(|&b| b >= 0x20 && b != 0x7f), "{raw:?}");
    let inner = &n.decoded[1..];
    let inner = inner.strip_suffix(b"/").unwrap_or(inner);
    if !inner.is_empty() {
        for seg in inner.split(|&b| b == b'/') {
            assert!(!seg.is_empty(), "{raw:?}: empty segment in {:?}", n.encoded);
            let head = seg.split(|&b| b == b';').next().unwrap_or_default();
            // (`;x` and ` ` hold no dot: they cannot climb.)
            assert!(
                !head.contains(&b'.') || !head.iter().all(|&b| b == b'.' || b == b' '),
                "{raw:?}: dot segment {seg:?} in {:?}",
                n.encoded
            );
        }
    }
    let again = normalize(&n.encoded).expect("a normalised path is accepted");
    assert_eq!(again, n, "{raw:?}: not idempotent");
    let parsed = url::Url::parse(&format!("http://device{}", n.encoded)).unwrap();
    assert_eq!(parsed.path(), n.encoded, "{raw:?}: a URL parser changes it");
    for glob in ["/approve/*", "/a", "/*", "/"] {
        assert_eq!(
            matches(glob, &n.decoded),
            matches(glob, n.encoded.as_bytes()),
            "{raw:?} against {glob}"
        );
    }
});
