//! Periodic low-priority background work of a shard (retention, log cleaning): one task per
//! job in its own glommio task queue, so it never delays the produce/fetch path, stopped by
//! the shard's shutdown.

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::future;
use glommio::{Latency, Shares};
use tracing::warn;

use super::Shard;

impl Shard {
    /// Runs `work` every `interval` in a task queue named `name` with `shares` of the CPU,
    /// until the shard shuts down.
    pub(super) fn spawn_periodic<Work, WorkFuture>(
        self: &Rc<Self>,
        name: &'static str,
        shares: usize,
        interval: Duration,
        work: Work,
    ) where
        Work: Fn(Rc<Shard>) -> WorkFuture + 'static,
        WorkFuture: Future<Output = ()> + 'static,
    {
        let queue = glommio::executor().create_task_queue(
            Shares::Static(shares),
            Latency::NotImportant,
            name,
        );
        let shard = self.clone();
        let spawned = glommio::spawn_local_into(
            async move {
                loop {
                    let stop = future::or(
                        async {
                            glommio::timer::sleep(interval).await;
                            false
                        },
                        async {
                            shard.shutdown.wait().await;
                            true
                        },
                    )
                    .await;
                    if stop {
                        return;
                    }
                    work(shard.clone()).await;
                }
            },
            queue,
        );
        match spawned {
            Ok(task) => {
                task.detach();
            }
            Err(err) => warn!(task = name, error = %err, "cannot start a background task"),
        }
    }
}
