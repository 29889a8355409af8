//! Fuzzes the binary (`bin`) frame decoder of both directions. Properties: never panics;
//! the layout is canonical, so a decoded frame re-encodes to exactly the input bytes;
//! the decoded message survives the JSON codec unchanged when its JSON fits a frame (the two encodings carry the
//! same messages; a response head's headers as JSON would say them, repeated names
//! merged); an error never blames a stream id the frame's header does not carry.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ponte_protocol::{
    binary, decode_cloud, decode_connector, encode, limits, ConnectorMsg, DecodeError,
};

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    match binary::decode_connector(&frame) {
        Ok(msg) => {
            let again = binary::encode_connector(&msg).expect("decoded frame has a binary form");
            assert_eq!(again, frame, "connector binary frame round-trips exactly");
            let json = encode(&msg);
            // Base64 can push a large WebSocket message's twin over the frame limit.
            if json.len() <= limits::MAX_FRAME_LEN {
                let twin = decode_connector(&json).expect("JSON twin decodes");
                match msg {
                    // JSON merges repeated header names (any case) into one array.
                    ConnectorMsg::HttpResponseStart(_) => assert_eq!(encode(&twin), json),
                    _ => assert_eq!(twin, msg),
                }
            }
        }
        Err(e) => check_blame(data, &e),
    }
    match binary::decode_cloud(&frame) {
        Ok(msg) => {
            let again = binary::encode_cloud(&msg).expect("decoded frame has a binary form");
            assert_eq!(again, frame, "cloud binary frame round-trips exactly");
            let json = encode(&msg);
            // Base64 can push a large WebSocket message's twin over the frame limit.
            if json.len() <= limits::MAX_FRAME_LEN {
                assert_eq!(decode_cloud(&json).expect("JSON twin decodes"), msg);
            }
        }
        Err(e) => check_blame(data, &e),
    }
});

/// A blamed id is the one in the header (bytes 2 .. 2 + data[1]).
fn check_blame(data: &[u8], e: &DecodeError) {
    if let Some(id) = e.request_id().or(e.stream_id()) {
        let len = data[1] as usize;
        assert_eq!(
            id.as_bytes(),
            &data[2..2 + len],
            "blamed id comes from the header"
        );
    }
}
