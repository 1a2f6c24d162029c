//! The host lab.
