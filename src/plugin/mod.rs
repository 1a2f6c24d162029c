//! The protocol layer: the only code that knows protobuf, msgpack and go-plugin.

pub mod codec;
