//! The typed framework a resource implements.
