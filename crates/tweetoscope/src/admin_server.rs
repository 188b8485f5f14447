//! The admin server of a process: `/metrics`, `/healthz` (no processing loop stalled) and
//! `/readyz` (started) over HTTP, and the watchdog thread that logs stalled loops.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::liveness::{STALL_LIMIT, STALL_LOGGED_AFTER};
use crate::metrics::Metrics;

/// Set once the stage has started, for the readiness probe.
#[derive(Debug, Default, Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the process ready.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Watches the processing loops of the process from a thread of its own (it works even when every
/// runtime worker is blocked): every 5 s, it logs the stalls longer than 30 s, every 30 s while
/// they last, with what the loop was doing.
pub fn spawn_stall_watchdog(metrics: Arc<Metrics>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("stall-watchdog".into())
        .spawn(move || {
            let mut logged: std::collections::HashMap<&'static str, std::time::Instant> =
                std::collections::HashMap::new();
            loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                for stall in metrics.liveness.stalls() {
                    let due = logged
                        .get(stall.stage)
                        .is_none_or(|at| at.elapsed() >= STALL_LOGGED_AFTER);
                    if stall.for_ >= STALL_LOGGED_AFTER && due {
                        logged.insert(stall.stage, std::time::Instant::now());
                        if stall.for_ > STALL_LIMIT {
                            tracing::error!(stage = stall.stage, stalled_s = stall.for_.as_secs(), doing = stall.doing, "processing loop stuck: /healthz now fails so that the process is restarted");
                        } else {
                            tracing::warn!(stage = stall.stage, stalled_s = stall.for_.as_secs(), doing = stall.doing, "processing loop making no progress");
                        }
                    }
                }
            }
        })
        .map(drop)
}

/// Serves `GET /metrics`, `GET /healthz` (alive: no processing loop stalled for longer than
/// [`STALL_LIMIT`]) and `GET /readyz` (started) on `addr`.
/// Returns the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Readiness,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            let readiness = readiness.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut len = 0;
                // Read until the end of the request head (or the buffer is full).
                while len < buf.len() {
                    match tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        socket.read(&mut buf[len..]),
                    )
                    .await
                    {
                        Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                        Ok(Ok(n)) => len += n,
                    }
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&buf[..len]);
                let path = head.split_whitespace().nth(1).unwrap_or("");
                let (status, content_type, body) = match path {
                    "/metrics" => (
                        "200 OK",
                        "text/plain; version=0.0.4; charset=utf-8",
                        metrics.render(),
                    ),
                    "/healthz" => {
                        let stuck = metrics.liveness.stuck(STALL_LIMIT);
                        if stuck.is_empty() {
                            ("200 OK", "text/plain", "ok\n".to_owned())
                        } else {
                            let lines = stuck.iter().map(|s| format!("{s}\n")).collect();
                            ("503 Service Unavailable", "text/plain", lines)
                        }
                    }
                    "/readyz" if readiness.is_ready() => {
                        ("200 OK", "text/plain", "ready\n".to_owned())
                    }
                    "/readyz" => (
                        "503 Service Unavailable",
                        "text/plain",
                        "starting\n".to_owned(),
                    ),
                    _ => (
                        "404 Not Found",
                        "text/plain",
                        "try /metrics, /healthz or /readyz\n".to_owned(),
                    ),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        socket
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
            .await
            .expect("request");
        let mut response = String::new();
        socket
            .read_to_string(&mut response)
            .await
            .expect("response");
        response
    }

    #[tokio::test]
    async fn healthz_fails_naming_the_loop_once_it_is_stalled_past_the_limit() {
        let metrics = Metrics::new();
        let addr = serve(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics.clone(),
            Readiness::default(),
        )
        .await
        .expect("serve");
        let beat = metrics.liveness.register("predictor");
        beat.beat("committing the transaction");
        let healthy = get(addr, "/healthz").await;
        assert!(healthy.starts_with("HTTP/1.1 200"), "{healthy}");

        beat.backdate(STALL_LIMIT + Duration::from_secs(10));
        assert!(
            metrics
                .render()
                .contains("tweetoscope_processing_loop_stalled_seconds{stage=\"predictor\"} 34"),
            "the stall is exported"
        );
        let stuck = get(addr, "/healthz").await;
        assert!(stuck.starts_with("HTTP/1.1 503"), "{stuck}");
        assert!(
            stuck.contains("predictor: no progress for 34")
                && stuck.contains("while committing the transaction"),
            "{stuck}"
        );

        // A loop that ended is not a stuck one.
        beat.stopped();
        let ended = get(addr, "/healthz").await;
        assert!(ended.starts_with("HTTP/1.1 200"), "{ended}");
        assert!(
            !metrics
                .render()
                .contains("tweetoscope_processing_loop_stalled_seconds{"),
            "a loop that ended has no stall series"
        );
    }
}
