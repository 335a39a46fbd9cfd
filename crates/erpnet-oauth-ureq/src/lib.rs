//! Blocking adapter (being written).
