//! The API versions this client speaks, and the choice per connection: the highest version
//! that both the client and the broker (its ApiVersions answer) support.
//!
//! Upper bounds stop before versions that change how a request names its topics: Produce v13
//! and Fetch v13+ address topics by id only, which this client does not track yet.

use std::collections::HashMap;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiKey;

/// `(api, lowest, highest)` versions this client can encode and decode.
pub const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeCluster, 0, 1),
    // Consumer groups (group.rs). OffsetFetch stops before v8 (groups batched per request).
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 2, 7),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 1, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DeleteGroups, 0, 2),
];

/// The version chosen for each API on one connection.
#[derive(Debug, Clone, Default)]
pub struct VersionTable {
    chosen: HashMap<i16, i16>,
}

impl VersionTable {
    /// Intersects [`CLIENT_VERSIONS`] with what the broker advertised; an API the two do not
    /// share is absent (calls to it fail with `UnsupportedApi`).
    pub fn negotiate(broker: &[ApiVersion]) -> Self {
        let mut chosen = HashMap::new();
        for &(api, client_min, client_max) in CLIENT_VERSIONS {
            let key = api as i16;
            let Some(advertised) = broker.iter().find(|version| version.api_key == key) else {
                continue;
            };
            let highest = client_max.min(advertised.max_version);
            let lowest = client_min.max(advertised.min_version);
            if lowest <= highest {
                chosen.insert(key, highest);
            }
        }
        Self { chosen }
    }

    /// The version to use for `api`, if the broker and client share one.
    pub fn get(&self, api: ApiKey) -> Option<i16> {
        self.chosen.get(&(api as i16)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advertised(api: ApiKey, min: i16, max: i16) -> ApiVersion {
        ApiVersion::default()
            .with_api_key(api as i16)
            .with_min_version(min)
            .with_max_version(max)
    }

    #[test]
    fn picks_the_highest_shared_version() {
        let table = VersionTable::negotiate(&[
            advertised(ApiKey::Produce, 0, 13),
            advertised(ApiKey::Fetch, 4, 8),
            advertised(ApiKey::Metadata, 13, 13),
        ]);
        assert_eq!(table.get(ApiKey::Produce), Some(12));
        assert_eq!(table.get(ApiKey::Fetch), Some(8));
        assert_eq!(table.get(ApiKey::Metadata), None, "no shared version");
        assert_eq!(table.get(ApiKey::CreateTopics), None, "not advertised");
    }
}
