//! A blocking PostgreSQL replication connection: the wire protocol as `pg_receivewal`
//! speaks it, over TCP (TLS as `sslmode` says) or a Unix socket.
//!
//! Owns the connection's bytes: startup with `replication=true` and `application_name`
//! `strongroom`, authentication (trust, password, md5, SCRAM-SHA-256, with
//! `postgres-protocol`'s SCRAM), simple queries (the replication commands answer with rows)
//! and the CopyBoth stream's messages. A read that times out keeps what it read, so the
//! receive loop can wake every second without losing a message. Must not know what WAL is
//! for or where it goes (that is [`super`]'s), and never logs or shows the password.

use crate::engine::postgres::server::Conn;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

/// What went wrong on a replication connection.
#[derive(Debug)]
pub enum Failure {
    /// The network or the socket (the server went away, say).
    Io(std::io::Error),
    /// The server answered with an error.
    Server {
        /// SQLSTATE.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The server said something this client does not understand, or settings that cannot
    /// be used (TLS refused where `sslmode` requires it).
    Protocol(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Io(e) => write!(f, "{e}"),
            Failure::Server { code, message } => write!(f, "{message} (SQLSTATE {code})"),
            Failure::Protocol(m) => f.write_str(m),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e)
    }
}

/// A result on a replication connection.
pub type Wire<T> = std::result::Result<T, Failure>;

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tls(s) => s.sock.set_read_timeout(t),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// One message from the server: its type byte and body.
pub struct Message {
    /// The type byte (`d` CopyData, `c` CopyDone, `E` error, …).
    pub tag: u8,
    /// The body, without type and length.
    pub body: Vec<u8>,
}

/// An open replication connection.
pub struct Connection {
    stream: Stream,
    buf: Vec<u8>,
    /// `server_version_num`-like major version from the `server_version` parameter.
    pub server_major: u32,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

fn put_cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// A frontend message: type byte, length, body.
fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cstr(body: &[u8], at: &mut usize) -> Wire<String> {
    let rest = body.get(*at..).unwrap_or_default();
    let end = rest
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| Failure::Protocol("a string without its terminator".into()))?;
    *at += end + 1;
    Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// The fields of an ErrorResponse or NoticeResponse: (SQLSTATE, message).
fn error_fields(body: &[u8]) -> (String, String) {
    let (mut code, mut message) = (String::new(), String::new());
    let mut at = 0;
    while at < body.len() && body[at] != 0 {
        let kind = body[at];
        at += 1;
        let Ok(v) = cstr(body, &mut at) else { break };
        match kind {
            b'C' => code = v,
            b'M' => message = v,
            _ => {}
        }
    }
    (code, message)
}

/// The error an ErrorResponse body carries.
pub fn server_error(body: &[u8]) -> Failure {
    let (code, message) = error_fields(body);
    Failure::Server { code, message }
}

impl Connection {
    /// Connects to the server `conn` names as a physical replication client and
    /// authenticates.
    pub fn open(conn: &Conn) -> Wire<Connection> {
        let stream = if conn.is_socket() {
            let path = std::path::Path::new(conn.host()).join(format!(".s.PGSQL.{}", conn.port()));
            Stream::Unix(UnixStream::connect(&path)?)
        } else {
            use std::net::ToSocketAddrs;
            let mut last = None;
            let mut tcp = None;
            for addr in (conn.host(), conn.port()).to_socket_addrs()? {
                match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                    Ok(s) => {
                        tcp = Some(s);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            let tcp = match (tcp, last) {
                (Some(t), _) => t,
                (None, Some(e)) => return Err(e.into()),
                (None, None) => {
                    return Err(Failure::Protocol(format!(
                        "host {} has no address",
                        conn.host()
                    )));
                }
            };
            tcp.set_nodelay(true)?;
            let tls = conn.tls().map_err(|e| Failure::Protocol(e.to_string()))?;
            match tls {
                None => Stream::Tcp(tcp),
                Some(t) => start_tls(tcp, conn.host(), t)?,
            }
        };
        stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
        let mut c = Connection {
            stream,
            buf: Vec::new(),
            server_major: 0,
        };
        c.startup(conn)?;
        Ok(c)
    }

    fn send(&mut self, bytes: &[u8]) -> Wire<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()?;
        Ok(())
    }

    fn startup(&mut self, conn: &Conn) -> Wire<()> {
        let mut body = Vec::new();
        body.extend_from_slice(&196608i32.to_be_bytes());
        for (k, v) in [
            ("user", conn.user()),
            ("replication", "true"),
            ("application_name", "strongroom"),
        ] {
            put_cstr(&mut body, k);
            put_cstr(&mut body, v);
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        self.send(&msg)?;
        let mut scram: Option<postgres_protocol::authentication::sasl::ScramSha256> = None;
        let need_password = |what: &str| {
            Failure::Protocol(format!(
                "the server asks role {:?} for a {what} password and none was given; put it in \
                 the URL, PGPASSWORD or ~/.pgpass",
                conn.user()
            ))
        };
        loop {
            let m = self.read_blocking()?;
            match m.tag {
                b'R' => {
                    let code = i32::from_be_bytes(m.body[..4].try_into().expect("4 bytes"));
                    let data = &m.body[4..];
                    match code {
                        0 => {}
                        3 => {
                            let pw = conn.password().ok_or_else(|| need_password("cleartext"))?;
                            let mut b = Vec::new();
                            put_cstr(&mut b, pw);
                            self.send(&frame(b'p', &b))?;
                        }
                        5 => {
                            let pw = conn.password().ok_or_else(|| need_password("md5"))?;
                            let salt: [u8; 4] = data[..4].try_into().expect("4 bytes");
                            let hash = postgres_protocol::authentication::md5_hash(
                                conn.user().as_bytes(),
                                pw.as_bytes(),
                                salt,
                            );
                            let mut b = Vec::new();
                            put_cstr(&mut b, &hash);
                            self.send(&frame(b'p', &b))?;
                        }
                        10 => {
                            let pw = conn.password().ok_or_else(|| need_password("SCRAM"))?;
                            let mut at = 0;
                            let mut mechanisms = Vec::new();
                            while at < data.len() && data[at] != 0 {
                                mechanisms.push(cstr(data, &mut at)?);
                            }
                            if !mechanisms.iter().any(|m| m == "SCRAM-SHA-256") {
                                return Err(Failure::Protocol(format!(
                                    "the server offers only {mechanisms:?} for authentication"
                                )));
                            }
                            use postgres_protocol::authentication::sasl::{
                                ChannelBinding, ScramSha256,
                            };
                            // No channel binding (libpq's `channel_binding=disable`):
                            // saying "supported but not asked for" over TLS, where the
                            // server offers SCRAM-SHA-256-PLUS, is refused as a downgrade.
                            let s = ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
                            let mut b = Vec::new();
                            put_cstr(&mut b, "SCRAM-SHA-256");
                            b.extend_from_slice(&(s.message().len() as i32).to_be_bytes());
                            b.extend_from_slice(s.message());
                            self.send(&frame(b'p', &b))?;
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram.as_mut().ok_or_else(|| {
                                Failure::Protocol("SASL continue before SASL start".into())
                            })?;
                            s.update(data)?;
                            let reply = s.message().to_vec();
                            self.send(&frame(b'p', &reply))?;
                        }
                        12 => {
                            let s = scram.as_mut().ok_or_else(|| {
                                Failure::Protocol("SASL final before SASL start".into())
                            })?;
                            s.finish(data)?;
                        }
                        other => {
                            return Err(Failure::Protocol(format!(
                                "the server asks for authentication method {other}, which strongroom \
                                 does not speak (it speaks trust, password, md5 and scram-sha-256)"
                            )));
                        }
                    }
                }
                b'S' => {
                    let mut at = 0;
                    let name = cstr(&m.body, &mut at)?;
                    let value = cstr(&m.body, &mut at)?;
                    if name == "server_version" {
                        self.server_major = value
                            .split(|c: char| !c.is_ascii_digit())
                            .next()
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                    }
                }
                b'K' | b'N' => {}
                b'Z' => return Ok(()),
                b'E' => return Err(server_error(&m.body)),
                t => {
                    return Err(Failure::Protocol(format!(
                        "unexpected message {:?} during startup",
                        t as char
                    )));
                }
            }
        }
    }

    /// Sets how long [`Connection::read`] waits for a message.
    pub fn set_wait(&mut self, wait: Duration) -> Wire<()> {
        self.stream.set_read_timeout(Some(wait))?;
        Ok(())
    }

    fn parse_buffered(&mut self) -> Option<Message> {
        if self.buf.len() < 5 {
            return None;
        }
        let len = u32::from_be_bytes(self.buf[1..5].try_into().expect("4 bytes")) as usize;
        if self.buf.len() < 1 + len {
            return None;
        }
        let tag = self.buf[0];
        let body = self.buf[5..1 + len].to_vec();
        self.buf.drain(..1 + len);
        Some(Message { tag, body })
    }

    /// The next message, or `None` when none arrived within the wait
    /// ([`Connection::set_wait`]); bytes of a message read in part are kept for the next
    /// call. A closed connection is an error.
    pub fn read(&mut self) -> Wire<Option<Message>> {
        loop {
            if let Some(m) = self.parse_buffered() {
                return Ok(Some(m));
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(Failure::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    )));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether a whole message is buffered already (read without waiting).
    pub fn has_buffered(&self) -> bool {
        self.buf.len() >= 5
            && self.buf.len()
                > u32::from_be_bytes(self.buf[1..5].try_into().expect("4 bytes")) as usize
    }

    fn read_blocking(&mut self) -> Wire<Message> {
        loop {
            if let Some(m) = self.read()? {
                return Ok(m);
            }
        }
    }

    /// Runs a replication command and returns its rows (text columns, `None` for NULL).
    pub fn query(&mut self, sql: &str) -> Wire<Vec<Vec<Option<String>>>> {
        let mut b = Vec::new();
        put_cstr(&mut b, sql);
        self.send(&frame(b'Q', &b))?;
        self.rows_until_ready(Some(sql))
    }

    /// The rows the server sends up to ReadyForQuery (its error, if it sent one). Answering
    /// a query (`answering`), any other message is a protocol error; after a copy, CopyData
    /// still in flight, notices and the like are passed over.
    fn rows_until_ready(&mut self, answering: Option<&str>) -> Wire<Vec<Vec<Option<String>>>> {
        let mut rows = Vec::new();
        let mut failed = None;
        loop {
            let m = self.read_blocking()?;
            match (m.tag, answering) {
                (b'D', _) => rows.push(data_row(&m.body)?),
                (b'E', _) => failed = Some(server_error(&m.body)),
                (b'Z', _) => {
                    return match failed {
                        Some(f) => Err(f),
                        None => Ok(rows),
                    };
                }
                (b'T' | b'C' | b'N' | b'S' | b'I', _) | (_, None) => {}
                (t, Some(sql)) => {
                    return Err(Failure::Protocol(format!(
                        "unexpected message {:?} answering {sql}",
                        t as char
                    )));
                }
            }
        }
    }

    /// Sends `sql` and waits until the server enters the copy (`W` CopyBoth, `H` CopyOut).
    pub fn start_copy(&mut self, sql: &str) -> Wire<()> {
        let mut b = Vec::new();
        put_cstr(&mut b, sql);
        self.send(&frame(b'Q', &b))?;
        loop {
            let m = self.read_blocking()?;
            match m.tag {
                b'W' | b'H' => return Ok(()),
                b'E' => {
                    let f = server_error(&m.body);
                    // The rest of the answer: ReadyForQuery.
                    while self.read_blocking()?.tag != b'Z' {}
                    return Err(f);
                }
                b'N' | b'S' => {}
                t => {
                    return Err(Failure::Protocol(format!(
                        "unexpected message {:?} answering {sql}",
                        t as char
                    )));
                }
            }
        }
    }

    /// Sends one CopyData message.
    pub fn copy_data(&mut self, data: &[u8]) -> Wire<()> {
        self.send(&frame(b'd', data))
    }

    /// Sends CopyDone.
    pub fn copy_done(&mut self) -> Wire<()> {
        self.send(&frame(b'c', &[]))
    }

    /// After the server ended a copy and the client acknowledged it: the rows it sends
    /// (the next timeline after a timeline's end), up to ReadyForQuery.
    pub fn rows_after_copy(&mut self) -> Wire<Vec<Vec<Option<String>>>> {
        self.rows_until_ready(None)
    }

    /// Ends the session politely (best effort).
    pub fn close(mut self) {
        let _ = self.send(&frame(b'X', &[]));
    }
}

fn data_row(body: &[u8]) -> Wire<Vec<Option<String>>> {
    let short = || Failure::Protocol("a data row cut short".into());
    let n = u16::from_be_bytes(body.get(..2).ok_or_else(short)?.try_into().expect("2"));
    let mut at = 2;
    let mut row = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let len = i32::from_be_bytes(
            body.get(at..at + 4)
                .ok_or_else(short)?
                .try_into()
                .expect("4"),
        );
        at += 4;
        if len < 0 {
            row.push(None);
            continue;
        }
        let v = body.get(at..at + len as usize).ok_or_else(short)?;
        row.push(Some(String::from_utf8_lossy(v).into_owned()));
        at += len as usize;
    }
    Ok(row)
}

/// Asks the server for TLS (SSLRequest) and wraps `tcp` in it; a server that declines is
/// refused when TLS is required, else used in the clear (libpq's `prefer`).
fn start_tls(
    mut tcp: TcpStream,
    host: &str,
    tls: crate::engine::postgres::server::Tls,
) -> Wire<Stream> {
    let mut req = 8i32.to_be_bytes().to_vec();
    req.extend_from_slice(&80877103i32.to_be_bytes());
    tcp.write_all(&req)?;
    tcp.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer)?;
    match answer[0] {
        b'S' => {}
        b'N' if !tls.required => return Ok(Stream::Tcp(tcp)),
        b'N' => {
            return Err(Failure::Protocol(format!(
                "the server at {host} does not offer TLS, and sslmode requires it"
            )));
        }
        other => {
            return Err(Failure::Protocol(format!(
                "unexpected answer {:?} to the TLS request",
                other as char
            )));
        }
    }
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| Failure::Protocol(format!("TLS server name {host:?}: {e}")))?;
    let mut session = rustls::ClientConnection::new(Arc::new(tls.config), name)
        .map_err(|e| Failure::Protocol(format!("TLS: {e}")))?;
    while session.is_handshaking() {
        session
            .complete_io(&mut tcp)
            .map_err(|e| Failure::Protocol(format!("the TLS handshake with {host} failed: {e}")))?;
    }
    Ok(Stream::Tls(Box::new(rustls::StreamOwned::new(
        session, tcp,
    ))))
}
