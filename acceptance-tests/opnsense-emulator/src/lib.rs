//! The OPNsense emulator.
