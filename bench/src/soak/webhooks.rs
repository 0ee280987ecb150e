//! The soak's webhook receiver: a minimal HTTP/1.1 server on loopback that answers every
//! request 200 and records each delivery's `webhook-id`, event type and the upload's
//! resume token, so the run can check that every terminal event was delivered at least
//! once (and count the deliveries that repeated an event, which at-least-once allows).
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// The event types whose delivery the soak checks: an upload's terminal statuses.
pub const TERMINAL: [&str; 3] = ["upload.completed", "upload.aborted", "upload.expired"];

#[derive(Clone, Debug)]
pub struct Delivery {
    pub webhook_id: String,
    pub event_type: String,
    pub token: String,
}

pub struct Receiver {
    pub port: u16,
    pub deliveries: Arc<Mutex<Vec<Delivery>>>,
    accept: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Receiver {
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let log = deliveries.clone();
        let accept = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, log.clone()));
            }
        });
        Ok(Self {
            port,
            deliveries,
            accept,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// (event type, resume token) of every event delivered at least once.
    pub fn delivered(&self) -> BTreeSet<(String, String)> {
        self.deliveries
            .lock()
            .map(|d| {
                d.iter()
                    .map(|x| (x.event_type.clone(), x.token.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// (distinct events by `webhook-id`, deliveries that repeated one).
    pub fn counts(&self) -> (usize, usize) {
        let Ok(d) = self.deliveries.lock() else {
            return (0, 0);
        };
        let mut by_id: BTreeMap<&str, usize> = BTreeMap::new();
        for x in d.iter() {
            *by_id.entry(&x.webhook_id).or_default() += 1;
        }
        (by_id.len(), d.len() - by_id.len())
    }
}

/// A delivery's fields from its head and body (None: not a webhook request).
pub fn parse(head: &str, body: &[u8]) -> Option<Delivery> {
    let webhook_id = head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("webhook-id")
            .then(|| v.trim().to_string())
    })?;
    let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(Delivery {
        webhook_id,
        event_type: doc["type"].as_str()?.to_string(),
        token: doc["data"]["resumeToken"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    })
}

fn content_length(head: &str) -> usize {
    head.lines()
        .skip(1)
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

async fn serve(mut socket: TcpStream, log: Arc<Mutex<Vec<Delivery>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let length = content_length(&head);
    while buf.len() < header_end + length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let status = match parse(&head, &buf[header_end..header_end + length]) {
        Some(d) => {
            if let Ok(mut l) = log.lock() {
                l.push(d);
            }
            200
        }
        None => 400,
    };
    let response = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_delivery() {
        let head = "POST /hook HTTP/1.1\r\nContent-Length: 9\r\nWebhook-Id: evt_1\r\n\r\n";
        let body = br#"{"type":"upload.completed","data":{"resumeToken":"mpu_x"}}"#;
        let d = parse(head, body).expect("a delivery");
        assert_eq!(d.webhook_id, "evt_1");
        assert_eq!(d.event_type, "upload.completed");
        assert_eq!(d.token, "mpu_x");
        assert_eq!(content_length(head), 9);
        assert!(parse("POST / HTTP/1.1\r\n\r\n", body).is_none());
    }
}
