//! Helpers for the end-to-end tests in `tests/tests/`: start the real `vaart` binary on a free
//! port and drive it with real Kafka clients.
