//! Supervision: critical and optional tasks, and the shutdown that stops them together.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, warn};

use super::SHUTDOWN_GRACE;

#[derive(Clone)]
pub(super) struct Supervisor {
    pub(super) tracker: TaskTracker,
    pub(super) shutdown: CancellationToken,
    pub(super) failure: Arc<Mutex<Option<anyhow::Error>>>,
}

impl Supervisor {
    /// Runs a task the bot cannot do without: if it fails, panics, or ends before shutdown, every
    /// other task is cancelled and the process exits non-zero with the cause.
    pub(super) fn critical<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let this = self.clone();
        let handle = tokio::spawn(task);
        self.tracker.spawn(async move {
            let cause = match handle.await {
                Ok(Ok(())) if this.shutdown.is_cancelled() => None,
                Ok(Ok(())) => Some(anyhow::anyhow!("task {name} stopped unexpectedly")),
                Ok(Err(e)) => Some(e.context(format!("task {name} failed"))),
                Err(join) => Some(anyhow::anyhow!("task {name} panicked: {join}")),
            };
            if let Some(cause) = cause {
                error!("{cause:#}");
                let mut slot = this.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                slot.get_or_insert(cause);
                this.shutdown.cancel();
            }
        });
    }

    /// Waits for shutdown (requested or caused by a failure), gives the tasks [`SHUTDOWN_GRACE`] to
    /// stop, and returns the first failure.
    pub(super) async fn wait(self) -> anyhow::Result<()> {
        self.shutdown.cancelled().await;
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait()).await.is_err() {
            warn!("some tasks did not stop within {SHUTDOWN_GRACE:?}; exiting anyway");
        }
        let failure = self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs a task whose end is not fatal (a chat source whose input closed).
    pub(super) fn optional<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let handle = tokio::spawn(task);
        self.tracker.spawn(async move {
            match handle.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!("{name} ended: {e:#}"),
                Err(join) => warn!("{name} panicked: {join}"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supervisor() -> Supervisor {
        Supervisor { tracker: TaskTracker::new(), shutdown: CancellationToken::new(), failure: Arc::default() }
    }

    #[tokio::test]
    async fn a_failing_critical_task_cancels_the_rest_and_is_reported() {
        let sup = supervisor();
        let token = sup.shutdown.clone();
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
        sup.critical("patient", async move {
            token.cancelled().await;
            let _ = stopped_tx.send(());
            Ok(())
        });
        sup.critical("broken", async { Err(anyhow::anyhow!("boom")) });
        let err = sup.clone().wait().await.expect_err("the failure is reported");
        assert_eq!(format!("{err:#}"), "task broken failed: boom");
        assert!(stopped_rx.await.is_ok(), "the other task was cancelled and stopped");
    }

    #[tokio::test]
    async fn a_panicking_or_vanishing_critical_task_is_a_failure_too() {
        let sup = supervisor();
        sup.critical("quitter", async { Ok(()) });
        let err = sup.wait().await.expect_err("ending early is a failure");
        assert_eq!(err.to_string(), "task quitter stopped unexpectedly");

        let sup = supervisor();
        sup.critical("panicker", async { panic!("kaboom") });
        let err = sup.wait().await.expect_err("a panic is a failure");
        assert!(err.to_string().starts_with("task panicker panicked"), "{err}");
    }

    #[tokio::test]
    async fn an_optional_task_ending_is_not_a_failure() {
        let sup = supervisor();
        sup.optional("terminal", async { Ok(()) });
        tokio::task::yield_now().await;
        sup.shutdown.cancel();
        sup.wait().await.expect("clean");
    }
}
