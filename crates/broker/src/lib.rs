//! Pigeon broker core (being written).
