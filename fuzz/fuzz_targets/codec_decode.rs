//! Fuzzes the cty value decoders with untrusted bytes, as Terraform (or anything speaking to the plugin socket)
//! could send them. Invariants: no panic, no stack overflow; whatever msgpack decodes re-encodes, and the
//! re-encoding decodes to the same value.
//!
//! The first input byte picks the schema type; the rest is the payload.
//!
//! On the stable toolchain: `acceptance-tests/dev fuzz [--time SECS]` (a coverage-guided libFuzzer run without
//! AddressSanitizer; CI runs it for 60 s). With nightly: `cargo +nightly fuzz run codec_decode` from the repository
//! root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use terraform_provider_homelab::plugin::codec::{
    decode_json, decode_msgpack, encode_msgpack, Type,
};

fn types() -> Vec<Type> {
    let listener = Type::object([
        ("port", Type::Number),
        ("name", Type::String),
        ("tls", Type::Bool),
    ]);
    vec![
        Type::Dynamic,
        Type::String,
        Type::Number,
        Type::list(Type::String),
        Type::set(Type::Number),
        Type::map(Type::Dynamic),
        Type::Tuple(vec![Type::String, Type::Number, Type::Dynamic]),
        Type::object([
            ("id", Type::String),
            ("listeners", Type::list(listener.clone())),
            ("backends", Type::set(listener)),
            ("tags", Type::map(Type::String)),
            ("extra", Type::Dynamic),
        ]),
    ]
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let types = types();
    let ty = &types[usize::from(selector) % types.len()];
    if let Ok(value) = decode_msgpack(payload, ty) {
        let bytes = encode_msgpack(&value, ty).expect("a decoded value re-encodes");
        let again = decode_msgpack(&bytes, ty).expect("a re-encoded value decodes");
        assert_eq!(again, value);
    }
    let _ = decode_json(payload, ty);
    let _ = Type::from_json(payload);
});
