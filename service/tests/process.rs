//! The built binary as ECS runs it: real sockets, real signals.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_service");

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A running service process, killed on drop if a test fails before stopping it.
struct Running {
    child: Child,
    addr: SocketAddr,
}

impl Running {
    fn start(extra_env: &[(&str, &str)]) -> Self {
        Self::spawn(extra_env, false)
    }

    /// Like `start`, with the JSON access log on a piped stdout.
    fn start_logging(extra_env: &[(&str, &str)]) -> Self {
        Self::spawn(extra_env, true)
    }

    fn spawn(extra_env: &[(&str, &str)], logging: bool) -> Self {
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PORT", port.to_string())
            .env("BIND_ADDR", "127.0.0.1")
            .env("APP_VERSION", "v7.0.0")
            .env("AWS_REGION", "eu-west-1")
            .env("RUST_LOG", if logging { "info" } else { "warn" })
            .stdout(if logging {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn the service binary");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "service did not listen on {addr} within 10s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Running { child, addr }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    fn wait_exit(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for service") {
                return (status, started.elapsed());
            }
            assert!(
                started.elapsed() < limit,
                "service still running {limit:?} after the signal"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a client got for one request.
#[derive(Debug)]
enum Outcome {
    /// A complete answer.
    Answer(u16, String),
    /// The connection failed or closed before a single byte of answer: the service never read
    /// the request (refused, reset out of the accept queue, or an unread connection closed).
    NoAnswer,
    /// Some bytes arrived, then the connection broke: a request lost mid-answer.
    Broken(String),
}

/// One HTTP/1.1 request on a fresh connection.
async fn get(addr: SocketAddr, path: &str) -> Outcome {
    let mut stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(_) => return Outcome::NoAnswer,
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(req.as_bytes()).await.is_err() {
        return Outcome::NoAnswer;
    }
    read_response(stream).await
}

async fn read_response(mut stream: TcpStream) -> Outcome {
    let mut raw = Vec::new();
    let result = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    match result {
        Err(_) if raw.is_empty() => return Outcome::NoAnswer,
        // A clean close with no byte of answer: the service closed a connection it had not read.
        Ok(_) if raw.is_empty() => {
            return Outcome::NoAnswer;
        }
        Err(e) => return Outcome::Broken(format!("{e} after {text:?}")),
        Ok(_) => {}
    }
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Outcome::Broken(text);
    };
    match head.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
        Some(status) => Outcome::Answer(status, body.to_owned()),
        None => Outcome::Broken(text),
    }
}

/// Counts the access-log lines the service writes, one per request it handled.
fn count_handled(stdout: std::process::ChildStdout) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.contains("\"message\":\"request\""))
            .count()
    })
}

/// The guarantee ECS needs at stop: every request the service accepted gets its full answer,
/// including those still in flight when SIGTERM arrives, and the process exits 0 before the
/// drain timeout. Connections the service never read (the listener is closed on purpose) are
/// not lost requests: the ALB has deregistered the task before ECS sends SIGTERM, and retries
/// a refused connection on another target. So the count of answers the clients received must
/// equal the count of requests the service logged as handled.
#[test]
fn sigterm_under_load_answers_every_accepted_request_and_exits_zero() {
    let drain = Duration::from_secs(5);
    let mut svc = Running::start_logging(&[("DRAIN_TIMEOUT", "5s")]);
    let handled = count_handled(svc.child.stdout.take().expect("stdout piped"));
    let addr = svc.addr;
    let rt = tokio::runtime::Runtime::new().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let not_read = Arc::new(AtomicUsize::new(0));
    let lost = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));

    // Continuous load: 16 clients, each a loop of requests on fresh connections, until the
    // service stops answering.
    let mut load = Vec::new();
    for _ in 0..16 {
        let (stop, answered, not_read, lost) = (
            stop.clone(),
            answered.clone(),
            not_read.clone(),
            lost.clone(),
        );
        load.push(rt.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match get(addr, "/health").await {
                    Outcome::Answer(200, body) if body.contains("healthy") => {
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Outcome::NoAnswer => {
                        not_read.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Outcome::Broken(why) => lost.lock().unwrap().push(why),
                    Outcome::Answer(status, body) => {
                        lost.lock().unwrap().push(format!("{status}: {body}"));
                    }
                }
            }
        }));
    }

    // Requests truly in flight at the signal: the head is sent, the final line held back.
    let in_flight: Vec<TcpStream> = rt.block_on(async {
        let mut streams = Vec::new();
        for _ in 0..8 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(
                format!("GET /hello HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").as_bytes(),
            )
            .await
            .unwrap();
            streams.push(s);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        streams
    });

    std::thread::sleep(Duration::from_millis(500));
    let before = answered.load(Ordering::SeqCst);
    assert!(before > 50, "load did not get going: {before} answers");
    svc.signal("TERM");

    // Finish the in-flight requests after the signal: each must still get its answer.
    let in_flight_answers = rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut answers = Vec::new();
        for mut s in in_flight {
            s.write_all(b"\r\n").await.unwrap();
            answers.push(read_response(s).await);
        }
        answers
    });

    let (status, took) = svc.wait_exit(drain + Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    rt.block_on(async {
        for task in load {
            task.await.unwrap();
        }
    });
    let handled = handled.join().unwrap();

    for answer in &in_flight_answers {
        match answer {
            Outcome::Answer(200, body) if body.contains("hello world") => {}
            other => panic!("a request in flight at SIGTERM was not answered: {other:?}"),
        }
    }
    let lost = lost.lock().unwrap();
    assert!(lost.is_empty(), "requests broken mid-answer: {lost:?}");
    let answered = answered.load(Ordering::SeqCst) + in_flight_answers.len();
    assert_eq!(
        answered, handled,
        "the service handled {handled} requests but clients got {answered} answers"
    );
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        took < drain,
        "took {took:?} to exit, drain timeout {drain:?}"
    );
    eprintln!(
        "answered {answered} requests ({} in flight at SIGTERM), {} connections refused after \
         the listener closed, exited {took:?} after SIGTERM",
        in_flight_answers.len(),
        not_read.load(Ordering::SeqCst)
    );
}

#[test]
fn sigint_stops_an_idle_service_quickly_with_exit_zero() {
    let mut svc = Running::start(&[]);
    svc.signal("INT");
    let (status, took) = svc.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(2), "idle stop took {took:?}");
}

#[test]
fn a_connection_left_hanging_is_cut_at_the_drain_timeout() {
    let mut svc = Running::start(&[("DRAIN_TIMEOUT", "1s")]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A client that sends half a request and never finishes must not hold the exit hostage.
    let _hanging = rt.block_on(async {
        let mut s = TcpStream::connect(svc.addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        s
    });
    svc.signal("TERM");
    let (status, took) = svc.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "exit after {took:?} with a 1s drain timeout"
    );
}

#[test]
fn bad_port_exits_one_with_a_clear_message() {
    let out = Command::new(BIN)
        .env_clear()
        .env("PORT", "abc")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.contains("PORT=\"abc\""), "{err}");
    assert!(err.contains("1 to 65535"), "{err}");
}

#[test]
fn port_in_use_exits_one_naming_the_address() {
    let taken = StdListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(BIN)
        .env_clear()
        .env("PORT", port.to_string())
        .env("BIND_ADDR", "127.0.0.1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn healthcheck_exits_zero_against_a_running_service() {
    let svc = Running::start(&[]);
    let out = Command::new(BIN)
        .arg("healthcheck")
        .env_clear()
        .env("PORT", svc.addr.port().to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn healthcheck_fails_when_nothing_listens() {
    let port = free_port();
    let out = Command::new(BIN)
        .arg("healthcheck")
        .env_clear()
        .env("PORT", port.to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("nothing answered on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn healthcheck_fails_on_an_unhealthy_answer() {
    // A fake service on loopback that answers /health with 500.
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        conn.write_all(
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .unwrap();
    });
    let out = Command::new(BIN)
        .arg("healthcheck")
        .env_clear()
        .env("PORT", port.to_string())
        .output()
        .unwrap();
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("500"), "{err}");
}

#[test]
fn unknown_argument_is_refused_with_usage() {
    let out = Command::new(BIN).arg("serve").env_clear().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unexpected arguments"), "{err}");
    assert!(err.contains("usage: service"), "{err}");
}
