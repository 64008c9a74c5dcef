//! A TCP proxy in front of a loopback service, for the faults a service cannot make about
//! itself: `stop` closes the port and cuts every open connection (the service unreachable, as
//! if it had died), `resume` serves again on the same port with the service's state intact;
//! `cut_after(n)` cuts every connection once `n` bytes in all have come back from upstream (a
//! network failure mid-transfer).
//!
//! It runs on a runtime of its own, so a test blocked on a child process cannot stall it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    serving: Mutex<Option<CancellationToken>>,
    /// Bytes from upstream to clients, all connections together.
    pub downstream_bytes: Arc<AtomicU64>,
    cut_at: Arc<AtomicU64>,
}

impl Proxy {
    /// A proxy on a free loopback port forwarding to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Self {
        let upstream: SocketAddr = upstream
            .parse()
            .unwrap_or_else(|e| panic!("proxy upstream {upstream:?}: {e}"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let me = Self {
            addr,
            upstream,
            runtime: Some(runtime),
            serving: Mutex::new(None),
            downstream_bytes: Arc::new(AtomicU64::new(0)),
            cut_at: Arc::new(AtomicU64::new(u64::MAX)),
        };
        me.serve(listener);
        me
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts every connection once `n` more bytes have come back from upstream.
    pub fn cut_after(&self, n: u64) {
        let now = self.downstream_bytes.load(Ordering::SeqCst);
        self.cut_at.store(now.saturating_add(n), Ordering::SeqCst);
    }

    /// Closes the port and every connection through it.
    pub fn stop(&self) {
        if let Some(token) = self.serving.lock().unwrap().take() {
            token.cancel();
        }
    }

    /// Serves again on the same port.
    pub fn resume(&self) {
        let listener = std::net::TcpListener::bind(self.addr)
            .unwrap_or_else(|e| panic!("rebind the proxy on {}: {e}", self.addr));
        self.serve(listener);
    }

    /// Works from any thread, inside another runtime or not: nothing here blocks.
    fn serve(&self, listener: std::net::TcpListener) {
        let rt = self.runtime.as_ref().unwrap();
        let _entered = rt.enter();
        listener.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let token = CancellationToken::new();
        *self.serving.lock().unwrap() = Some(token.clone());
        let (upstream, down, cut_at) = (
            self.upstream,
            self.downstream_bytes.clone(),
            self.cut_at.clone(),
        );
        rt.spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    _ = token.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(c) => c,
                        Err(_) => continue,
                    },
                };
                let (token, down, cut_at) = (token.clone(), down.clone(), cut_at.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = pipe(client, upstream, down, cut_at) => {}
                    }
                });
            }
        });
    }
}

/// Forwards one connection both ways until either side closes or the byte budget runs out.
async fn pipe(
    client: TcpStream,
    upstream: SocketAddr,
    down: Arc<AtomicU64>,
    cut_at: Arc<AtomicU64>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
    };
    let back = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let before = down.fetch_add(n as u64, Ordering::SeqCst);
            let limit = cut_at.load(Ordering::SeqCst);
            if before >= limit {
                return; // cut: both halves drop, the client sees the connection reset
            }
            let keep = n.min((limit - before) as usize);
            if cw.write_all(&buf[..keep]).await.is_err() || keep < n {
                return;
            }
        }
    };
    // The connection ends when upstream's side does; a client done sending still gets its answer.
    tokio::select! {
        _ = async { up.await; std::future::pending::<()>().await } => {}
        _ = back => {}
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
