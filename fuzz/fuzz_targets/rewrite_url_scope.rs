//! Fuzzes `Scope`, the URL mapping every rewriter uses. Properties: never panics (any
//! `localBaseUrl`, any URL); a URL it rewrites lands under the prefix, and one it keeps
//! stays under the prefix or off-device (`ponte_fuzz::classify`); a rewritten URL is
//! never rewritten again; `device_path` inverts the prefix.
//!
//! Input: a URL; with a first line starting `@`, that line (less the `@`) is also tried as
//! the device base, for panics only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ponte_fuzz::rewrite::Scope;
use ponte_fuzz::{check, classify, prefix, scope, Verdict, SID};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let raw = match text.strip_prefix('@').and_then(|t| t.split_once('\n')) {
        Some((base, raw)) => {
            for s in [Scope::new(SID, base), Scope::host(base)] {
                let _ = s.url(raw);
                let _ = s.is_device(raw);
                let _ = s.device_path(raw);
            }
            raw
        }
        None => text,
    };
    let scope = scope();
    match scope.url(raw) {
        Some(new) => {
            assert!(
                matches!(classify(&new), Verdict::Prefixed),
                "{raw:?} rewritten to {new:?}, which is {:?}",
                classify(&new)
            );
            assert_eq!(
                scope.url(&new),
                None,
                "{raw:?} → {new:?} is rewritten again"
            );
            assert!(scope.is_prefixed(&new), "{new:?} not seen as prefixed");
            assert!(
                scope.device_path(&new).is_some(),
                "{new:?} has no device path"
            );
        }
        None => check("Scope::url kept", raw),
    }
    if let Some(path) = scope.device_path(raw) {
        assert!(path.starts_with('/'), "device path {path:?} of {raw:?}");
        let back = format!("{}{}", prefix(), &path[1..]);
        assert_eq!(
            scope.device_path(&back).as_deref(),
            Some(&*path),
            "device_path of {back:?}"
        );
    }
});
