//! A fault-injecting HTTP/1.1 proxy for S3 tests: it sits between strongroom and a real S3
//! server (Garage, started by `scripts/test`) and, request by request, either passes the
//! request through untouched or injects one of the failures a real object store, or the
//! network in front of it, produces. Tests use it to prove that every job either completes or
//! fails cleanly, whatever the store does.
//!
//! ```no_run
//! use strongroom_testkit::s3proxy::{Fault, FaultProxy, Plan, Rule};
//!
//! let proxy = FaultProxy::start(&std::env::var("AWS_ENDPOINT_URL").unwrap());
//! // The first snapshot write takes effect, but its answer is lost.
//! proxy.set_plan(Plan::new().rule(
//!     Rule::new(Fault::DropBeforeResponse).method("PUT").path("/snapshots/").nth(1),
//! ));
//! // ... run strongroom with AWS_ENDPOINT_URL=proxy.url(), then look at proxy.stats().
//! ```
//!
//! # What it owns
//!
//! - Just enough HTTP/1.1 framing to know where each message ends: the request line or status
//!   line, headers, `Content-Length` and `chunked` bodies, responses without a body (to `HEAD`,
//!   `1xx`, `204`, `304`), responses delimited by the connection closing, and
//!   `Expect: 100-continue` (curl sends it on every upload).
//! - The [`Plan`]: which request gets which [`Fault`], chosen by method, path, query and count,
//!   or at random from a seed printed when the plan is set, so a failing run can be replayed.
//! - [`Stats`]: every request seen, the fault it got and the server's answer, so a test can
//!   say what the client did (retried after a 503, read again after a truncation) and print it
//!   when it fails.
//! - Which objects exist, as far as what passed through it tells ([`policy`]): written, read or
//!   listed through it, and not deleted since.
//! - Its threads and sockets: all stop when the [`FaultProxy`] is dropped.
//!
//! # What it must not do
//!
//! - Rewrite anything. Requests are SigV4-signed over the method, path, query, the `Host`
//!   header and the payload hash, so every byte goes upstream as the client sent it, `Host`
//!   included: the client signs for the proxy's `127.0.0.1:PORT`, and the server checks the
//!   signature against the `Host` it receives, which is that same one. Garage takes a `Host`
//!   outside its `root_domain` for path-style addressing, so any `host:port` works (tested with
//!   curl's SigV4 below, and by hand with strongroom through OpenDAL). Responses pass through
//!   byte for byte too.
//! - Hide or add connection behaviour. Each client connection gets its own upstream connection,
//!   opened at its first forwarded request and closed with it: no pooling, no retries, no
//!   reconnecting. When the server closes a connection the client's closes too, as it would
//!   without the proxy; a server that cannot be reached closes it without an answer.
//! - Depend on strongroom, or on an HTTP library whose own parsing would hide what is on the
//!   wire: std threads and sockets only.
//! - Speak more than it needs: plain HTTP/1.1 (and 1.0) only, the requests of a connection
//!   handled one after the other, no TLS, HTTP/2, `CONNECT` or protocol upgrades. The request
//!   body is sent upstream before the response is read, as S3 servers read it first.
//!
//! # The faults, and the real failures they model
//!
//! - [`Fault::Status503`]: S3 throttling (`503 Slow Down`), which S3 answers to bursts of
//!   requests and which clients are expected to retry. The request never reaches the server.
//! - [`Fault::DropBeforeResponse`]: the request reached the server and took effect, but the
//!   answer was lost (a reset connection, a load balancer giving up, the client's network
//!   failing). This is the nasty case: the client cannot know whether its write happened, so
//!   retries must be safe and a job must not assume either outcome. The proxy reads the whole
//!   response before it closes, so the write has always happened.
//! - [`Fault::DropMidResponse`]: the connection dies while the answer arrives: the client gets
//!   the first half of the status line and headers, then the connection closes. Works on any
//!   response, also the empty ones to `PUT` and `HEAD`; the server has acted. (hyper, under
//!   OpenDAL, reports an incomplete message; curl 7.88 takes a head cut between two headers for
//!   a whole one.)
//! - [`Fault::Stall`] and [`Fault::StallForever`]: a server or network that hangs. The request
//!   is forwarded and the response head received (so the server has acted), then held for the
//!   given time before it is relayed, or forever until the client gives up: client timeouts
//!   must fire and jobs must not hang.
//! - [`Fault::TruncateBody`]: a download cut short. The headers arrive whole, with the original
//!   `Content-Length` (or chunked framing), then half the body, then the connection closes: a
//!   reader must notice the short body instead of taking a partial object for a whole one.
//!   Meant for `GET`s; a response without a body is relayed whole, then the connection closes.
//! - [`Fault::Forbidden`]: a request the store's bucket policy (or a key's permissions) does
//!   not allow: `403 Forbidden` with S3's `AccessDenied` XML error, answered by the proxy; the
//!   request never reaches the server. Like the 503, a request body is read and dropped and
//!   the connection goes on, unless the client waits for `100 Continue` (then the body never
//!   comes, and the connection closes after the answer).
//! - [`Fault::DropMidRequest`]: an upload cut short. The proxy reads the request head and half
//!   the body (answering `100 Continue` itself if the client waits for it), then closes the
//!   connection; the server never sees the request. On a request without a body the connection
//!   closes right after its head.
//!
//! # Choosing requests
//!
//! A [`Plan`] holds [`Rule`]s, tried in order. A rule matches a request by method, path
//! substring (`"/data/"`, `"/snapshots/"`) and query substring (`"uploadId"`), and fires on every
//! match, only on the Nth match, on the first N, or with a probability. Paths are path-style,
//! `/BUCKET/PREFIX/KEY`; listings name their prefix in the query
//! (`/BUCKET?list-type=2&prefix=PREFIX/data/`), so `path("/data/")` picks the reads and writes
//! of objects and `query("list-type")` the listings. Every rule counts the
//! requests its filter matches, whether or not another rule fired on them; the first rule that
//! fires picks the fault. Probabilistic rules draw from the plan's seed, the rule's position and
//! the match count, so a replay with the same seed faults the same matches: exactly the same
//! requests when the client sends them in the same order (one connection at a time), the same
//! mix otherwise.
//!
//! A rule can also leave out requests whose query names a sub-resource
//! ([`Rule::except_query`]: `"uploadId"` spares the parts of a multipart upload), and match
//! only requests on an object the proxy knows exists ([`Rule::existing`]), which is how it
//! refuses overwrites. [`Plan::append_only_bucket_policy`] puts these together into the bucket
//! policy of an append-only key: no deletes, no overwrites, no reading the backups' contents.
//! How the proxy learns which objects exist, and what it cannot know, is in [`policy`].

use std::collections::{BTreeSet, HashMap};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The environment variable that sets the seed of [`Plan::new`], to replay a run.
pub const SEED_VAR: &str = "STRONGROOM_FAULT_SEED";

/// The longest request or response head (request or status line and headers) accepted.
const MAX_HEAD: usize = 64 << 10;
/// How long to wait for a server's `100 Continue` before sending the body anyway (curl's wait).
const CONTINUE_WAIT: Duration = Duration::from_secs(1);
/// How often a stall looks whether the client went away or the proxy is stopping.
const STALL_STEP: Duration = Duration::from_millis(50);

/// One failure to inject into a request; see the module docs for what each one models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer `503 Slow Down` with an S3 XML error body, without forwarding the request.
    Status503,
    /// Forward the request, read the whole response, then close without answering.
    DropBeforeResponse,
    /// Forward the request, relay the first half of the response head, then close.
    DropMidResponse,
    /// Forward the request, hold the response this long, then relay it.
    Stall(Duration),
    /// Forward the request and hold the response until the client closes the connection.
    StallForever,
    /// Forward the request, relay the response head and half its body, then close.
    TruncateBody,
    /// Read the request head and half its body, then close, never forwarding it.
    DropMidRequest,
    /// Answer `403 Forbidden` with an S3 `AccessDenied` XML error body, without forwarding the
    /// request (a bucket policy's refusal).
    Forbidden,
}

/// When a rule fires among the requests its filter matches.
#[derive(Clone, Copy, Debug, PartialEq)]
enum When {
    Every,
    Nth(u64),
    First(u64),
    Probability(f64),
}

/// Which requests get which fault: a filter (method, path, query) and when it fires.
#[derive(Clone, Debug)]
pub struct Rule {
    fault: Fault,
    method: Option<String>,
    path: Option<String>,
    query: Option<String>,
    /// Query parts that exclude a request ([`Rule::except_query`]).
    except: Vec<String>,
    /// Only objects the proxy knows exist ([`Rule::existing`]).
    existing: bool,
    when: When,
}

impl Rule {
    /// A rule injecting `fault` into every request, until narrowed by the other methods.
    pub fn new(fault: Fault) -> Rule {
        Rule {
            fault,
            method: None,
            path: None,
            query: None,
            except: Vec::new(),
            existing: false,
            when: When::Every,
        }
    }

    /// Only requests with this method (`"GET"`, `"PUT"`, ...; case-insensitive).
    pub fn method(mut self, method: &str) -> Rule {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Only requests whose path (the target before `?`, as sent) contains `part`.
    pub fn path(mut self, part: &str) -> Rule {
        self.path = Some(part.to_string());
        self
    }

    /// Only requests whose query (the target after `?`, as sent) contains `part`.
    pub fn query(mut self, part: &str) -> Rule {
        self.query = Some(part.to_string());
        self
    }

    /// Not requests whose query contains `part`; each call adds one more exception.
    pub fn except_query(mut self, part: &str) -> Rule {
        self.except.push(part.to_string());
        self
    }

    /// Only requests on an object (`/BUCKET/KEY`) the proxy knows exists: one it saw written,
    /// read or listed through it, or was told of ([`FaultProxy::add_known_keys`]).
    pub fn existing(mut self) -> Rule {
        self.existing = true;
        self
    }

    /// Fire on every matching request (the default).
    pub fn every(mut self) -> Rule {
        self.when = When::Every;
        self
    }

    /// Fire on the `n`th matching request only (counting from 1).
    pub fn nth(mut self, n: u64) -> Rule {
        assert!(n >= 1, "requests are counted from 1");
        self.when = When::Nth(n);
        self
    }

    /// Fire on the first `n` matching requests.
    pub fn first(mut self, n: u64) -> Rule {
        self.when = When::First(n);
        self
    }

    /// Fire on each matching request with probability `p`, drawn from the plan's seed.
    pub fn probability(mut self, p: f64) -> Rule {
        assert!(
            (0.0..=1.0).contains(&p),
            "a probability is within 0..=1: {p}"
        );
        self.when = When::Probability(p);
        self
    }

    /// Whether the filter takes a request; `exists` says whether its object is known to exist.
    fn matches(&self, method: &str, path: &str, query: &str, exists: bool) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self.path.as_deref().is_none_or(|p| path.contains(p))
            && self.query.as_deref().is_none_or(|q| query.contains(q))
            && !self.except.iter().any(|q| query.contains(q.as_str()))
            && (!self.existing || exists)
    }
}

/// The faults to inject: rules tried in order, and the seed of their random draws.
#[derive(Clone, Debug)]
pub struct Plan {
    rules: Vec<Rule>,
    seed: u64,
}

impl Plan {
    /// An empty plan (everything passes through), seeded from `STRONGROOM_FAULT_SEED` if set,
    /// else from the clock.
    pub fn new() -> Plan {
        let seed = std::env::var(SEED_VAR)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                splitmix64(nanos ^ u64::from(std::process::id()).rotate_left(32))
            });
        Plan::seeded(seed)
    }

    /// An empty plan with this seed.
    pub fn seeded(seed: u64) -> Plan {
        Plan {
            rules: Vec::new(),
            seed,
        }
    }

    /// This plan with `rule` added after its other rules.
    pub fn rule(mut self, rule: Rule) -> Plan {
        self.rules.push(rule);
        self
    }

    /// The seed of the plan's random draws.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

impl Default for Plan {
    fn default() -> Plan {
        Plan::new()
    }
}

/// One request the proxy saw: what it was, the fault it got, what the server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    /// The request's number among all the proxy saw, from 1.
    pub request: u64,
    /// The request's method.
    pub method: String,
    /// The request's target (path and query), as sent.
    pub target: String,
    /// The fault injected, if any.
    pub fault: Option<Fault>,
    /// The status of the server's final answer, if the request reached it and it answered.
    pub status: Option<u16>,
}

/// What the proxy did so far, over all plans.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Client connections accepted.
    pub connections: u64,
    /// Request heads read from clients.
    pub requests: u64,
    /// Requests sent upstream whole (faulted or not).
    pub forwarded: u64,
    /// Every request, in the order their heads arrived.
    pub exchanges: Vec<Exchange>,
}

impl Stats {
    /// The requests that got a fault.
    pub fn injected(&self) -> impl Iterator<Item = &Exchange> {
        self.exchanges.iter().filter(|e| e.fault.is_some())
    }

    /// How many faults of `fault`'s kind were injected (a stall's duration is not compared).
    pub fn count(&self, fault: Fault) -> usize {
        let kind = std::mem::discriminant(&fault);
        self.injected()
            .filter(|e| e.fault.is_some_and(|f| std::mem::discriminant(&f) == kind))
            .count()
    }
}

/// A running proxy on `127.0.0.1`; its threads stop and its connections close when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    upstream: String,
    stopping: AtomicBool,
    state: Mutex<State>,
    /// The sockets of open connections (client and upstream), to shut down on drop.
    sockets: Mutex<HashMap<u64, Vec<TcpStream>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    next_id: AtomicU64,
}

struct State {
    plan: Plan,
    /// Per rule of the plan: how many requests its filter matched.
    matched: Vec<u64>,
    stats: Stats,
    /// The objects known to exist, as decoded paths `/BUCKET/KEY` (see `policy`).
    known: BTreeSet<String>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`, or `host:port`) with an empty plan.
    ///
    /// Panics if `upstream` is not plain HTTP or no loopback port can be bound.
    pub fn start(upstream: &str) -> FaultProxy {
        let host = upstream.strip_prefix("http://").unwrap_or(upstream);
        assert!(
            !host.contains("://"),
            "the fault proxy speaks plain HTTP only: {upstream}"
        );
        let host = host.split('/').next().unwrap_or_default().to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the fault proxy");
        let addr = listener.local_addr().expect("the fault proxy's address");
        let shared = Arc::new(Shared {
            upstream: host,
            stopping: AtomicBool::new(false),
            state: Mutex::new(State {
                plan: Plan::seeded(0),
                matched: Vec::new(),
                stats: Stats::default(),
                known: BTreeSet::new(),
            }),
            sockets: Mutex::new(HashMap::new()),
            workers: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
        });
        let s = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name("faultproxy-accept".into())
            .spawn(move || accept_loop(&s, listener))
            .expect("starting the fault proxy");
        FaultProxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The URL clients use, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the plan (and its rules' counts) from the next request on; prints its seed if
    /// it draws at random.
    pub fn set_plan(&self, plan: Plan) {
        if plan
            .rules
            .iter()
            .any(|r| matches!(r.when, When::Probability(_)))
        {
            let (url, seed) = (self.url(), plan.seed);
            eprintln!(
                "fault proxy {url}: random faults from seed {seed} \
                 (replay: Plan::seeded({seed}) or {SEED_VAR}={seed})"
            );
        }
        let mut st = self.shared.state();
        st.matched = vec![0; plan.rules.len()];
        st.plan = plan;
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> Stats {
        self.shared.state().stats.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wakes the acceptor up; it then sees `stopping` and drops the listener.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        for socket in self.shared.sockets().values().flatten() {
            let _ = socket.shutdown(Shutdown::Both);
        }
        let workers = std::mem::take(&mut *self.shared.workers());
        for w in workers {
            let _ = w.join();
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sockets(&self) -> MutexGuard<'_, HashMap<u64, Vec<TcpStream>>> {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn workers(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, id: u64, socket: &TcpStream) {
        if let Ok(s) = socket.try_clone() {
            self.sockets().entry(id).or_default().push(s);
        }
        if self.stopping.load(Ordering::SeqCst) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// Counts a request and picks its fault, if any.
    fn decide(&self, method: &str, target: &str) -> (u64, Option<Fault>) {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut guard = self.state();
        let State {
            plan,
            matched,
            stats,
            known,
        } = &mut *guard;
        stats.requests += 1;
        let seq = stats.requests;
        let exists = object_path(path).is_some_and(|p| known.contains(&p));
        let mut chosen = None;
        for (i, rule) in plan.rules.iter().enumerate() {
            if !rule.matches(method, path, query, exists) {
                continue;
            }
            matched[i] += 1;
            let n = matched[i];
            let fires = match rule.when {
                When::Every => true,
                When::Nth(k) => n == k,
                When::First(k) => n <= k,
                When::Probability(p) => draw(plan.seed, i as u64, n) < p,
            };
            if fires && chosen.is_none() {
                chosen = Some(rule.fault);
            }
        }
        stats.exchanges.push(Exchange {
            request: seq,
            method: method.to_string(),
            target: target.to_string(),
            fault: chosen,
            status: None,
        });
        (seq, chosen)
    }

    /// Notes the server's final answer to request `seq`.
    fn answered(&self, seq: u64, status: u16) {
        if let Some(e) = self.state().stats.exchanges.get_mut(seq as usize - 1) {
            e.status = Some(status);
        }
    }
}

/// SplitMix64's output function: a good 64-bit mix, and all the randomness the plan needs.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A number in `0..1` for the `n`th match of rule `rule`, fixed by the seed.
fn draw(seed: u64, rule: u64, n: u64) -> f64 {
    let x = splitmix64(seed ^ splitmix64(rule.wrapping_add(1) ^ splitmix64(n)));
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok((client, _)) = accepted else {
            // Out of descriptors or an aborted handshake: try again shortly.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        shared.state().stats.connections += 1;
        shared.register(id, &client);
        let s = shared.clone();
        let worker = std::thread::Builder::new()
            .name("faultproxy-conn".into())
            .spawn(move || {
                // Any I/O error ends the connection, as it would between client and server.
                let _ = serve(&s, id, &client);
                let _ = client.shutdown(Shutdown::Both);
                if let Some(sockets) = s.sockets().remove(&id) {
                    for socket in sockets {
                        let _ = socket.shutdown(Shutdown::Both);
                    }
                }
            });
        let mut workers = shared.workers();
        workers.retain(|w| !w.is_finished());
        if let Ok(w) = worker {
            workers.push(w);
        }
    }
}

/// One side of a connection: buffered both ways over the same socket.
struct Conn {
    r: BufReader<TcpStream>,
    w: BufWriter<TcpStream>,
}

impl Conn {
    fn new(socket: &TcpStream) -> io::Result<Conn> {
        socket.set_nodelay(true)?;
        Ok(Conn {
            r: BufReader::with_capacity(64 << 10, socket.try_clone()?),
            w: BufWriter::with_capacity(64 << 10, socket.try_clone()?),
        })
    }

    fn socket(&self) -> &TcpStream {
        self.r.get_ref()
    }

    /// Flushes what was written, then closes both ways.
    fn close(&mut self) {
        let _ = self.w.flush();
        let _ = self.socket().shutdown(Shutdown::Both);
    }
}

/// Serves one client connection, one request at a time, until either side closes.
fn serve(shared: &Shared, id: u64, client: &TcpStream) -> io::Result<()> {
    let mut client = Conn::new(client)?;
    let mut upstream: Option<Conn> = None;
    loop {
        let Some(head) = read_head(&mut client.r)? else {
            return Ok(());
        };
        let req = Request::parse(&head)?;
        let (seq, fault) = shared.decide(&req.method, &req.target);
        match fault {
            Some(refusal @ (Fault::Status503 | Fault::Forbidden)) => {
                // A client waiting for `100 Continue` will not send the body: answering closes
                // the connection. Otherwise the body is read (and dropped), so the connection
                // can carry the next request.
                let keep = !req.close && !req.waits_for_continue();
                if !req.waits_for_continue() {
                    copy_body(&mut client.r, &mut io::sink(), req.body)?;
                }
                client.w.write_all(&s3_error(&req, seq, keep, refusal))?;
                client.w.flush()?;
                if !keep {
                    client.close();
                    return Ok(());
                }
                continue;
            }
            Some(Fault::DropMidRequest) => {
                if req.waits_for_continue() {
                    client.w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
                    client.w.flush()?;
                }
                let _ = read_half_body(&mut client.r, req.body);
                client.close();
                return Ok(());
            }
            _ => {}
        }
        let up = match &mut upstream {
            Some(up) => up,
            None => {
                let socket = TcpStream::connect(&shared.upstream)?;
                shared.register(id, &socket);
                upstream.insert(Conn::new(&socket)?)
            }
        };
        let Some((resp_head, resp)) = forward(shared, &req, &head, &mut client, up)? else {
            return Ok(());
        };
        shared.answered(seq, resp.status);
        shared.learn(&req, resp.status, None);
        let close = req.close || resp.close || resp.body == Body::UntilClose || resp.declined;
        match fault {
            Some(Fault::DropBeforeResponse) => {
                copy_body(&mut up.r, &mut io::sink(), resp.body)?;
                client.close();
                return Ok(());
            }
            Some(Fault::DropMidResponse) => {
                client
                    .w
                    .write_all(&resp_head.raw[..resp_head.raw.len() / 2])?;
                client.close();
                return Ok(());
            }
            Some(Fault::TruncateBody) => {
                client.w.write_all(&resp_head.raw)?;
                match resp.body {
                    Body::Length(n) => copy_exact(&mut up.r, &mut client.w, n / 2)?,
                    body => {
                        let mut raw = Vec::new();
                        copy_body(&mut up.r, &mut raw, body)?;
                        client.w.write_all(&raw[..raw.len() / 2])?;
                    }
                }
                client.close();
                return Ok(());
            }
            // A client that gives up during the stall ends the connection.
            Some(Fault::Stall(d)) if !hold(shared, client.socket(), Some(d))? => return Ok(()),
            Some(Fault::StallForever) => {
                hold(shared, client.socket(), None)?;
                return Ok(());
            }
            _ => {}
        }
        client.w.write_all(&resp_head.raw)?;
        if wants_body(&req, resp.status) {
            // A listing or a multipart upload's outcome: read whole, to learn which objects
            // exist, then relayed as read.
            let mut raw = Vec::new();
            copy_body(&mut up.r, &mut raw, resp.body)?;
            client.w.write_all(&raw)?;
            shared.learn(&req, resp.status, Some(&content(&raw, resp.body)));
        } else {
            copy_body(&mut up.r, &mut client.w, resp.body)?;
        }
        client.w.flush()?;
        if close {
            client.close();
            return Ok(());
        }
    }
}

/// Sends a request upstream (relaying interim responses to the client) and reads the final
/// response's head. `None` when the upstream closed before answering: the client's connection
/// then closes too, as it would have without the proxy.
fn forward(
    shared: &Shared,
    req: &Request,
    head: &Head,
    client: &mut Conn,
    up: &mut Conn,
) -> io::Result<Option<(Head, Response)>> {
    up.w.write_all(&head.raw)?;
    up.w.flush()?;
    if req.waits_for_continue() {
        // The server answers `100 Continue` (or refuses with a final status) before the body
        // is sent; one that ignores `Expect` gets the body after a wait, as curl does.
        up.socket().set_read_timeout(Some(CONTINUE_WAIT))?;
        let answered = match up.r.fill_buf() {
            Ok(buf) => !buf.is_empty(),
            Err(e) if timed_out(&e) => false,
            Err(e) => return Err(e),
        };
        up.socket().set_read_timeout(None)?;
        if answered {
            let Some((h, resp)) = read_response(req, client, up)? else {
                return Ok(None);
            };
            if resp.status != 100 {
                // Refused before the body: the client may still send it, so this
                // connection cannot carry another request.
                return Ok(Some((
                    h,
                    Response {
                        declined: true,
                        ..resp
                    },
                )));
            }
            client.w.write_all(&h.raw)?;
            client.w.flush()?;
        }
    }
    copy_body(&mut client.r, &mut up.w, req.body)?;
    up.w.flush()?;
    shared.state().stats.forwarded += 1;
    loop {
        let Some((h, resp)) = read_response(req, client, up)? else {
            return Ok(None);
        };
        if resp.status != 100 {
            return Ok(Some((h, resp)));
        }
        // A late `100 Continue`: interim, passed on like the others.
        client.w.write_all(&h.raw)?;
        client.w.flush()?;
    }
}

/// Reads a response head from upstream, relaying interim (1xx) responses other than
/// `100 Continue` to the client; `None` if the upstream closed first.
fn read_response(
    req: &Request,
    client: &mut Conn,
    up: &mut Conn,
) -> io::Result<Option<(Head, Response)>> {
    loop {
        let Some(h) = read_head(&mut up.r)? else {
            return Ok(None);
        };
        let resp = Response::parse(&h, &req.method)?;
        if resp.status == 101 {
            return Err(invalid("the fault proxy does not switch protocols"));
        }
        if (100..200).contains(&resp.status) && resp.status != 100 {
            client.w.write_all(&h.raw)?;
            client.w.flush()?;
            continue;
        }
        return Ok(Some((h, resp)));
    }
}

/// Waits `d` (or forever if `None`) before a response is relayed. Returns whether the client
/// is still there; `false` also when the proxy stops.
fn hold(shared: &Shared, client: &TcpStream, d: Option<Duration>) -> io::Result<bool> {
    let deadline = d.map(|d| Instant::now() + d);
    let mut probe = [0u8; 1];
    let there = loop {
        if shared.stopping.load(Ordering::SeqCst) {
            break false;
        }
        let step = match deadline {
            Some(t) => match t.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(STALL_STEP),
                _ => break true,
            },
            None => STALL_STEP,
        };
        client.set_read_timeout(Some(step))?;
        match client.peek(&mut probe) {
            Ok(0) => break false,
            // The client sent more (it should not, before an answer): wait without looking.
            Ok(_) => std::thread::sleep(step),
            Err(e) if timed_out(&e) => {}
            Err(_) => break false,
        }
    };
    client.set_read_timeout(None)?;
    Ok(there)
}

/// The error S3 answers for `fault`: `503 Slow Down` when throttling, `403 Forbidden` when a
/// policy refuses.
fn s3_error(req: &Request, seq: u64, keep: bool, fault: Fault) -> Vec<u8> {
    let (status, code, message) = match fault {
        Fault::Forbidden => ("403 Forbidden", "AccessDenied", "Access Denied"),
        _ => (
            "503 Slow Down",
            "SlowDown",
            "Please reduce your request rate.",
        ),
    };
    let path = req.target.split('?').next().unwrap_or_default();
    let path = path
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let id = format!("faultproxy-{seq}");
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message><Resource>{path}</Resource>\
         <RequestId>{id}</RequestId></Error>"
    );
    let body = if req.method == "HEAD" { "" } else { &body };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         x-amz-request-id: {id}\r\nConnection: {}\r\n\r\n{body}",
        body.len(),
        if keep { "keep-alive" } else { "close" }
    )
    .into_bytes()
}

pub(crate) mod http;
use http::*;
pub mod policy;
use policy::{content, object_path, wants_body};

#[cfg(test)]
mod tests;
