//! Typed OPNsense REST client.
