//! Just enough HTTP/1.1 framing for the proxy: message heads, body framing
//! (`Content-Length`, `chunked`, to the connection's end), copying bodies whole or in half.
//! Must not interpret more of a message than where it ends: bytes are relayed as read.
//! Also read by `webhook`, the alert receiver.

use super::*;

pub(crate) fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

pub(crate) fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// A message head as read: its raw bytes, first line and headers (names in lower case).
pub(crate) struct Head {
    pub(crate) raw: Vec<u8>,
    pub(crate) line: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header (`Connection`, `Transfer-Encoding`) lists `token`.
    pub(crate) fn lists(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// How the body is framed, for a message that may have one.
    pub(crate) fn body(&self) -> io::Result<Body> {
        if let Some(te) = self.get("transfer-encoding") {
            let last = te.rsplit(',').next().unwrap_or_default().trim();
            return Ok(if last.eq_ignore_ascii_case("chunked") {
                Body::Chunked
            } else {
                Body::UntilClose
            });
        }
        let mut lengths = self
            .headers
            .iter()
            .filter(|(n, _)| n == "content-length")
            .flat_map(|(_, v)| v.split(','))
            .map(|v| v.trim().parse::<u64>());
        match lengths.next() {
            None => Ok(Body::None),
            Some(Ok(n)) if lengths.all(|m| m.as_ref().ok() == Some(&n)) => Ok(Body::Length(n)),
            Some(_) => Err(invalid("bad Content-Length")),
        }
    }

    /// Whether the connection closes after this message (`version` from its first line).
    pub(crate) fn closes(&self, version: &str) -> bool {
        self.lists("connection", "close")
            || (version == "HTTP/1.0" && !self.lists("connection", "keep-alive"))
    }
}

/// How a message's body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Body {
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

impl Body {
    pub(crate) fn has_content(self) -> bool {
        !matches!(self, Body::None | Body::Length(0))
    }
}

/// What the proxy needs to know of a request.
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) body: Body,
    pub(crate) close: bool,
    pub(crate) expect_continue: bool,
}

impl Request {
    pub(crate) fn parse(head: &Head) -> io::Result<Request> {
        let mut parts = head.line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("bad request line"));
        };
        if !version.starts_with("HTTP/1.") {
            return Err(invalid("not HTTP/1"));
        }
        let body = match head.body()? {
            Body::UntilClose => return Err(invalid("a request body without framing")),
            body => body,
        };
        Ok(Request {
            method: method.to_string(),
            target: target.to_string(),
            body,
            close: head.closes(version),
            expect_continue: head.lists("expect", "100-continue"),
        })
    }

    /// Whether the client waits for `100 Continue` before it sends the body.
    pub(crate) fn waits_for_continue(&self) -> bool {
        self.expect_continue && self.body.has_content()
    }
}

/// What the proxy needs to know of a response.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Body,
    pub(crate) close: bool,
    /// A final answer before the request body was sent.
    pub(crate) declined: bool,
}

impl Response {
    pub(crate) fn parse(head: &Head, method: &str) -> io::Result<Response> {
        let mut parts = head.line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let status = parts
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|_| version.starts_with("HTTP/1."))
            .ok_or_else(|| invalid("bad status line"))?;
        let body =
            if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
                Body::None
            } else {
                match head.body()? {
                    Body::None => Body::UntilClose,
                    body => body,
                }
            };
        Ok(Response {
            status,
            body,
            close: head.closes(version),
            declined: false,
        })
    }
}

/// Reads one line (up to `\n`, which it keeps) of at most `max` bytes.
pub(crate) fn read_line(r: &mut impl BufRead, max: usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.take(max as u64 + 1).read_until(b'\n', &mut line)?;
    if line.len() > max {
        return Err(invalid("line too long"));
    }
    Ok(line)
}

/// Reads a message head; `None` on a clean end of stream before its first byte.
pub(crate) fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut raw = Vec::new();
    let mut lines = Vec::new();
    loop {
        let line = read_line(r, MAX_HEAD.saturating_sub(raw.len()))?;
        if line.is_empty() {
            return if raw.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        if !line.ends_with(b"\n") {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            if lines.is_empty() {
                continue; // empty lines before a request line are allowed
            }
            break;
        }
        lines.push(text.to_string());
    }
    let mut lines = lines.into_iter();
    let line = lines.next().unwrap_or_default();
    let headers = lines
        .map(|l| match l.split_once(':') {
            Some((n, v)) => (n.trim().to_ascii_lowercase(), v.trim().to_string()),
            None => (l.trim().to_ascii_lowercase(), String::new()),
        })
        .collect();
    Ok(Some(Head { raw, line, headers }))
}

/// Copies exactly `n` bytes.
pub(crate) fn copy_exact(r: &mut impl BufRead, w: &mut impl Write, mut n: u64) -> io::Result<()> {
    while n > 0 {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let k = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        w.write_all(&buf[..k])?;
        r.consume(k);
        n -= k as u64;
    }
    Ok(())
}

/// Copies a body as it is on the wire (chunk sizes, extensions and trailers included).
pub(crate) fn copy_body(r: &mut impl BufRead, w: &mut impl Write, body: Body) -> io::Result<()> {
    match body {
        Body::None => Ok(()),
        Body::Length(n) => copy_exact(r, w, n),
        Body::UntilClose => io::copy(r, w).map(drop),
        Body::Chunked => loop {
            let line = read_chunk_line(r)?;
            w.write_all(&line)?;
            let size = chunk_size(&line)?;
            if size == 0 {
                // Trailers, up to an empty line.
                loop {
                    let line = read_chunk_line(r)?;
                    w.write_all(&line)?;
                    if line == b"\r\n" || line == b"\n" {
                        return Ok(());
                    }
                }
            }
            copy_exact(r, w, size)?;
            let end = read_chunk_line(r)?;
            if end != b"\r\n" && end != b"\n" {
                return Err(invalid("bad chunk end"));
            }
            w.write_all(&end)?;
        },
    }
}

pub(crate) fn read_chunk_line(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let line = read_line(r, 4096)?;
    if !line.ends_with(b"\n") {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line)
}

pub(crate) fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let text = std::str::from_utf8(line).map_err(|_| invalid("bad chunk size"))?;
    let hex = text.split(';').next().unwrap_or_default().trim();
    u64::from_str_radix(hex, 16).map_err(|_| invalid("bad chunk size"))
}

/// Reads about half a request body and discards it (for a chunked one: half its first chunk).
pub(crate) fn read_half_body(r: &mut impl BufRead, body: Body) -> io::Result<()> {
    match body {
        Body::None | Body::UntilClose => Ok(()),
        Body::Length(n) => copy_exact(r, &mut io::sink(), n / 2),
        Body::Chunked => {
            let line = read_chunk_line(r)?;
            copy_exact(r, &mut io::sink(), chunk_size(&line)? / 2)
        }
    }
}
