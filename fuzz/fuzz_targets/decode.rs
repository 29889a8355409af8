//! Fuzzes the frame decoder of both directions. Properties: never panics; a decoded
//! frame re-encodes to something that decodes again, and encoding is stable after one
//! round (repeated headers are grouped on the first encode); what the decoder accepts,
//! serde's own decoding of the message enums accepts as the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ponte_protocol::{decode_cloud, decode_connector, encode, CloudMsg, ConnectorMsg};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(msg) = decode_connector(text) {
        let reference = serde_json::from_str::<ConnectorMsg>(text).ok();
        assert_eq!(reference.as_ref(), Some(&msg), "serde's decoding differs");
        let once = encode(&msg);
        let again = decode_connector(&once).expect("re-encoded connector frame decodes");
        assert_eq!(encode(&again), once, "connector frame encoding is stable");
    }
    if let Ok(msg) = decode_cloud(text) {
        let reference = serde_json::from_str::<CloudMsg>(text).ok();
        assert_eq!(reference.as_ref(), Some(&msg), "serde's decoding differs");
        let once = encode(&msg);
        let again = decode_cloud(&once).expect("re-encoded cloud frame decodes");
        assert_eq!(encode(&again), once, "cloud frame encoding is stable");
    }
});
