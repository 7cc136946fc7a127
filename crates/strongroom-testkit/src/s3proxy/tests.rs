//! The proxy's own tests: a tiny HTTP server on loopback stands in for S3, a raw socket for the
//! client, so that every byte each side sees can be checked; and, when `scripts/test` started
//! Garage, signed requests from curl through the proxy to the real server.

use super::*;
use std::sync::Condvar;

mod bucket_policy;

/// Generous: only a broken proxy makes a test wait this long.
const PATIENCE: Duration = Duration::from_secs(60);

/// The object the test server holds at `/big`.
fn big() -> Vec<u8> {
    (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect()
}

/// The head the test server answers a `GET /big` with.
const BIG_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: application/octet-stream\r\n\r\n";

/// The test server's whole answer to `GET /chunked`: extensions and trailers included.
const CHUNKED: &[u8] =
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n\
5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\n";

/// What the test server saw.
#[derive(Default)]
struct Seen {
    connections: usize,
    closed: usize,
    /// Method, target and the raw bytes of each request (head and body as on the wire).
    requests: Vec<(String, String, Vec<u8>)>,
    objects: HashMap<String, Vec<u8>>,
}

/// A tiny HTTP/1.1 server standing in for S3: objects by path for `GET`, `HEAD`, `PUT` and
/// `DELETE` (`Expect: 100-continue` and chunked uploads understood), keep-alive, plus
/// `GET /chunked` (a chunked answer) and `GET /close` (an answer that ends with the connection).
struct Upstream {
    addr: SocketAddr,
    seen: Arc<(Mutex<Seen>, Condvar)>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new((Mutex::new(Seen::default()), Condvar::new()));
        seen.0.lock().unwrap().objects.insert("/big".into(), big());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, halt) = (seen.clone(), stop.clone());
        let acceptor = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                s.0.lock().unwrap().connections += 1;
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = Upstream::serve(&s, &stream);
                    s.0.lock().unwrap().closed += 1;
                    s.1.notify_all();
                });
            }
        });
        Upstream {
            addr,
            seen,
            stop,
            acceptor: Some(acceptor),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(seen: &(Mutex<Seen>, Condvar), stream: &TcpStream) -> io::Result<()> {
        let mut c = Conn::new(stream)?;
        while let Some(head) = read_head(&mut c.r)? {
            let req = Request::parse(&head)?;
            if req.expect_continue {
                c.w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
                c.w.flush()?;
            }
            let mut body = Vec::new();
            copy_body(&mut c.r, &mut body, req.body)?;
            let mut raw = head.raw.clone();
            raw.extend_from_slice(&body);
            let (method, path) = (req.method.as_str(), req.target.as_str());
            let answer = {
                let mut s = seen.0.lock().unwrap();
                s.requests.push((method.into(), path.into(), raw));
                match (method, path) {
                    ("GET", "/chunked") => CHUNKED.to_vec(),
                    ("GET", "/close") => {
                        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end".to_vec()
                    }
                    ("PUT", _) => {
                        if req.body == Body::Chunked {
                            body = dechunk(&body);
                        }
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nETag: \"{}\"\r\nContent-Length: 0\r\n\r\n",
                            body.len()
                        );
                        s.objects.insert(path.into(), body);
                        answer.into_bytes()
                    }
                    ("DELETE", _) => {
                        s.objects.remove(path);
                        b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()
                    }
                    ("GET" | "HEAD", _) => {
                        let (mut answer, body) = match s.objects.get(path) {
                            Some(body) => (
                                format!(
                                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\
                                     Content-Type: application/octet-stream\r\n\r\n",
                                    body.len()
                                )
                                .into_bytes(),
                                body.clone(),
                            ),
                            None => {
                                let body = b"<Error><Code>NoSuchKey</Code></Error>".to_vec();
                                let head = format!(
                                    "HTTP/1.1 404 Not Found\r\nContent-Type: application/xml\r\n\
                                     Content-Length: {}\r\n\r\n",
                                    body.len()
                                );
                                (head.into_bytes(), body)
                            }
                        };
                        if method == "GET" {
                            answer.extend_from_slice(&body);
                        }
                        answer
                    }
                    _ => b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n".to_vec(),
                }
            };
            seen.1.notify_all();
            c.w.write_all(&answer)?;
            c.w.flush()?;
            if req.close || (method, path) == ("GET", "/close") {
                break;
            }
        }
        c.close();
        Ok(())
    }

    /// Waits (on the server's own notifications) until `done` holds of what it saw.
    fn wait_for(&self, what: &str, done: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        let mut s = self.seen.0.lock().unwrap();
        while !done(&s) {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("the test server never saw {what}"));
            s = self.seen.1.wait_timeout(s, left).unwrap().0;
        }
    }

    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.0.lock().unwrap())
    }

    fn object(&self, path: &str) -> Option<Vec<u8>> {
        self.seen(|s| s.objects.get(path).cloned())
    }

    fn methods(&self) -> Vec<String> {
        self.seen(|s| s.requests.iter().map(|r| r.0.clone()).collect())
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// The data of a chunked body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    loop {
        let line = read_chunk_line(&mut raw).unwrap();
        let size = chunk_size(&line).unwrap() as usize;
        if size == 0 {
            return data;
        }
        data.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// A raw HTTP client on one connection.
struct Client {
    c: Conn,
}

impl Client {
    fn connect(url: &str) -> Client {
        let stream = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        Client {
            c: Conn::new(&stream).unwrap(),
        }
    }

    /// Sends bytes; errors are ignored (a fault may close the connection while it sends).
    fn send(&mut self, bytes: &[u8]) {
        let _ = self.c.w.write_all(bytes).and_then(|()| self.c.w.flush());
    }

    /// Reads one whole response, raw, to a request with `method`.
    fn response(&mut self, method: &str) -> Vec<u8> {
        let head = read_head(&mut self.c.r).unwrap().expect("a response");
        let resp = Response::parse(&head, method).unwrap();
        let mut raw = head.raw;
        copy_body(&mut self.c.r, &mut raw, resp.body).unwrap();
        raw
    }

    /// Sends a request and reads its response.
    fn exchange(&mut self, method: &str, request: &[u8]) -> Vec<u8> {
        self.send(request);
        self.response(method)
    }

    /// Everything until the proxy ends the connection (by closing or resetting it).
    fn rest(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0; 4096];
        loop {
            match self.c.r.read(&mut buf) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if timed_out(&e) => panic!(
                    "the connection stayed open after {:?}",
                    String::from_utf8_lossy(&out)
                ),
                Err(_) => return out,
            }
        }
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: s3.test\r\n\r\n").into_bytes()
}

fn put(path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "PUT {path} HTTP/1.1\r\nHost: s3.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn status(response: &[u8]) -> u16 {
    let line = String::from_utf8_lossy(response);
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Sends each request on one connection and returns the raw responses.
fn session(url: &str, requests: &[(&str, Vec<u8>)]) -> Vec<Vec<u8>> {
    let mut client = Client::connect(url);
    requests
        .iter()
        .map(|(method, request)| client.exchange(method, request))
        .collect()
}

#[test]
fn passes_requests_and_responses_through_byte_for_byte() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.url());
    let requests = [
        ("GET", get("/big")),
        (
            "HEAD",
            b"HEAD /big HTTP/1.1\r\nHost: s3.test\r\n\r\n".to_vec(),
        ),
        (
            "PUT",
            b"PUT /up HTTP/1.1\r\nHost: s3.test\r\nTransfer-Encoding: chunked\r\n\r\n\
              4\r\nwiki\r\n5;e=x\r\npedia\r\n0\r\nX-Sum: 9\r\n\r\n"
                .to_vec(),
        ),
        ("GET", get("/up")),
        ("GET", get("/chunked")),
        ("PUT", put("/up", b"0123456789")),
        ("GET", get("/up")),
        (
            "DELETE",
            b"DELETE /up HTTP/1.1\r\nHost: s3.test\r\n\r\n".to_vec(),
        ),
        ("GET", get("/up")),
    ];
    let direct = session(&up.url(), &requests);
    let before = up.seen(|s| s.requests.len());
    let proxied = session(&proxy.url(), &requests);
    assert_eq!(
        proxied.iter().map(|r| text(r)).collect::<Vec<_>>(),
        direct.iter().map(|r| text(r)).collect::<Vec<_>>()
    );
    assert_eq!(proxied[0], [BIG_HEAD, &big()].concat());
    assert_eq!(text(&proxied[1]), text(BIG_HEAD), "no body after HEAD");
    assert_eq!(
        text(&proxied[3]),
        "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nContent-Type: application/octet-stream\r\n\r\nwikipedia"
    );
    assert_eq!(text(&proxied[4]), text(CHUNKED));
    assert_eq!(text(&proxied[7]), "HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(status(&proxied[8]), 404);
    // The server got every request exactly as sent, and all on one connection.
    let reached: Vec<Vec<u8>> =
        up.seen(|s| s.requests[before..].iter().map(|r| r.2.clone()).collect());
    let sent: Vec<Vec<u8>> = requests.iter().map(|r| r.1.clone()).collect();
    assert_eq!(reached, sent);
    assert_eq!(up.seen(|s| s.connections), 2, "one for each session");
    let stats = proxy.stats();
    assert_eq!(
        (stats.connections, stats.requests, stats.forwarded),
        (1, 9, 9)
    );
    assert_eq!(stats.injected().count(), 0);
    let statuses: Vec<_> = stats.exchanges.iter().map(|e| e.status).collect();
    let expected = [200, 200, 200, 200, 200, 200, 200, 204, 404].map(Some);
    assert_eq!(statuses, expected);
}

#[test]
fn a_closing_request_or_response_closes_the_connection() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.url());
    // Closed by the server: the body is everything until then, and the client's closes too.
    let mut client = Client::connect(&proxy.url());
    let answer = client.exchange("GET", &get("/close"));
    assert_eq!(
        text(&answer),
        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"
    );
    // Closed at the client's request.
    let mut client = Client::connect(&proxy.url());
    let answer = client.exchange(
        "GET",
        b"GET /big HTTP/1.1\r\nHost: s3.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(answer, [BIG_HEAD, &big()].concat());
    assert_eq!(client.rest(), b"");
    up.wait_for("both connections closed", |s| s.closed == 2);
}

#[test]
fn status_503_answers_for_the_server_and_keeps_the_connection() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.url());
    proxy.set_plan(Plan::seeded(1).rule(Rule::new(Fault::Status503).method("PUT").first(1)));
    let mut client = Client::connect(&proxy.url());
    let answer = text(&client.exchange("PUT", &put("/x", b"first")));
    assert!(answer.starts_with("HTTP/1.1 503 Slow Down\r\n"), "{answer}");
    assert!(
        answer.contains("\r\nConnection: keep-alive\r\n"),
        "{answer}"
    );
    assert!(answer.contains("<Code>SlowDown</Code>"), "{answer}");
    assert!(answer.contains("<Resource>/x</Resource>"), "{answer}");
    // The same connection goes on, the body of the refused request was not taken for a request.
    assert_eq!(status(&client.exchange("PUT", &put("/x", b"second"))), 200);
    assert_eq!(status(&client.exchange("GET", &get("/big"))), 200);
    assert_eq!(
        up.methods(),
        ["PUT", "GET"],
        "the refused PUT never reached the server"
    );
    assert_eq!(up.object("/x").unwrap(), b"second");
    let stats = proxy.stats();
    assert_eq!((stats.requests, stats.forwarded), (3, 2));
    assert_eq!(stats.count(Fault::Status503), 1);
    assert_eq!(
        stats.exchanges[0],
        Exchange {
            request: 1,
            method: "PUT".into(),
            target: "/x".into(),
            fault: Some(Fault::Status503),
            status: None,
        }
    );
}

#[test]
fn drop_before_response_loses_the_answer_after_the_write() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.url());
    proxy.set_plan(Plan::seeded(1).rule(Rule::new(Fault::DropBeforeResponse).method("PUT")));
    let mut client = Client::connect(&proxy.url());
    client.send(&put("/x", b"written"));
    assert_eq!(client.rest(), b"", "no answer at all");
    // The proxy read the server's answer before dropping: the write has happened.
    assert_eq!(up.object("/x").unwrap(), b"written");
    assert_eq!(proxy.stats().count(Fault::DropBeforeResponse), 1);
}

#[test]
fn drop_mid_response_cuts_the_head() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.url());
    proxy.set_plan(Plan::seeded(1).rule(Rule::new(Fault::DropMidResponse)));
    let mut client = Client::connect(&proxy.url());
    client.send(&get("/big"));
    let got = client.rest();
    assert_eq!(text(&got), text(&BIG_HEAD[..BIG_HEAD.len() / 2]));
    // Also an answer without a body; the server has acted.
    let mut client = Client::connect(&proxy.url());
    client.send(&put("/x", b"written"));
    let got = client.rest();
    let whole = "HTTP/1.1 200 OK\r\nETag: \"7\"\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(text(&got), whole[..whole.len() / 2]);
    assert_eq!(up.object("/x").unwrap(), b"written");
    assert_eq!(proxy.stats().count(Fault::DropMidResponse), 2);
}

#[test]
fn truncate_body_keeps_the_head_and_half_the_body() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.url());
    proxy.set_plan(Plan::seeded(1).rule(Rule::new(Fault::TruncateBody).method("GET")));
    let mut client = Client::connect(&proxy.url());
    client.send(&get("/big"));
    assert_eq!(client.rest(), [BIG_HEAD, &big()[..500]].concat());
    let mut client = Client::connect(&proxy.url());
    client.send(&get("/chunked"));
    let split = CHUNKED.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let (head, body) = CHUNKED.split_at(split);
    assert_eq!(
        text(&client.rest()),
        text(&[head, &body[..body.len() / 2]].concat())
    );
    assert_eq!(proxy.stats().count(Fault::TruncateBody), 2);
}

#[test]
fn stall_delays_the_response() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.url());
    let stall = Duration::from_millis(600);
    proxy.set_plan(Plan::seeded(1).rule(Rule::new(Fault::Stall(stall)).first(1)));
    let mut client = Client::connect(&proxy.url());
    let start = Instant::now();
    let answer = client.exchange("GET", &get("/big"));
    assert!(
        start.elapsed() >= stall,
        "answered after {:?}",
        start.elapsed()
    );
    assert_eq!(answer, [BIG_HEAD, &big()].concat());
    // The connection goes on.
    assert_eq!(client.exchange("GET", &get("/big")), answer);
    assert_eq!(up.seen(|s| s.connections), 1);
    assert_eq!(proxy.stats().count(Fault::Stall(Duration::ZERO)), 1);
}

#[test]
fn stall_forever_holds_until_the_client_gives_up() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.url());
    proxy.set_plan(Plan::seeded(1).rule(Rule::new(Fault::StallForever)));
    let mut client = Client::connect(&proxy.url());
    client.send(&put("/x", b"written"));
    // The server acts...
    up.wait_for("the PUT", |s| s.objects.contains_key("/x"));
    // ...but the client hears nothing, however long it waits (here: its timeout).
    client
        .c
        .socket()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0; 1];
    let e = client.c.r.read(&mut buf).unwrap_err();
    assert!(timed_out(&e), "{e}");
    // When it gives up, the proxy lets go of the server's connection too.
    drop(client);
    up.wait_for("the proxy closing its connection", |s| s.closed == 1);
    assert_eq!(proxy.stats().count(Fault::StallForever), 1);
}

#[test]
fn drop_mid_request_never_reaches_the_server() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.url());
    proxy.set_plan(Plan::seeded(1).rule(Rule::new(Fault::DropMidRequest).method("PUT")));
    let mut client = Client::connect(&proxy.url());
    client.send(&put("/x", &big()));
    assert_eq!(client.rest(), b"");
    let mut client = Client::connect(&proxy.url());
    client.send(
        b"PUT /y HTTP/1.1\r\nHost: s3.test\r\nTransfer-Encoding: chunked\r\n\r\n\
          8\r\nabcdefgh\r\n0\r\n\r\n",
    );
    assert_eq!(client.rest(), b"");
    proxy.set_plan(Plan::seeded(1));
    let mut client = Client::connect(&proxy.url());
    assert_eq!(status(&client.exchange("GET", &get("/x"))), 404);
    assert_eq!(up.methods(), ["GET"], "no PUT reached the server");
    let stats = proxy.stats();
    assert_eq!((stats.requests, stats.forwarded), (3, 1));
    assert_eq!(stats.count(Fault::DropMidRequest), 2);
}

#[test]
fn expect_continue_is_answered_by_the_server_or_the_proxy() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.url());
    let head =
        b"PUT /e HTTP/1.1\r\nHost: s3.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
    let continue_ = "HTTP/1.1 100 Continue\r\n\r\n";
    // Passed through: the server's `100 Continue`, then the body, then its answer.
    let mut client = Client::connect(&proxy.url());
    client.send(head);
    assert_eq!(
        text(&read_head(&mut client.c.r).unwrap().unwrap().raw),
        continue_
    );
    assert_eq!(status(&client.exchange("PUT", b"hello")), 200);
    assert_eq!(up.object("/e").unwrap(), b"hello");
    // An upload cut short: the proxy asks for the body itself, then drops it.
    proxy.set_plan(Plan::seeded(1).rule(Rule::new(Fault::DropMidRequest)));
    let mut client = Client::connect(&proxy.url());
    client.send(head);
    assert_eq!(
        text(&read_head(&mut client.c.r).unwrap().unwrap().raw),
        continue_
    );
    client.send(b"world");
    assert_eq!(client.rest(), b"");
    // Throttled before the body: the client will not send it, the connection must close.
    proxy.set_plan(Plan::seeded(1).rule(Rule::new(Fault::Status503)));
    let mut client = Client::connect(&proxy.url());
    let answer = text(&client.exchange("PUT", head));
    assert!(answer.starts_with("HTTP/1.1 503 Slow Down\r\n"), "{answer}");
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
    assert_eq!(client.rest(), b"");
    assert_eq!(up.object("/e").unwrap(), b"hello");
    assert_eq!(up.methods(), ["PUT"]);
}

#[test]
fn rules_pick_requests_by_method_path_query_and_count() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.url());
    proxy.set_plan(
        Plan::seeded(1)
            .rule(Rule::new(Fault::Status503).method("get").path("/b").nth(2))
            .rule(Rule::new(Fault::Status503).method("PUT").first(2))
            .rule(Rule::new(Fault::Status503).query("uploads")),
    );
    let requests = [
        ("GET", get("/b")),
        ("GET", get("/b")),
        ("GET", get("/b")),
        ("PUT", put("/x", b"1")),
        ("PUT", put("/x", b"2")),
        ("PUT", put("/x", b"3")),
        ("GET", get("/a?uploads")),
        ("GET", get("/b/c?x=1")),
        ("GET", get("/big")),
    ];
    let statuses: Vec<u16> = session(&proxy.url(), &requests)
        .iter()
        .map(|r| status(r))
        .collect();
    assert_eq!(statuses, [404, 503, 404, 503, 503, 200, 503, 404, 200]);
    let injected: Vec<(u64, String)> = proxy
        .stats()
        .injected()
        .map(|e| (e.request, e.target.clone()))
        .collect();
    assert_eq!(
        injected,
        [
            (2, "/b".to_string()),
            (4, "/x".to_string()),
            (5, "/x".to_string()),
            (7, "/a?uploads".to_string())
        ]
    );
    // A new plan counts afresh.
    proxy.set_plan(Plan::seeded(1).rule(Rule::new(Fault::Status503).path("/b").nth(2)));
    let statuses: Vec<u16> = session(&proxy.url(), &requests[..3])
        .iter()
        .map(|r| status(r))
        .collect();
    assert_eq!(statuses, [404, 503, 404]);
}

#[test]
fn probability_draws_are_fixed_by_the_seed() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.url());
    // Which of 64 GETs of /big are throttled, with other requests in between or not.
    let pattern = |seed: u64, p: f64, noise: bool| -> Vec<bool> {
        proxy.set_plan(
            Plan::seeded(seed).rule(Rule::new(Fault::Status503).path("/big").probability(p)),
        );
        let mut client = Client::connect(&proxy.url());
        (0..64)
            .map(|_| {
                if noise {
                    assert_eq!(status(&client.exchange("GET", &get("/other"))), 404);
                }
                status(&client.exchange("GET", &get("/big"))) == 503
            })
            .collect()
    };
    let a = pattern(42, 0.5, false);
    assert!(a.contains(&true) && a.contains(&false), "{a:?}");
    assert_eq!(pattern(42, 0.5, false), a, "the same seed, the same faults");
    assert_eq!(
        pattern(42, 0.5, true),
        a,
        "requests the rule does not match do not count"
    );
    assert_ne!(pattern(7, 0.5, false), a, "another seed, other faults");
    assert!(pattern(42, 0.0, false).iter().all(|f| !f));
    assert!(pattern(42, 1.0, false).iter().all(|f| *f));
}

#[test]
fn dropping_the_proxy_closes_its_connections_and_its_port() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.url());
    let url = proxy.url();
    let mut idle = Client::connect(&url);
    assert_eq!(status(&idle.exchange("GET", &get("/big"))), 200);
    proxy.set_plan(Plan::seeded(1).rule(Rule::new(Fault::StallForever)));
    let mut stalled = Client::connect(&url);
    stalled.send(&get("/big"));
    up.wait_for("both connections", |s| s.requests.len() == 2);
    drop(proxy);
    assert_eq!(idle.rest(), b"");
    assert_eq!(stalled.rest(), b"");
    assert!(
        TcpStream::connect(url.trim_start_matches("http://")).is_err(),
        "the port is closed"
    );
    up.wait_for("the proxy's connections closed", |s| s.closed == 2);
}

/// The S3 settings `scripts/test` (or `scripts/garage-up`) exports, and a curl that signs.
struct Garage {
    endpoint: String,
    bucket: String,
    region: String,
    /// Holds the curl config with the credentials (kept off the command line) and downloads.
    dir: tempfile::TempDir,
}

impl Garage {
    fn from_env() -> Option<Garage> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (Some(endpoint), Some(key_id), Some(secret)) = (
            var("AWS_ENDPOINT_URL"),
            var("AWS_ACCESS_KEY_ID"),
            var("AWS_SECRET_ACCESS_KEY"),
        ) else {
            eprintln!(
                "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY unset: \
                 skipped (./scripts/test sets them)"
            );
            return None;
        };
        let help = std::process::Command::new("curl")
            .args(["--help", "all"])
            .output();
        if !help.is_ok_and(|h| String::from_utf8_lossy(&h.stdout).contains("--aws-sigv4")) {
            eprintln!("no curl with --aws-sigv4 (7.75 or later): skipped");
            return None;
        }
        let bucket = var("STRONGROOM_TEST_S3")
            .and_then(|u| {
                let rest = u.strip_prefix("s3://")?;
                Some(rest.split('/').next()?.to_string())
            })
            .unwrap_or_else(|| "strongroom-test".into());
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("curl.conf"),
            format!("user = \"{key_id}:{secret}\"\n"),
        )
        .unwrap();
        Some(Garage {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            bucket,
            region,
            dir,
        })
    }

    /// Runs a signed curl on `{base}/{bucket}/{key}`: its exit code, HTTP status and body.
    fn curl(&self, base: &str, key: &str, args: &[&str]) -> (i32, u16, Vec<u8>) {
        let out = self.dir.path().join("out");
        let _ = std::fs::remove_file(&out);
        let run = std::process::Command::new("curl")
            .arg("-K")
            .arg(self.dir.path().join("curl.conf"))
            .args(["-sS", "--max-time", "60", "-w", "%{http_code}", "-o"])
            .arg(&out)
            .args(["--aws-sigv4", &format!("aws:amz:{}:s3", self.region)])
            // Garage wants the payload hash header; curl only signs it.
            .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
            .args(args)
            .arg(format!(
                "{}/{}/{key}",
                base.trim_end_matches('/'),
                self.bucket
            ))
            .output()
            .unwrap();
        let code = String::from_utf8_lossy(&run.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        let body = std::fs::read(&out).unwrap_or_default();
        (run.status.code().unwrap_or(-1), code, body)
    }

    fn put(&self, base: &str, key: &str, data: &[u8]) -> (i32, u16) {
        let file = self.dir.path().join("upload");
        std::fs::write(&file, data).unwrap();
        let (exit, code, _) = self.curl(base, key, &["-T", file.to_str().unwrap()]);
        (exit, code)
    }

    fn get(&self, base: &str, key: &str) -> (i32, u16, Vec<u8>) {
        self.curl(base, key, &[])
    }
}

#[test]
fn signed_s3_requests_reach_garage_through_the_proxy() {
    let Some(s3) = Garage::from_env() else {
        return;
    };
    let proxy = FaultProxy::start(&s3.endpoint);
    let (via, direct) = (proxy.url(), s3.endpoint.clone());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let key = format!("faultproxy-test/{}-{nanos}", std::process::id());
    let small = b"through the fault proxy\n".to_vec();
    let large: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();

    // Signed for the proxy's host:port, forwarded as is: Garage accepts it.
    assert_eq!(s3.put(&via, &key, &small), (0, 200));
    assert_eq!(s3.get(&via, &key), (0, 200, small.clone()));
    assert_eq!(s3.curl(&via, &key, &["-I"]).1, 200, "HEAD");
    let big_key = format!("{key}-large");
    assert_eq!(s3.put(&via, &big_key, &large), (0, 200));
    assert_eq!(s3.get(&via, &big_key), (0, 200, large.clone()));
    // curl signs the query as written, and Garage checks it encoded: `/` goes as `%2F`.
    let prefix = key.replace('/', "%2F");
    let (exit, code, list) = s3.curl(&via, &format!("?list-type=2&prefix={prefix}"), &[]);
    assert_eq!((exit, code), (0, 200), "{}", text(&list));
    assert!(text(&list).contains(&big_key), "{}", text(&list));

    // Throttled: not written.
    proxy.set_plan(Plan::seeded(1).rule(Rule::new(Fault::Status503).method("PUT")));
    assert_eq!(s3.put(&via, &key, b"throttled"), (0, 503));
    assert_eq!(s3.get(&direct, &key), (0, 200, small.clone()));
    // The answer lost: curl sees an empty reply (52), yet the write happened.
    proxy.set_plan(Plan::seeded(1).rule(Rule::new(Fault::DropBeforeResponse).method("PUT")));
    assert_eq!(s3.put(&via, &key, b"written, unanswered").0, 52);
    assert_eq!(s3.get(&direct, &key).2, b"written, unanswered");
    // The upload cut short: not written.
    proxy.set_plan(Plan::seeded(1).rule(Rule::new(Fault::DropMidRequest).method("PUT")));
    assert_ne!(s3.put(&via, &key, &large).0, 0);
    assert_eq!(s3.get(&direct, &key).2, b"written, unanswered");
    // The download cut short: curl sees a partial file (18).
    proxy.set_plan(Plan::seeded(1).rule(Rule::new(Fault::TruncateBody).method("GET")));
    assert_eq!(s3.get(&via, &big_key).0, 18);
    // Half a head: no object. (curl 7.88 takes a head cut between two headers for a whole
    // one and reports an empty 200 with exit code 0; hyper, under OpenDAL, fails instead.)
    proxy.set_plan(Plan::seeded(1).rule(Rule::new(Fault::DropMidResponse).method("GET")));
    let (exit, _, body) = s3.get(&via, &big_key);
    assert!(
        exit != 0 || body != large,
        "curl exit {exit}, {} bytes",
        body.len()
    );
    // A server that never answers: the client's timeout fires (curl: 28).
    proxy.set_plan(Plan::seeded(1).rule(Rule::new(Fault::StallForever).method("GET")));
    assert_eq!(s3.curl(&via, &key, &["--max-time", "2"]).0, 28);

    for k in [&key, &big_key] {
        assert_eq!(s3.curl(&direct, k, &["-X", "DELETE"]).1, 204);
    }
    let stats = proxy.stats();
    assert_eq!(stats.injected().count(), 6, "{stats:?}");
}
