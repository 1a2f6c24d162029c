//! SSH transport for the k3s resources.
