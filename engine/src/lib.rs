//! Vaart storage engine.
