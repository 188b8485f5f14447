//! Real Prometheus, Pushgateway, Alertmanager and VictoriaLogs processes for the tests, each on a
//! free loopback port with its own temporary directory, killed when its guard drops (also when an assertion
//! fails); and a small HTTP server that records every request it gets (Alertmanager webhooks,
//! Loki pushes).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What to do when a Debian package is missing.
pub(crate) const INSTALL_HINT: &str =
    "run scripts/tiers/observability.sh, which installs the Debian packages prometheus, prometheus-pushgateway and prometheus-alertmanager";

/// A loopback port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// The repository root.
pub(crate) fn repo_root() -> PathBuf {
    Path::new(&crate::common::manifest_dir())
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// A directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory whose name starts with `prefix`.
    pub(crate) fn new(prefix: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "tweetoscope-{prefix}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn find_binary(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found: {INSTALL_HINT}"))
}

/// A server process, killed on drop.
pub(crate) struct Server {
    /// What it is (for messages).
    pub name: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    binary: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    /// Its data and configuration; removed after the process is killed.
    _dir: TempDir,
}

impl Server {
    /// Base URL, without a trailing slash.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its output so far (for failure messages).
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn start(
        name: &'static str,
        binary: &str,
        dir: TempDir,
        port: u16,
        args: impl Fn(&Path, SocketAddr) -> Vec<String>,
    ) -> Server {
        Server::start_binary(name, find_binary(binary), dir, port, args)
    }

    fn start_binary(
        name: &'static str,
        binary: PathBuf,
        dir: TempDir,
        port: u16,
        args: impl Fn(&Path, SocketAddr) -> Vec<String>,
    ) -> Server {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = dir.path().join(format!("{name}.log"));
        let args = args(dir.path(), addr);
        let child = spawn(&binary, &args, dir.path(), &log);
        Server {
            name,
            addr,
            child,
            binary,
            args,
            log,
            _dir: dir,
        }
    }

    /// Stops the server (SIGKILL: an outage, not a clean shutdown); [`Server::start_again`]
    /// brings it back on the same address with the same files.
    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the stopped server again, as it was started first, and waits until it is ready.
    pub(crate) async fn start_again(&mut self) {
        self.child = spawn(&self.binary, &self.args, self._dir.path(), &self.log);
        self.wait_ready(Duration::from_secs(60)).await;
    }

    /// Waits (at most `timeout`) until `GET /-/ready` answers 200.
    pub(crate) async fn wait_ready(&mut self, timeout: Duration) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before being ready:\n{}",
                    self.name,
                    self.log()
                );
            }
            let ready = client
                .get(format!("{}/-/ready", self.url()))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within {timeout:?}:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Runs `binary` with `args` in `dir`, its output appended to `log`.
fn spawn(binary: &Path, args: &[String], dir: &Path, log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(binary)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Prometheus with this configuration (its own TSDB directory) and waits until it is ready.
pub(crate) async fn prometheus(config: &str) -> Server {
    let dir = TempDir::new("prometheus");
    std::fs::write(dir.path().join("prometheus.yml"), config).expect("write config");
    let mut server = Server::start("prometheus", "prometheus", dir, free_port(), |dir, addr| {
        vec![
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address={addr}"),
            "--log.level=warn".into(),
        ]
    });
    server.wait_ready(Duration::from_secs(60)).await;
    server
}

/// Starts a Pushgateway without persistence and waits until it is ready.
pub(crate) async fn pushgateway() -> Server {
    let dir = TempDir::new("pushgateway");
    let mut server = Server::start(
        "pushgateway",
        "prometheus-pushgateway",
        dir,
        free_port(),
        |_, addr| {
            vec![
                format!("--web.listen-address={addr}"),
                "--persistence.file=".into(),
                "--log.level=warn".into(),
            ]
        },
    );
    server.wait_ready(Duration::from_secs(60)).await;
    server
}

/// Starts a standalone Alertmanager (no cluster) and waits until it is ready. `config` gets the
/// server's own directory (to write files the configuration refers to, such as secrets) and
/// returns the configuration.
pub(crate) async fn alertmanager(config: impl FnOnce(&Path) -> String) -> Server {
    let dir = TempDir::new("alertmanager");
    let text = config(dir.path());
    std::fs::write(dir.path().join("alertmanager.yml"), text).expect("write config");
    let mut server = Server::start(
        "alertmanager",
        "prometheus-alertmanager",
        dir,
        free_port(),
        |dir, addr| {
            vec![
                format!("--config.file={}", dir.join("alertmanager.yml").display()),
                format!("--storage.path={}", dir.join("data").display()),
                format!("--web.listen-address={addr}"),
                "--cluster.listen-address=".into(),
                "--log.level=warn".into(),
            ]
        },
    );
    server.wait_ready(Duration::from_secs(60)).await;
    server
}

/// What to do when victoria-logs is missing.
pub(crate) const VICTORIA_LOGS_HINT: &str =
    "run scripts/tiers/observability.sh, which builds victoria-logs into .cache/bin (or set TWEETOSCOPE_VICTORIA_LOGS to a victoria-logs binary)";

/// The victoria-logs binary: `$TWEETOSCOPE_VICTORIA_LOGS`, else the one
/// scripts/tiers/observability.sh builds into the repository's `.cache/bin`.
fn victoria_logs_binary() -> PathBuf {
    let binary = std::env::var_os("TWEETOSCOPE_VICTORIA_LOGS").map_or_else(
        || repo_root().join(".cache/bin/victoria-logs"),
        PathBuf::from,
    );
    assert!(
        binary.is_file(),
        "{} not found: {VICTORIA_LOGS_HINT}",
        binary.display()
    );
    binary
}

/// Starts VictoriaLogs (its own storage directory), which takes Loki pushes at
/// `/insert/loki/api/v1/push` and answers LogsQL at `/select/logsql/query`, and waits until it is
/// ready.
pub(crate) async fn victoria_logs() -> Server {
    let dir = TempDir::new("victoria-logs");
    let mut server = Server::start_binary(
        "victoria-logs",
        victoria_logs_binary(),
        dir,
        free_port(),
        |dir, addr| {
            vec![
                format!("-httpListenAddr={addr}"),
                format!("-storageDataPath={}", dir.join("data").display()),
                "-loggerLevel=WARN".into(),
            ]
        },
    );
    server.wait_ready(Duration::from_secs(60)).await;
    server
}

/// One request received by an [`HttpSink`].
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// GET, POST, ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    /// Body, de-chunked.
    pub body: Vec<u8>,
}

/// An HTTP server on a free loopback port that answers `200 OK` to everything and keeps what it
/// received. One request per connection (`Connection: close`). Stops with the test's runtime.
pub(crate) struct HttpSink {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Request>>>,
}

impl HttpSink {
    /// Starts the server.
    pub(crate) async fn start() -> HttpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let addr = listener.local_addr().expect("sink address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let store = store.clone();
                tokio::spawn(async move {
                    if let Some(request) = serve_one(socket).await {
                        store.lock().expect("sink lock").push(request);
                    }
                });
            }
        });
        HttpSink { addr, received }
    }

    /// `http://addr{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request received so far.
    pub(crate) fn requests(&self) -> Vec<Request> {
        self.received.lock().expect("sink lock").clone()
    }
}

/// Reads what is available (at most 10 s of waiting); None at the end of the stream.
async fn read(socket: &mut TcpStream, chunk: &mut [u8]) -> Option<usize> {
    match tokio::time::timeout(Duration::from_secs(10), socket.read(chunk)).await {
        Ok(Ok(n)) if n > 0 => Some(n),
        _ => None,
    }
}

async fn serve_one(mut socket: TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = read(&mut socket, &mut chunk).await?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut rest = buf[head_end + 4..].to_vec();
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        let mut body = Vec::new();
        loop {
            // rest starts at a chunk-size line.
            let line_end = loop {
                if let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                let n = read(&mut socket, &mut chunk).await?;
                rest.extend_from_slice(&chunk[..n]);
            };
            let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            while rest.len() < line_end + 2 + size + 2 {
                let n = read(&mut socket, &mut chunk).await?;
                rest.extend_from_slice(&chunk[..n]);
            }
            body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break body;
            }
        }
    } else {
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while rest.len() < length {
            let n = read(&mut socket, &mut chunk).await?;
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(length);
        rest
    };
    let _ = socket
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await;
    let _ = socket.shutdown().await;
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

/// Polls `check` every 500 ms until it returns `Ok`, or panics after `timeout` naming `what` and
/// the last `Err` (the state that was not yet right).
pub(crate) async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(state) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}: {state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
