//! The port a webhook request goes out through, and its HTTP implementation.
//!
//! [`HttpSender`] (reqwest) never follows redirects, gives up after the timeout, and
//! connects only where the outbound guard (DESIGN §7) allows: the URL is checked before
//! every request (an address literal never reaches a resolver) and host names resolve
//! through the guard at connect time, so DNS rebinding cannot pass either.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use async_trait::async_trait;

use crate::outbound::OutboundPolicy;

/// Why a request got no HTTP answer. The texts are fixed and safe to show an owner
/// (the deliveries list): no secrets, no internal addresses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the endpoint's address is not allowed: {0}")]
    Refused(String),
    #[error("timed out")]
    Timeout,
    #[error("could not connect")]
    Connect,
    #[error("the request failed")]
    Other,
}

/// Sends one signed event to an endpoint; the answer's status code, or why there was none.
#[async_trait]
pub trait WebhookSender: Send + Sync {
    async fn send(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: &str,
        timeout: Duration,
    ) -> Result<u16, SendError>;
}

/// Host names resolved through the outbound guard (refused answers are an error).
struct GuardedResolver(Arc<OutboundPolicy>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let ips = guard.resolve(&host).await.map_err(|e| {
                tracing::warn!(host = %host, "outbound guard refused a webhook connection: {e}");
                Box::new(e) as Box<dyn std::error::Error + Send + Sync>
            })?;
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// Webhook requests over HTTP(S), under the outbound guard.
pub struct HttpSender {
    client: reqwest::Client,
    guard: Arc<OutboundPolicy>,
}

impl HttpSender {
    pub fn new(guard: OutboundPolicy) -> HttpSender {
        let guard = Arc::new(guard);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver(guard.clone())))
            .user_agent(concat!("partway-webhooks/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .unwrap_or_default();
        HttpSender { client, guard }
    }
}

#[async_trait]
impl WebhookSender for HttpSender {
    async fn send(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: &str,
        timeout: Duration,
    ) -> Result<u16, SendError> {
        self.guard
            .check(url)
            .await
            .map_err(|e| SendError::Refused(e.to_string()))?;
        let mut request = self
            .client
            .post(url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        match request.send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(e) if e.is_timeout() => Err(SendError::Timeout),
            Err(e) if e.is_connect() => {
                // A refusal by the guard's resolver also surfaces as a connect error.
                let text = format!("{e:?}");
                if text.contains("does not connect to") || text.contains("allowed endpoints") {
                    Err(SendError::Refused(
                        "resolved to an address that is not allowed".into(),
                    ))
                } else {
                    Err(SendError::Connect)
                }
            }
            Err(_) => Err(SendError::Other),
        }
    }
}

/// A request a [`RecordingSender`] got.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone)]
pub struct Recorded {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// A sender for use-case tests: records every request and answers from a script (then
/// 200 forever). Sends nothing anywhere.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Default)]
pub struct RecordingSender {
    pub requests: std::sync::Mutex<Vec<Recorded>>,
    pub answers: std::sync::Mutex<std::collections::VecDeque<Result<u16, SendError>>>,
}

#[cfg(any(test, feature = "testing"))]
impl RecordingSender {
    pub fn answering(answers: Vec<Result<u16, SendError>>) -> Self {
        RecordingSender {
            requests: Default::default(),
            answers: std::sync::Mutex::new(answers.into()),
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(any(test, feature = "testing"))]
#[async_trait]
impl WebhookSender for RecordingSender {
    async fn send(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: &str,
        _timeout: Duration,
    ) -> Result<u16, SendError> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Recorded {
                url: url.to_string(),
                headers: headers.to_vec(),
                body: body.to_string(),
            });
        self.answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
            .unwrap_or(Ok(200))
    }
}
