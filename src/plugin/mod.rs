//! The protocol layer: the only code that knows protobuf, msgpack and go-plugin.

pub mod codec;
pub mod handshake;
pub mod log;
pub(crate) mod proto;
