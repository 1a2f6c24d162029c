//! Bounded retries for transient SSH failures, and a connection holder that reconnects.
//!
//! Hosts that are rebooting, still running cloud-init, or whose connection dropped mid-apply come back shortly; the
//! resources should ride that out instead of failing the apply. Only [`SshError::is_transient`] errors
//! (unreachable, connection lost) are retried, a bounded number of times with exponential backoff, and cancellation
//! interrupts the wait. Authentication, host-key and command failures are returned at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::config::HostConnection;
use super::error::SshError;
use super::session::Session;

/// How often and how patiently to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total attempts including the first (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt; doubled after each failure.
    pub initial_backoff: Duration,
    /// Upper bound of a single wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Runs `op` until it succeeds, fails with a non-transient error, or `policy.attempts` are used up.
/// `op` receives the attempt number (1-based). `host` names the target in a `Cancelled` error.
pub async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    cancel: &CancellationToken,
    host: &str,
    mut op: F,
) -> Result<T, SshError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, SshError>>,
{
    let mut backoff = policy.initial_backoff;
    let attempts = policy.attempts.max(1);
    let mut attempt = 1;
    loop {
        match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && attempt < attempts => {
                tracing::debug!(host, attempt, error = %e, "transient SSH error, retrying");
                tokio::select! {
                    _ = cancel.cancelled() => {
                        return Err(SshError::Cancelled { host: host.to_owned(), during: "waiting to retry".to_owned() })
                    }
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(policy.max_backoff);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// [`Session::connect`] with retries of transient failures.
pub async fn connect_with_retry(
    conn: &HostConnection,
    policy: &RetryPolicy,
    cancel: &CancellationToken,
) -> Result<Session, SshError> {
    retry(policy, cancel, &conn.display_host(), |_| {
        Session::connect(conn, cancel)
    })
    .await
}

/// Holds one session to a host and transparently replaces it when the connection has dropped.
#[derive(Debug)]
pub struct Connector {
    conn: HostConnection,
    policy: RetryPolicy,
    cancel: CancellationToken,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
}

impl Connector {
    /// A connector; nothing is opened until first use.
    pub fn new(conn: HostConnection, policy: RetryPolicy, cancel: CancellationToken) -> Self {
        Connector {
            conn,
            policy,
            cancel,
            session: tokio::sync::Mutex::new(None),
        }
    }

    /// The live session, (re)connecting with retries if there is none or it has closed.
    pub async fn session(&self) -> Result<Arc<Session>, SshError> {
        let mut slot = self.session.lock().await;
        if let Some(s) = slot.as_ref() {
            if !s.is_closed() {
                return Ok(s.clone());
            }
        }
        let s = Arc::new(connect_with_retry(&self.conn, &self.policy, &self.cancel).await?);
        *slot = Some(s.clone());
        Ok(s)
    }

    /// Runs an IDEMPOTENT operation; if the connection is lost (or the host unreachable), reconnects and runs it
    /// again, within the retry policy. Only use it for operations that are safe to repeat.
    pub async fn run_idempotent<T, F, Fut>(&self, mut op: F) -> Result<T, SshError>
    where
        F: FnMut(Arc<Session>) -> Fut,
        Fut: Future<Output = Result<T, SshError>>,
    {
        let host = self.conn.display_host();
        let mut backoff = self.policy.initial_backoff;
        let attempts = self.policy.attempts.max(1);
        let mut attempt = 1;
        loop {
            let result = match self.session().await {
                Ok(s) => op(s).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && attempt < attempts => {
                    tracing::debug!(host, attempt, error = %e, "transient SSH error, reconnecting");
                    tokio::select! {
                        _ = self.cancel.cancelled() => {
                            return Err(SshError::Cancelled { host, during: "waiting to reconnect".to_owned() })
                        }
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.policy.max_backoff);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
