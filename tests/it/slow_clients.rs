//! Clients that keep a connection open without completing a request. The real binary closes
//! them after `--header-timeout`, and closes a new connection as soon as it accepts it while
//! `--max-connections` connections are open.

use std::io::ErrorKind;
use std::time::Duration;

use serde_json::json;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::support::herald::{ConfigDir, Herald, Options};

/// Upper bound for herald to close a connection that `--header-timeout 2s` applies to.
const CLOSE_BOUND: Duration = Duration::from_secs(15);

/// A request head of more bytes than a one-byte-per-second client sends within `CLOSE_BOUND`,
/// so that herald can only close the connection because of the timeout.
const SLOW_HEAD: &[u8] =
    b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                           Content-Length: 2\r\n\r\n";

const HEALTH_REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// herald with the repository's configuration, the file outbox and extra `serve` arguments.
struct Gateway {
    herald: Herald,
    _config: ConfigDir,
    _data: TempDir,
}

impl Gateway {
    async fn start(args: &[&str]) -> Gateway {
        let config = ConfigDir::defaults();
        let data = tempfile::tempdir().unwrap();
        let mut options = Options::new(config.path(), data.path());
        for arg in args {
            options = options.arg(*arg);
        }
        let herald = Herald::start(options).await;
        Gateway {
            herald,
            _config: config,
            _data: data,
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(("127.0.0.1", self.herald.port))
            .await
            .unwrap()
    }

    /// Asserts that herald still serves new connections.
    async fn assert_healthy(&self, case: &str) {
        let reply = self.herald.get("/healthz").await;
        assert_eq!(
            reply.status, 200,
            "{case}: GET /healthz afterwards: {}",
            reply.text
        );
    }
}

/// What a read found on a connection.
#[derive(Debug, PartialEq)]
enum ReadOutcome {
    /// The server closed the connection (end of stream or a reset).
    Closed,
    Data(Vec<u8>),
    /// Nothing arrived within the read's time limit.
    TimedOut,
}

async fn read_for(stream: &mut TcpStream, limit: Duration) -> ReadOutcome {
    let mut buffer = vec![0; 4096];
    match timeout(limit, stream.read(&mut buffer)).await {
        Err(_) => ReadOutcome::TimedOut,
        Ok(Ok(0)) => ReadOutcome::Closed,
        Ok(Ok(count)) => {
            buffer.truncate(count);
            ReadOutcome::Data(buffer)
        }
        Ok(Err(error)) if is_disconnect(&error) => ReadOutcome::Closed,
        Ok(Err(error)) => panic!("reading from herald failed: {error}"),
    }
}

fn is_disconnect(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

/// Reads until the server closes the connection, and returns what it sent before that.
/// Panics if the connection is still open after `bound`.
async fn wait_for_close(stream: &mut TcpStream, bound: Duration, case: &str) -> Vec<u8> {
    let deadline = Instant::now() + bound;
    let mut received = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match read_for(stream, left).await {
            ReadOutcome::Closed => return received,
            ReadOutcome::Data(data) => received.extend(data),
            ReadOutcome::TimedOut => panic!(
                "{case}: herald kept the connection open for {bound:?}; it sent {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
}

/// Returns whether `bytes` start with an HTTP status line for a successful request.
fn is_success_response(bytes: &[u8]) -> bool {
    bytes.starts_with(b"HTTP/1.1 2")
}

#[tokio::test]
async fn slow_header_is_cut_off() {
    let gateway = Gateway::start(&["--header-timeout", "2s"]).await;
    let mut stream = gateway.connect().await;
    let case = "request head at one byte per second";

    let deadline = Instant::now() + CLOSE_BOUND;
    let mut sent = 0;
    let mut received = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "{case}: herald kept the connection open for {CLOSE_BOUND:?} after {sent} bytes"
        );
        assert!(
            sent < SLOW_HEAD.len(),
            "{case}: the whole head was sent before herald closed the connection"
        );
        match stream.write_all(&SLOW_HEAD[sent..=sent]).await {
            Ok(()) => sent += 1,
            Err(error) if is_disconnect(&error) => break,
            Err(error) => panic!("{case}: writing to herald failed: {error}"),
        }
        match read_for(&mut stream, Duration::from_secs(1)).await {
            ReadOutcome::Closed => break,
            ReadOutcome::Data(data) => received.extend(data),
            ReadOutcome::TimedOut => {}
        }
    }

    assert!(
        !is_success_response(&received),
        "{case}: herald responded to an incomplete head: {:?}",
        String::from_utf8_lossy(&received)
    );
    gateway.assert_healthy(case).await;
}

#[tokio::test]
async fn silent_connection_is_cut_off() {
    let gateway = Gateway::start(&["--header-timeout", "2s"]).await;
    let mut stream = gateway.connect().await;
    let case = "connection that sends nothing";

    let received = wait_for_close(&mut stream, CLOSE_BOUND, case).await;

    assert!(
        !is_success_response(&received),
        "{case}: herald sent {:?}",
        String::from_utf8_lossy(&received)
    );
    gateway.assert_healthy(case).await;
}

#[tokio::test]
async fn connection_over_limit_is_closed() {
    // The long header timeout keeps the two idle connections open for the whole test.
    let gateway = Gateway::start(&["--max-connections", "2", "--header-timeout", "60s"]).await;
    let mut first = gateway.connect().await;
    let second = gateway.connect().await;

    // herald accepts connections in order, so it took the first two before the third.
    let mut third = gateway.connect().await;
    let _ = third.write_all(HEALTH_REQUEST).await;
    match read_for(&mut third, CLOSE_BOUND).await {
        ReadOutcome::Closed => {}
        ReadOutcome::Data(data) => panic!(
            "third connection: herald responded instead of closing it: {:?}",
            String::from_utf8_lossy(&data)
        ),
        ReadOutcome::TimedOut => {
            panic!("third connection: herald kept it open for {CLOSE_BOUND:?}")
        }
    }
    gateway
        .herald
        .wait_for_log(
            "Connection limit reached; closing a new connection",
            &[("max_connections", json!(2))],
            CLOSE_BOUND,
        )
        .await;

    // The first connection is still open and served.
    first.write_all(HEALTH_REQUEST).await.unwrap();
    match read_for(&mut first, CLOSE_BOUND).await {
        ReadOutcome::Data(data) => assert!(
            is_success_response(&data),
            "first connection: response {:?}",
            String::from_utf8_lossy(&data)
        ),
        other => panic!("first connection: no response to GET /healthz: {other:?}"),
    }

    // Closing one connection frees its place for a new one.
    drop(second);
    let deadline = Instant::now() + CLOSE_BOUND;
    loop {
        let mut next = gateway.connect().await;
        let _ = next.write_all(HEALTH_REQUEST).await;
        match read_for(&mut next, Duration::from_secs(2)).await {
            ReadOutcome::Data(data) if is_success_response(&data) => break,
            other => assert!(
                Instant::now() < deadline,
                "a new connection was not served within {CLOSE_BOUND:?} after the second closed: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
