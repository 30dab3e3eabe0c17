//! Vaart's own small Kafka client (placeholder; see the load generator issue).
