//! The admin server of a process: `/metrics`, `/healthz` (no processing loop stalled) and
//! `/readyz` (started) over HTTP, and the watchdog thread that logs stalled loops.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

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

/// How long a client has to send the head of its request (request line and headers) before its
/// connection is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may last in all (one request, keep-alive is off), so that a client that
/// never reads its answer does not hold a socket forever.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// The methods every path answers.
const ALLOWED_METHODS: &str = "GET, HEAD";
/// The content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const PLAIN_TEXT: &str = "text/plain";

/// Serves `GET /metrics`, `GET /healthz` (alive: no processing loop stalled for longer than
/// [`STALL_LIMIT`]) and `GET /readyz` (started) on `addr`, over HTTP/1.1 with hyper.
///
/// `HEAD` is answered on the same paths (without a body), any other method with
/// `405 Method Not Allowed` and an `Allow` header, any other path with `404 Not Found`. Every
/// connection is served by a task of its own, carries one request (`Connection: close`), and is
/// closed if its request head has not arrived within 10 s or it lasts longer than 60 s. Failures to
/// accept a connection (such as running out of file descriptors) are logged and followed by a pause
/// of 100 ms, doubling up to 1 s while they last.
///
/// The server runs until the tokio runtime ends, that is until the process exits after its
/// shutdown signal (the probes keep answering while a stage drains).
/// Returns the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Readiness,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let endpoints = Arc::new(Endpoints { metrics, readiness });
    tokio::spawn(accept_loop(listener, endpoints, HEADER_READ_TIMEOUT));
    Ok(bound)
}

/// What the server answers from.
struct Endpoints {
    metrics: Arc<Metrics>,
    readiness: Readiness,
}

impl Endpoints {
    /// The answer to `method path`.
    fn respond(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        let known = matches!(path, "/metrics" | "/healthz" | "/readyz");
        if !known {
            return text(
                StatusCode::NOT_FOUND,
                PLAIN_TEXT,
                "try /metrics, /healthz or /readyz\n".to_owned(),
            );
        }
        if method != Method::GET && method != Method::HEAD {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                PLAIN_TEXT,
                format!("{path} answers {ALLOWED_METHODS} only\n"),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
            return response;
        }
        // hyper sends the headers of a HEAD answer (Content-Length included) but not its body.
        match path {
            "/metrics" => text(StatusCode::OK, PROMETHEUS_TEXT, self.metrics.render()),
            "/healthz" => {
                let stuck = self.metrics.liveness.stuck(STALL_LIMIT);
                if stuck.is_empty() {
                    text(StatusCode::OK, PLAIN_TEXT, "ok\n".to_owned())
                } else {
                    let lines = stuck.iter().map(|s| format!("{s}\n")).collect();
                    text(StatusCode::SERVICE_UNAVAILABLE, PLAIN_TEXT, lines)
                }
            }
            _ if self.readiness.is_ready() => {
                text(StatusCode::OK, PLAIN_TEXT, "ready\n".to_owned())
            }
            _ => text(
                StatusCode::SERVICE_UNAVAILABLE,
                PLAIN_TEXT,
                "starting\n".to_owned(),
            ),
        }
    }
}

/// A response with `body` of type `content_type`.
fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Accepts connections and serves each from a task of its own; pauses after a failed accept.
async fn accept_loop(
    listener: TcpListener,
    endpoints: Arc<Endpoints>,
    header_read_timeout: Duration,
) {
    let mut failures: u32 = 0;
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                if failures > 0 {
                    tracing::info!(failures, "admin server accepting connections again");
                    failures = 0;
                }
                tokio::spawn(serve_connection(
                    socket,
                    endpoints.clone(),
                    header_read_timeout,
                ));
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let pause = accept_pause(failures);
                if accept_failure_logged(failures) {
                    tracing::warn!(%error, failures, pause_ms = pause.as_millis() as u64, "admin server cannot accept a connection (out of file descriptors?): pausing");
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// The pause after the `failures`-th failed accept in a row (from 1): 100 ms, doubling up to 1 s.
fn accept_pause(failures: u32) -> Duration {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(1);
    let doublings = failures.saturating_sub(1).min(4);
    (FIRST * 2u32.pow(doublings)).min(MAX)
}

/// Whether the `failures`-th failed accept in a row is logged: the first, then one in 60 (about
/// once a minute once the pause has reached 1 s).
fn accept_failure_logged(failures: u32) -> bool {
    failures == 1 || failures.is_multiple_of(60)
}

/// Serves the one request of a connection.
async fn serve_connection(
    socket: TcpStream,
    endpoints: Arc<Endpoints>,
    header_read_timeout: Duration,
) {
    let service = service_fn(move |request: Request<Incoming>| {
        let response = endpoints.respond(request.method(), request.uri().path());
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(false)
        .serve_connection(TokioIo::new(socket), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
        Ok(Ok(())) => {}
        // A client that went away or sent no valid request in time: nothing for the logs.
        Ok(Err(error)) => tracing::debug!(%error, "admin server connection failed"),
        Err(_) => tracing::debug!("admin server connection closed after 60 s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves fresh metrics on a free port of 127.0.0.1.
    async fn start(readiness: Readiness) -> (SocketAddr, Arc<Metrics>) {
        let metrics = Metrics::new();
        let addr = serve(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics.clone(),
            readiness,
        )
        .await
        .expect("serve");
        (addr, metrics)
    }

    /// Sends `request` as it is and reads the answer up to the end of the connection (the server
    /// closes it after one answer). A guard of 60 s turns a hang into a failure.
    async fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut socket = TcpStream::connect(addr).await.expect("connect");
        socket.write_all(request.as_bytes()).await.expect("request");
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), socket.read_to_end(&mut response))
            .await
            .expect("the server answers and closes the connection")
            .expect("response");
        String::from_utf8(response).expect("UTF-8 answer")
    }

    async fn request(addr: SocketAddr, method: &str, path: &str) -> Answer {
        Answer::parse(
            &exchange(
                addr,
                &format!("{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n"),
            )
            .await,
        )
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        exchange(addr, &format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")).await
    }

    /// An HTTP/1.1 answer, header names in lower case.
    #[derive(Debug)]
    struct Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Answer {
        fn parse(response: &str) -> Self {
            let (head, body) = response
                .split_once("\r\n\r\n")
                .unwrap_or_else(|| panic!("no end of head in {response:?}"));
            let mut lines = head.split("\r\n");
            let status_line = lines.next().expect("status line");
            assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
            let status = status_line[9..12].parse().expect("status code");
            let headers = lines
                .map(|line| {
                    let (name, value) = line.split_once(':').expect("header line");
                    (name.trim().to_ascii_lowercase(), value.trim().to_owned())
                })
                .collect();
            Answer {
                status,
                headers,
                body: body.to_owned(),
            }
        }

        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    #[tokio::test]
    async fn other_methods_than_get_and_head_get_405_with_allow() {
        let (addr, _metrics) = start(Readiness::default()).await;
        for (method, path) in [
            ("POST", "/metrics"),
            ("PUT", "/healthz"),
            ("DELETE", "/readyz"),
            ("OPTIONS", "/metrics"),
        ] {
            let answer = request(addr, method, path).await;
            assert_eq!(answer.status, 405, "{method} {path}: {answer:?}");
            assert_eq!(answer.header("allow"), Some("GET, HEAD"), "{answer:?}");
        }
    }

    #[tokio::test]
    async fn head_answers_the_headers_of_get_without_a_body() {
        let (addr, _metrics) = start(Readiness::default()).await;
        let get = request(addr, "GET", "/healthz").await;
        let head = request(addr, "HEAD", "/healthz").await;
        assert_eq!((get.status, get.body.as_str()), (200, "ok\n"), "{get:?}");
        assert_eq!(head.status, 200, "{head:?}");
        assert_eq!(head.body, "", "{head:?}");
        assert_eq!(head.header("content-length"), Some("3"), "{head:?}");
        assert_eq!(head.header("content-type"), Some("text/plain"), "{head:?}");

        let head = request(addr, "HEAD", "/metrics").await;
        assert_eq!(head.status, 200, "{head:?}");
        assert_eq!(head.body, "", "{head:?}");
        assert_eq!(
            head.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8"),
            "{head:?}"
        );
    }

    #[tokio::test]
    async fn unknown_paths_get_404() {
        let (addr, _metrics) = start(Readiness::default()).await;
        for (method, path) in [
            ("GET", "/"),
            ("GET", "/metrics/x"),
            ("GET", "/nope"),
            ("POST", "/nope"),
        ] {
            let answer = request(addr, method, path).await;
            assert_eq!(answer.status, 404, "{method} {path}: {answer:?}");
            assert!(answer.body.contains("try /metrics"), "{answer:?}");
        }
    }

    #[tokio::test]
    async fn metrics_are_served_in_the_prometheus_text_format() {
        let (addr, metrics) = start(Readiness::default()).await;
        metrics
            .consumed
            .with_label_values(&["collector", "tweets"])
            .inc_by(7);
        let answer = request(addr, "GET", "/metrics").await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(
            answer.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        assert_eq!(
            answer.header("content-length"),
            Some(answer.body.len().to_string().as_str())
        );
        assert!(
            answer
                .body
                .contains("# TYPE tweetoscope_messages_consumed_total counter"),
            "{}",
            answer.body
        );
        assert!(
            answer.body.contains(
                "tweetoscope_messages_consumed_total{stage=\"collector\",topic=\"tweets\"} 7"
            ),
            "{}",
            answer.body
        );
    }

    #[tokio::test]
    async fn readyz_answers_503_until_the_process_is_ready() {
        let readiness = Readiness::default();
        let (addr, _metrics) = start(readiness.clone()).await;
        let starting = request(addr, "GET", "/readyz").await;
        assert_eq!(
            (starting.status, starting.body.as_str()),
            (503, "starting\n")
        );
        readiness.set_ready();
        let ready = request(addr, "GET", "/readyz").await;
        assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    }

    #[tokio::test]
    async fn a_stalled_client_does_not_hold_up_the_others() {
        let (addr, _metrics) = start(Readiness::default()).await;
        // One client sends half a request line and goes silent, another sends nothing at all.
        let mut half = TcpStream::connect(addr).await.expect("connect");
        half.write_all(b"GET /heal").await.expect("half a request");
        let _silent = TcpStream::connect(addr).await.expect("connect");
        for _ in 0..3 {
            let answer = request(addr, "GET", "/healthz").await;
            assert_eq!((answer.status, answer.body.as_str()), (200, "ok\n"));
        }
        drop(half);
    }

    #[tokio::test]
    async fn a_client_that_does_not_finish_its_request_head_is_disconnected() {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let endpoints = Arc::new(Endpoints {
            metrics: Metrics::new(),
            readiness: Readiness::default(),
        });
        tokio::spawn(accept_loop(listener, endpoints, Duration::from_millis(200)));
        // The server closes the connection (after a 408 at most) instead of waiting for the end.
        let answer = exchange(addr, "GET /healthz HTTP/1.1\r\nHost: te").await;
        assert!(!answer.contains(" 200 "), "{answer}");
    }

    #[test]
    fn failed_accepts_pause_100_ms_doubling_up_to_1_s() {
        let pauses: Vec<u128> = (1..=8).map(|n| accept_pause(n).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
        assert_eq!(accept_pause(u32::MAX), Duration::from_secs(1));
        let logged: Vec<u32> = (1..=200).filter(|&n| accept_failure_logged(n)).collect();
        assert_eq!(logged, [1, 60, 120, 180]);
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
