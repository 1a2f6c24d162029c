//! Provider configuration.
