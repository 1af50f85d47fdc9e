//! A payload that decodes must re-encode to a file that decodes to the same model (postcard's
//! two-target pattern).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nmflow_format::{Header, ModelFile};

fuzz_target!(|payload: &[u8]| {
    let mut file = Header::for_payload(payload).to_bytes().to_vec();
    file.extend_from_slice(payload);
    if let Ok(model) = ModelFile::decode(&file) {
        let again = model.encode().expect("a decoded model encodes");
        assert_eq!(ModelFile::decode(&again), Ok(model), "decode → encode → decode changed the model");
    }
});
