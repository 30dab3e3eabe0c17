//! Topic name rules, as Kafka's `Topic.validate`.

/// Longest legal topic name (Kafka: 249, so `<name>-<partition>` fits a 255-byte file name).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Why a topic name is illegal (rendered into INVALID_TOPIC_EXCEPTION messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// Empty name.
    Empty,
    /// `.` or `..`.
    Dots,
    /// Longer than [`MAX_TOPIC_NAME_LEN`].
    TooLong,
    /// A character outside `[a-zA-Z0-9._-]`.
    IllegalChar,
}

impl NameError {
    /// Kafka-like message.
    pub fn message(self, name: &str) -> String {
        match self {
            NameError::Empty => "Topic name is illegal, it can't be empty".to_string(),
            NameError::Dots => "Topic name cannot be \".\" or \"..\"".to_string(),
            NameError::TooLong => format!(
                "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters, topic name: {}",
                name.chars().take(MAX_TOPIC_NAME_LEN + 1).collect::<String>()
            ),
            NameError::IllegalChar => format!(
                "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
            ),
        }
    }
}

/// Checks a topic name against Kafka's rules.
pub fn validate_topic_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name == "." || name == ".." {
        return Err(NameError::Dots);
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(NameError::TooLong);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(NameError::IllegalChar);
    }
    Ok(())
}

/// Kafka refuses topics whose names differ only by `.` vs `_` (their metric names collide).
pub fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-Y9").is_ok());
        assert_eq!(validate_topic_name(""), Err(NameError::Empty));
        assert_eq!(validate_topic_name(".."), Err(NameError::Dots));
        assert_eq!(validate_topic_name("a b"), Err(NameError::IllegalChar));
        assert_eq!(validate_topic_name("a/b"), Err(NameError::IllegalChar));
        assert_eq!(validate_topic_name("é"), Err(NameError::IllegalChar));
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        assert_eq!(
            validate_topic_name(&"a".repeat(250)),
            Err(NameError::TooLong)
        );
        assert_eq!(collision_key("a.b"), collision_key("a_b"));
    }
}
