//! Runs the real `herald` binary as a child process: with a copy of the repository's
//! configuration (or one a test writes), a fresh data directory, a port chosen by the OS, and
//! its JSON log lines collected for assertions.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use super::smtp::ReceivedMessage;

/// The repository root, which holds the default `rules.yaml`, `templates/` and `schemas/`.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_herald"))
}

/// Copies a folder tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A temporary configuration folder, filled with a copy of the repository's defaults.
pub struct ConfigDir {
    pub dir: TempDir,
}

impl ConfigDir {
    pub fn defaults() -> ConfigDir {
        let dir = tempfile::tempdir().unwrap();
        let root = repo_root();
        std::fs::copy(root.join("rules.yaml"), dir.path().join("rules.yaml")).unwrap();
        copy_tree(&root.join("templates"), &dir.path().join("templates"));
        copy_tree(&root.join("schemas"), &dir.path().join("schemas"));
        ConfigDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, relative: &str, contents: &str) {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(relative)).unwrap()
    }

    pub fn remove(&self, relative: &str) {
        let path = self.dir.path().join(relative);
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }

    /// Replaces the first occurrence of `from` in a file, and fails if there is none.
    pub fn replace(&self, relative: &str, from: &str, to: &str) {
        let text = self.read(relative);
        assert!(text.contains(from), "{relative} does not contain {from:?}");
        self.write(relative, &text.replacen(from, to, 1));
    }
}

/// How to start herald.
pub struct Options<'a> {
    pub config_dir: &'a Path,
    pub data_dir: &'a Path,
    /// Environment variables for the child, on top of a clean environment.
    pub env: Vec<(String, String)>,
    pub extra_args: Vec<String>,
}

impl<'a> Options<'a> {
    pub fn new(config_dir: &'a Path, data_dir: &'a Path) -> Options<'a> {
        Options {
            config_dir,
            data_dir,
            env: Vec::new(),
            extra_args: Vec::new(),
        }
    }

    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push((name.to_string(), value.into()));
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }
}

/// A running herald process. Dropping it kills the process.
pub struct Herald {
    child: Child,
    pub port: u16,
    logs: Arc<Mutex<Vec<String>>>,
    client: reqwest::Client,
}

/// An HTTP response: status, headers and body parsed as JSON (`Value::Null` if not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Herald {
    /// Starts `herald serve` and waits until it listens. Panics with the log if it exits or
    /// does not come up within 30 seconds.
    pub async fn start(options: Options<'_>) -> Herald {
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--config-dir")
            .arg(options.config_dir)
            .arg("--data-dir")
            .arg(options.data_dir)
            .arg("--log-format")
            .arg("json")
            .args(&options.extra_args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in &options.env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start the herald binary");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });

        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Some(port) = find_listen_port(&logs.lock().unwrap()) {
                break port;
            }
            if let Ok(Some(status)) = child.try_wait() {
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "herald exited with {status} before listening:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "herald did not start within 30 s:\n{}",
                logs.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        Herald {
            child,
            port,
            logs,
            client,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// POSTs a JSON payload to `/webhook`.
    pub async fn post(&self, payload: &Value) -> Reply {
        self.post_raw(Some("application/json"), payload.to_string().into_bytes())
            .await
    }

    pub async fn post_raw(&self, content_type: Option<&str>, body: Vec<u8>) -> Reply {
        let mut request = self.client.post(self.url("/webhook")).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        reply(request.send().await.expect("POST /webhook")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        reply(self.client.get(self.url(path)).send().await.expect("GET")).await
    }

    /// Sends a signal with the `kill` command.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Log lines parsed as JSON objects.
    pub fn log_records(&self) -> Vec<Value> {
        self.logs()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Waits until a log record's `message` equals `message` and it has every field in
    /// `fields`, and returns it. Panics with the log after `timeout`.
    pub async fn wait_for_log(
        &self,
        message: &str,
        fields: &[(&str, Value)],
        timeout: Duration,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.log_records().into_iter().find(|record| {
                record.get("message").and_then(Value::as_str) == Some(message)
                    && fields
                        .iter()
                        .all(|(name, value)| record.get(*name) == Some(value))
            });
            if let Some(record) = found {
                return record;
            }
            assert!(
                Instant::now() < deadline,
                "no log record {message:?} with {fields:?} within {timeout:?}:\n{}",
                self.logs().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until at least `count` log records have this message, and returns every such
    /// record in log order. Panics with the log after `timeout`.
    pub async fn wait_for_logs(
        &self,
        message: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<Value> = self
                .log_records()
                .into_iter()
                .filter(|record| record.get("message").and_then(Value::as_str) == Some(message))
                .collect();
            if found.len() >= count {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "fewer than {count} log records {message:?} within {timeout:?}:\n{}",
                self.logs().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Returns the value of one series from `GET /metrics`, named with its labels as herald
    /// prints them, such as `herald_config_reloads_total{result="failure"}`. `None` means
    /// the series is absent, which for a counter with labels means it was never incremented.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let reply = self.get("/metrics").await;
        assert_eq!(reply.status, 200, "GET /metrics: {}", reply.text);
        reply.text.lines().find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            Some(
                value
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("metric line {line:?} has no number")),
            )
        })
    }

    /// Counts log records with this message.
    pub fn count_logs(&self, message: &str) -> usize {
        self.log_records()
            .iter()
            .filter(|record| record.get("message").and_then(Value::as_str) == Some(message))
            .count()
    }

    /// Waits for the process to exit and returns its status. Panics after `timeout`. It
    /// yields to the runtime while it waits, so that servers the test runs on the same
    /// runtime keep answering herald.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "herald did not exit within {timeout:?}:\n{}",
                self.logs().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

fn find_listen_port(lines: &[String]) -> Option<u16> {
    lines.iter().find_map(|line| {
        let record: Value = serde_json::from_str(line).ok()?;
        if record.get("message")?.as_str()? != "herald started" {
            return None;
        }
        record
            .get("listen")?
            .as_str()?
            .rsplit(':')
            .next()?
            .parse()
            .ok()
    })
}

/// Reads the e-mail that the file outbox wrote for a delivery, at
/// `<data-dir>/outbox/<channel>/<delivery id>.eml`. The envelope fields of the returned
/// message are empty, because a file has no SMTP envelope.
pub fn file_outbox_email(data_dir: &Path, channel: &str, delivery_id: i64) -> ReceivedMessage {
    let path = data_dir
        .join("outbox")
        .join(channel)
        .join(format!("{delivery_id}.eml"));
    let data =
        std::fs::read(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    ReceivedMessage {
        mail_from: String::new(),
        mail_parameters: Vec::new(),
        rcpt_to: Vec::new(),
        data,
        tls: false,
        auth_user: None,
        ehlo_domain: String::new(),
        connection_id: 0,
    }
}

/// Returns the JSON line that the file outbox wrote for a delivery to
/// `<data-dir>/outbox/<channel>.jsonl`. Panics if there is no line for that delivery id.
pub fn file_outbox_record(data_dir: &Path, channel: &str, delivery_id: i64) -> Value {
    let path = data_dir.join("outbox").join(format!("{channel}.jsonl"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    text.lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|error| panic!("{line:?} is not JSON: {error}"))
        })
        .find(|record| record["delivery_id"] == delivery_id)
        .unwrap_or_else(|| {
            panic!(
                "no line for delivery {delivery_id} in {}:\n{text}",
                path.display()
            )
        })
}

/// Runs `herald` with arguments and returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("run herald");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
