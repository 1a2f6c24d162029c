//! cty values and their msgpack/JSON encodings.
