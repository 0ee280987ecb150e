//! The embedded `JobQueue`: the job rows are the queue; waking notifies the in-process
//! runner (`partway-worker`'s `run_embedded_queue`), which claims due rows itself.
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::ports::JobQueue;

#[derive(Default, Clone)]
pub struct EmbeddedQueue {
    wake: Arc<Notify>,
}

impl EmbeddedQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }
}

#[async_trait]
impl JobQueue for EmbeddedQueue {
    async fn wake(&self) {
        self.wake.notify_one();
    }

    async fn is_ready(&self) -> bool {
        true
    }
}
