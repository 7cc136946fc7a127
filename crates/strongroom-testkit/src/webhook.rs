//! A webhook receiver for alert tests: a real HTTP/1.1 server on a loopback port.
//!
//! Owns accepting connections on `127.0.0.1:0`, reading POSTs (framing from the proxy's
//! `s3proxy::http`), recording every request it read, and answering from a scripted
//! sequence: a status code, or a stall (the request is read and never answered, until the
//! client gives up or the receiver is dropped). Must not interpret bodies: tests parse what
//! they receive. Everything stops when the [`Receiver`] drops.
//!
//! ```no_run
//! use strongroom_testkit::webhook::{Answer, Receiver};
//! let hook = Receiver::answering(&[Answer::Status(500)], Answer::Status(200));
//! // … point the code under test at hook.url() …
//! let got = hook.wait_for(2, std::time::Duration::from_secs(60));
//! assert_eq!(got[1].body_text(), got[0].body_text());
//! ```

use crate::s3proxy::http::{Request, copy_body, read_head};
use std::collections::VecDeque;
use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How the receiver answers one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// This HTTP status, with a short text body.
    Status(u16),
    /// Never answer: hold the connection open until the client closes it or the receiver
    /// drops.
    Stall,
}

/// One request as read.
#[derive(Clone, Debug)]
pub struct Received {
    /// `POST`, …
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as sent (a chunked one with its chunk framing).
    pub body: Vec<u8>,
    /// The answer it got.
    pub answer: Answer,
}

impl Received {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    arrived: Condvar,
    script: Mutex<(VecDeque<Answer>, Option<Answer>)>,
    stop: AtomicBool,
}

impl Shared {
    fn next_answer(&self) -> Answer {
        let mut s = lock(&self.script);
        s.0.pop_front()
            .unwrap_or_else(|| s.1.unwrap_or(Answer::Status(200)))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running receiver; stops and closes every connection when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Receiver {
    /// A receiver that answers every request with 200.
    pub fn start() -> Receiver {
        Receiver::answering(&[], Answer::Status(200))
    }

    /// A receiver that answers the first requests from `first`, in order, and every later
    /// one with `then`.
    pub fn answering(first: &[Answer], then: Answer) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared::default());
        *lock(&shared.script) = (first.iter().copied().collect(), Some(then));
        let sh = shared.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let sh = sh.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &sh);
                });
            }
        });
        Receiver {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT/hook`.
    pub fn url(&self) -> String {
        self.url_with("/hook")
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url_with(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request read so far, oldest first.
    pub fn requests(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }

    /// Waits until `n` requests have been read or `limit` has passed, and returns those
    /// read (fewer than `n` only when `limit` passed: give it a generous limit).
    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        let mut got = lock(&self.shared.received);
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            got = self
                .shared
                .arrived
                .wait_timeout(got, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        got.clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// A URL on a loopback port nothing listens on (bound, then released).
pub fn unreachable_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = l.local_addr().expect("local address");
    drop(l);
    format!("http://{addr}/hook")
}

/// Serves one connection: requests one after another until it closes.
fn serve(conn: TcpStream, sh: &Shared) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut out = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    loop {
        let head = loop {
            if sh.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            match read_head(&mut r) {
                Ok(Some(h)) => break h,
                Ok(None) => return Ok(()),
                Err(e) if crate::s3proxy::http::timed_out(&e) => continue,
                Err(e) => return Err(e),
            }
        };
        // The head is in: allow a slow body, not an idle one.
        r.get_ref()
            .set_read_timeout(Some(Duration::from_secs(30)))?;
        let req = Request::parse(&head)?;
        if req.waits_for_continue() {
            out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let mut body = Vec::new();
        copy_body(&mut r, &mut body, req.body)?;
        r.get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))?;
        let answer = sh.next_answer();
        lock(&sh.received).push(Received {
            method: req.method.clone(),
            target: req.target.clone(),
            headers: head.headers.clone(),
            body,
            answer,
        });
        sh.arrived.notify_all();
        match answer {
            Answer::Stall => {
                // Hold on until the client hangs up or we are told to stop.
                let mut scratch = [0u8; 512];
                loop {
                    if sh.stop.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    match io::Read::read(r.get_mut(), &mut scratch) {
                        Ok(0) => return Ok(()),
                        Ok(_) => {}
                        Err(e) if crate::s3proxy::http::timed_out(&e) => {}
                        Err(_) => return Ok(()),
                    }
                }
            }
            Answer::Status(code) => {
                let text = if code == 204 {
                    ""
                } else if (200..300).contains(&code) {
                    "ok"
                } else {
                    "scripted failure"
                };
                write!(
                    out,
                    "HTTP/1.1 {code} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                     Connection: {}\r\n\r\n{text}",
                    reason(code),
                    text.len(),
                    if req.close { "close" } else { "keep-alive" }
                )?;
                out.flush()?;
                if req.close {
                    return Ok(());
                }
            }
        }
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests;
